"""The model registry: each family registers itself with `@register_model` (as in timm).

A family module defines `build(config, pretrained, weights)`, `default_config()` and
`TRAIN_RECIPE`, and decorates `build`. Its name goes in FAMILIES too: that list is what
`--model` offers and what is imported on first use, so one model never imports every backbone.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from aivsreal.errors import AivsrealError
from aivsreal.models.network import DetectorNet, ModelConfig

FAMILIES = ("fast", "resnet50v2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
            "lite0_probe", "lite2_probe")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[..., nn.Module]
    default_config: Callable[[], ModelConfig]
    train_recipe: dict[str, Any]


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register the family whose module defines `build`; its name is the module's name."""
    module = importlib.import_module(build.__module__)
    name = build.__module__.rpartition(".")[2]
    _REGISTRY[name] = ModelEntry(name, build, module.default_config, dict(module.TRAIN_RECIPE))
    return build


def model_names() -> tuple[str, ...]:
    return FAMILIES


def get_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY and name in FAMILIES:
        importlib.import_module(f"aivsreal.models.{name}")
    if name not in _REGISTRY:
        raise AivsrealError(f"unknown model {name!r}; choose one of {', '.join(FAMILIES)}")
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
