"""`lite2_probe`: a linear probe on frozen ImageNet EfficientNet-Lite2 features (see lite_probe.py);
wider and deeper than Lite0 (ImageNet top-1 77.6% vs 75.1%); on the wild set's held-out sources its
probe scores 0.779 same-codec AUC against Lite0's 0.752 (benchmarks/results/wild.md).
"""

from __future__ import annotations

from torch import nn

from aivsreal.models import lite_probe as probe
from aivsreal.models._registry import register_model
from aivsreal.models.network import ModelConfig

FEATURES = 2136  # 16 + 24 + 48 + 88 + 120 + 208 + 352 stage channels + 1280 head channels
TRAIN_RECIPE = probe.TRAIN_RECIPE


def default_config() -> ModelConfig:
    return probe.default_config("lite2_probe")


@register_model
def build(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> nn.Module:
    return probe.build_probe("efficientnet_lite2", pretrained, weights)
