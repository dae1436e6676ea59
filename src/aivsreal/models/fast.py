"""`fast`: a small VGG-style CNN built for native 32x32 input and CPU training.

In the spirit of airbench (fast CIFAR-10 training): a stem conv, then three groups of
conv -> maxpool -> BN -> GELU -> conv -> BN -> GELU that halve the resolution, then a
global max-pool and one linear unit. No pretrained weights needed: it trains from scratch on
CIFAKE in minutes on two CPU cores (see benchmarks/results/cifake.md). Option `stem: whiten`
swaps the stem conv for airbench's frozen 2x2 patch-whitening conv: 26% fewer FLOPs per image,
but 97.71% against 98.08% in the same compute (cifake_tuning.md), so not the default. Options
`bn_scale: false` (batch-norm scales frozen at 1) and `residual: true` (a third conv per group,
with a skip around the last two, as in airbench96) are experiments, measured in cifake_tuning.md.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
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


class PatchWhitening(nn.Module):
    """A frozen 2x2 convolution that whitens the training images' 2x2 patches (airbench).

    Each output pair is one eigenvector of the patch covariance scaled by 1/sqrt(eigenvalue),
    with both signs, so the next layer starts from decorrelated, unit-variance inputs instead of
    having to learn that from a badly conditioned pixel basis. The weights come from the first
    training batch (the network has no data before then); across torchrun ranks the covariance
    is averaged, so every rank whitens alike. They are buffers: saved with the model, never
    trained. Only the bias is learnt.
    """

    def __init__(self, channels: int = 3, kernel: int = 2, eps: float = 5e-4):
        super().__init__()
        dims = channels * kernel * kernel
        self.register_buffer("weight", torch.zeros(2 * dims, channels, kernel, kernel))
        self.register_buffer("fitted", torch.tensor(False))
        self.bias = nn.Parameter(torch.zeros(2 * dims))
        self.eps = eps

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        c, k = self.weight.shape[1], self.weight.shape[2]
        patches = x.float().unfold(2, k, 1).unfold(3, k, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)
        cov = patches.T @ patches / len(patches)
        if dist.is_initialized():
            dist.all_reduce(cov)
            cov /= dist.get_world_size()
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + self.eps)[:, None]).flip(0).reshape(-1, c, k, k)
        self.weight.copy_(torch.cat([filters, -filters]))
        self.fitted.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not self.fitted:
            with torch.autocast(x.device.type, enabled=False):
                self.fit(x)
        return nn.functional.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype))


def _conv_bn(cin: int, cout: int, pool: bool, bn_scale: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    norm = nn.BatchNorm2d(cout)
    norm.weight.requires_grad_(bn_scale)  # frozen at 1: the conv's own scale is the only one (airbench)
    return layers + [norm, nn.GELU()]


class Residual(nn.Module):
    """x + body(x): lets a group grow a third conv (airbench96's group) while the skip keeps a
    path as short as the default's for the signal and the gradient."""

    def __init__(self, *body: nn.Module):
        super().__init__()
        self.body = nn.Sequential(*body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@register_model
def fast(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> nn.Module:
    if pretrained or weights:
        raise AivsrealError("the fast model trains from scratch; --pretrained/--weights do not apply")
    widths = config.options.get("widths", DEFAULT_WIDTHS)
    stem = config.options.get("stem", "conv")
    scale = bool(config.options.get("bn_scale", True))
    residual = bool(config.options.get("residual", False))
    if stem == "whiten":
        whiten = PatchWhitening()
        layers, cin = [whiten, nn.GELU()], whiten.bias.numel()
    elif stem == "conv":
        layers, cin = _conv_bn(3, widths[0], pool=False, bn_scale=scale), widths[0]
    else:
        raise AivsrealError(f"fast: unknown stem {stem!r}; use 'conv' (3x3 conv, BN, GELU) or 'whiten' (2x2 patch "
                            "whitening from the first training batch)")
    for width in widths:
        layers += _conv_bn(cin, width, pool=True, bn_scale=scale)
        tail = _conv_bn(width, width, pool=False, bn_scale=scale)
        if residual:
            tail = [Residual(*tail, *_conv_bn(width, width, pool=False, bn_scale=scale))]
        layers += tail
        cin = width
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(cin, 1)]
    return nn.Sequential(*layers)
