"""What every probe family shares: fixed `features`, then one linear layer, the only part that learns."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from aivsreal.errors import AivsrealError

# Every probe family's `aivsreal train` recipe: only a linear head learns, so a few epochs of Adam suffice.
PROBE_RECIPE = {"epochs": 4, "batch_size": 64, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.01,
                "schedule": "onecycle", "label_smoothing": 0.0, "max_shift": 0, "flip": True, "patience": 2}
POOLS = ("mean", "mean_std")  # a stage pooled by its mean per channel, or by its mean and standard deviation


def per_channel(pool: str) -> int:
    """Values per channel of a stage pooled by `pool` (POOLS); any other name is a one-line error."""
    if pool not in POOLS:
        raise AivsrealError(f"probe pooling must be one of {', '.join(POOLS)}, got {pool!r}")
    return 2 if pool == "mean_std" else 1


def pooled(x: torch.Tensor, pool: str) -> list[torch.Tensor]:
    """A (N, C, H, W) stage pooled over the image (POOLS): [means] or [means, standard deviations]."""
    if pool == "mean":
        return [x.mean((2, 3))]
    x = x.float()  # a variance in bfloat16 (autocast) loses most of its digits
    return [x.mean((2, 3)), x.std((2, 3), correction=0)]


class LinearProbe(nn.Module):
    """Subclasses define `features(x)` (N, width); the head reads them. The head can be learnt by
    `aivsreal train` or fitted elsewhere in closed form and folded in (`set_head`)."""

    def __init__(self, width: int):
        super().__init__()
        self.head = nn.Linear(width, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def set_head(self, weight: np.ndarray, bias: float, mean: np.ndarray | None = None,
                 scale: np.ndarray | None = None) -> None:
        """A linear classifier fitted elsewhere on `features` (standardised by `mean`/`scale` if given),
        folded into the head: logit = w . (f - mean) / scale + b."""
        w, n = np.asarray(weight, np.float64).reshape(-1), self.head.in_features
        if w.size != n:
            raise AivsrealError(f"a probe head needs {n} weights, got {w.size}")
        mean = np.zeros(n) if mean is None else np.asarray(mean, np.float64)
        scale = np.ones(n) if scale is None else np.asarray(scale, np.float64)
        folded = w / scale
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(folded).view(1, -1))
            self.head.bias.fill_(float(bias - folded @ mean))


class FrozenProbe(LinearProbe):
    """A probe on a frozen backbone: only the head learns, and the backbone stays in eval mode whatever
    `train()` says (no dropout, batch-norm statistics fixed), so that its features never drift."""

    def __init__(self, backbone: nn.Module, width: int):
        super().__init__(width)
        self.backbone = backbone.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> FrozenProbe:
        super().train(mode)
        self.backbone.eval()
        return self
