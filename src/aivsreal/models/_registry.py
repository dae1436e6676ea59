"""The model registry: each model registers itself with `@register_model` (as in timm).

One family per file: a family module defines `default_config(name)` and `TRAIN_RECIPE`, then one
builder per model, `<name>(config, pretrained, weights)`, decorated with `@register_model`
(`efficientnet_lite.py` registers efficientnet_lite0, _lite1 and _lite2). Every name also goes
in MODELS with its module: that table is what `--model` offers and says which module to import
on first use, so one model never imports every backbone.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from torch import nn

from aivsreal.errors import AivsrealError
from aivsreal.models.network import DetectorNet, ModelConfig

# model name -> its family's module in aivsreal.models
MODELS = {"fast": "fast", "resnet50v2": "seed", "seed_lite2": "seed", "efficientnet_lite0": "efficientnet_lite",
          "efficientnet_lite1": "efficientnet_lite", "efficientnet_lite2": "efficientnet_lite",
          "lite0_probe": "lite_probe", "lite1_probe": "lite_probe", "lite2_probe": "lite_probe",
          "lite2_probe_stats": "lite_probe", "spectrum_probe": "spectrum_probe", "npr_patch": "npr_patch",
          "clip_probe": "vit_probe", "dinov2_probe": "vit_probe", "xception_probe": "xception_probe"}
# made from trained models (`aivsreal ensemble`), never trained: not offered by `train --model`
MADE = {"ensemble": "ensemble"}


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[..., nn.Module]
    default_config: Callable[[], ModelConfig]
    train_recipe: dict[str, Any]


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register `build` under its own name, with its module's `default_config` and `TRAIN_RECIPE`."""
    module = importlib.import_module(build.__module__)
    name = build.__name__
    _REGISTRY[name] = ModelEntry(name, build, partial(module.default_config, name), dict(module.TRAIN_RECIPE))
    return build


def model_names() -> tuple[str, ...]:
    return tuple(MODELS)


def get_entry(name: str) -> ModelEntry:
    family = MODELS.get(name) or MADE.get(name)
    if name not in _REGISTRY and family:
        importlib.import_module(f"aivsreal.models.{family}")
    if name not in _REGISTRY:
        raise AivsrealError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return _REGISTRY[name]


def default_config(name: str, **overrides: Any) -> ModelConfig:
    """The config a model is trained with unless the user overrides fields."""
    config = get_entry(name).default_config()
    for key, value in overrides.items():
        if value is not None:
            setattr(config, key, value)
    return config


def build_model(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> DetectorNet:
    return DetectorNet(config, get_entry(config.name).build(config, pretrained=pretrained, weights=weights))


def train_recipe(name: str) -> dict[str, Any]:
    """The training options a model is trained with unless the user overrides them."""
    return dict(get_entry(name).train_recipe)
