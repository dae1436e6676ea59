"""Muon for convolution filters, SGD for the rest: `aivsreal train --optimizer muon`.

Muon (Jordan et al. 2024; in airbench, the fastest CIFAR-10 training recipe) replaces each
filter's momentum step by its nearest semi-orthogonal matrix, computed by a few Newton-Schulz
iterations: every direction of the filter bank moves by the same amount, instead of the few
directions that dominate the gradient. torch.optim.Muon takes 2-D weights only; a convolution's
(out, in, k, k) filters are one (out, in*k*k) matrix here. As in airbench, each filter bank's
norm is held at sqrt(out) (it is followed by batch norm, so its scale only sets the step's relative
size) and carries no weight decay. Batch-norm parameters and the linear head, where an
orthogonal step means nothing, take Nesterov SGD with the same learning rate schedule.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

# The quintic Newton-Schulz coefficients of Jordan et al. (also torch.optim.Muon's defaults): they
# push every singular value into about [0.7, 1.2] in five steps.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(g: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """The (approximately) nearest semi-orthogonal matrix to 2-D `g`, by Newton-Schulz iteration."""
    a, b, c = NS_COEFFICIENTS
    x = g.float() / (g.float().norm() + eps)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    """Param groups with `orthogonal=True` take Muon steps (each parameter seen as (rows, -1));
    the others Nesterov SGD with weight decay. Both use the group's `lr` and `momentum`."""

    def __init__(self, params: Iterable[dict], lr: float, momentum: float = 0.9):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": 0.0, "orthogonal": False})

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lr, mom = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if not group["orthogonal"] and group["weight_decay"]:
                    g = g.add(p, alpha=group["weight_decay"])
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                buf.mul_(mom).add_(g)
                g = g.add(buf, alpha=mom)  # Nesterov
                if group["orthogonal"]:
                    p.mul_(len(p) ** 0.5 / p.norm().clamp_min(1e-12))
                    g = orthogonalize(g.reshape(len(g), -1)).view_as(p).to(p.dtype)
                p.add_(g, alpha=-lr)
        return loss


def muon_for(groups: list[dict], lr: float) -> Muon:
    """Muon on every convolution's filters (4-D), taken out of `groups`; the rest keep their groups
    (and weight decay) for Nesterov SGD."""
    filters = [p for g in groups for p in g["params"] if p.ndim == 4]
    rest = [{**g, "params": [p for p in g["params"] if p.ndim != 4]} for g in groups]
    return Muon([{"params": filters, "orthogonal": True}, *rest], lr=lr)
