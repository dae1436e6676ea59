"""Batch augmentation on tensors: no per-image Python work in the training loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def flip_and_translate(x: torch.Tensor, flip: bool, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to `max_shift` pixels (reflect-padded).

    Flips and small shifts keep the pixel grid, so JPEG block artefacts and generator
    fingerprints survive; rotations or rescaling would resample them away.
    """
    n, _, h, w = x.shape
    if flip:
        flipped = torch.rand(n, generator=generator) < 0.5
        x = torch.where(flipped.view(n, 1, 1, 1).to(x.device), x.flip(3), x)
    if max_shift <= 0:
        return x
    p = max_shift
    padded = F.pad(x, (p, p, p, p), mode="reflect")
    shifts = torch.randint(0, 2 * p + 1, (2, n), generator=generator)
    out = torch.empty_like(x)
    # Group by shift so the work is a handful of slices, not one per image.
    for dy in range(2 * p + 1):
        rows = (shifts[0] == dy).nonzero().squeeze(1)
        if len(rows) == 0:
            continue
        band = padded[rows.to(x.device), :, dy : dy + h]
        for dx in range(2 * p + 1):
            sel = (shifts[1][rows] == dx).nonzero().squeeze(1)
            if len(sel):
                out[rows[sel].to(x.device)] = band[sel.to(x.device), :, :, dx : dx + w]
    return out
