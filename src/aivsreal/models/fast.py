"""`fast`: a small VGG-style CNN built for native 32x32 input and CPU training.

In the spirit of airbench (fast CIFAR-10 training): a stem conv, then three groups of
conv -> maxpool -> BN -> GELU -> conv -> BN -> GELU that halve the resolution, then a
global max-pool and one linear unit. No pretrained weights needed: it trains from scratch
on CIFAKE in minutes on two CPU cores (see benchmarks/results/cifake.md).
"""

from __future__ import annotations

from torch import nn

from aivsreal.errors import AivsrealError
from aivsreal.models._registry import register_model
from aivsreal.models.network import ModelConfig

DEFAULT_WIDTHS = (32, 64, 128)
# Nesterov SGD with a one-cycle LR, label smoothing, flips and a 2-pixel translate, 32 epochs:
# 20 minutes on two CPU cores, 98.11% CIFAKE test accuracy. Measured (benchmarks/results/
# cifake_tuning.md): per CPU-minute, more epochs of this narrow net beat a 4x wider one; the
# translate did not help at 4 epochs but over 32 it curbs overfitting (97.87% -> 98.11%).
TRAIN_RECIPE = {"epochs": 32, "batch_size": 256, "optimizer": "sgd", "lr": 0.1, "weight_decay": 5e-4,
                "schedule": "onecycle", "label_smoothing": 0.1, "max_shift": 2, "flip": True,
                "patience": 10}


def default_config(name: str) -> ModelConfig:
    # CIFAKE's own per-channel statistics (train split), rounded.
    return ModelConfig(
        name=name, image_size=32, input_size=32,
        mean=(0.47, 0.46, 0.42), std=(0.25, 0.24, 0.26),
        options={"widths": list(DEFAULT_WIDTHS)},
    )


def _conv_bn(cin: int, cout: int, pool: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return layers + [nn.BatchNorm2d(cout), nn.GELU()]


@register_model
def fast(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> nn.Module:
    if pretrained or weights:
        raise AivsrealError("the fast model trains from scratch; --pretrained/--weights do not apply")
    widths = config.options.get("widths", DEFAULT_WIDTHS)
    layers = _conv_bn(3, widths[0], pool=False)
    cin = widths[0]
    for width in widths:
        layers += _conv_bn(cin, width, pool=True) + _conv_bn(width, width, pool=False)
        cin = width
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(cin, 1)]
    return nn.Sequential(*layers)
