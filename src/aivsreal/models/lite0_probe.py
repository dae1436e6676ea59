"""`lite0_probe`: a linear probe on frozen ImageNet EfficientNet-Lite0 features (see lite_probe.py);
the bundled `wild` detector's recipe until 2026-11-27.
"""

from __future__ import annotations

from torch import nn

from aivsreal.models import lite_probe as probe
from aivsreal.models._registry import register_model
from aivsreal.models.network import ModelConfig

FEATURES = 2064  # 16 + 24 + 40 + 80 + 112 + 192 + 320 stage channels + 1280 head channels
TRAIN_RECIPE = probe.TRAIN_RECIPE


def default_config() -> ModelConfig:
    return probe.default_config("lite0_probe")


@register_model
def build(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> nn.Module:
    return probe.build_probe("efficientnet_lite0", pretrained, weights)
