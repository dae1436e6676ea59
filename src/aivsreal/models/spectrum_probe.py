"""A linear probe on the spectrum of an image's high-frequency residual: `spectrum_probe`.

Generators leave traces where pretrained backbones look least: upsampling layers (a latent
diffusion model's decoder upsamples 8x; GANs' transposed convolutions 2x at a time) print periodic
peaks into the Fourier spectrum of an image's noise residual, and their power falls off with
frequency unlike a camera's (Durall et al. 2020, Frank et al. 2020; Corvi et al. 2023 found the
peaks in latent diffusion images). No learnt weights: the features are fixed arithmetic on a native
crop, and only `head` learns (by `aivsreal train`, or from a logistic regression via `set_head`).

Measured on the wild set's held-out sources (benchmarks/results/wild.md, 2026-11-27): 0.570 same-codec
AUC alone (0.795 between PNG files, 0.620 between JPEG files, whose 8x8 blocks print peaks at the same
k/8 frequencies), and 0.787 beside the Lite2 probe's features against 0.789 for Lite2 alone: so it is
not in the bundled `wild` detector.

Features of an S x S crop (S divisible by 16; 295 values):
- the residual's log energy and, per colour channel, its log standard deviation, and the
  correlation of its channels (a camera's demosaicing correlates them; a decoder need not);
- the radial profile: the residual's log power spectrum averaged over 32 rings of frequency,
  less its mean (the shape of the fall-off, not its level);
- the peaks: at the 16 x 16 frequencies k/16 cycles per pixel (every period 16, 8, 4 and 2 px
  can print), the log power less the mean of its 5 x 5 neighbourhood.
"""

from __future__ import annotations

import torch
from torch import nn

from aivsreal.errors import AivsrealError
from aivsreal.models._probe import PROBE_RECIPE, LinearProbe
from aivsreal.models._registry import register_model
from aivsreal.models.network import ModelConfig

TRAIN_RECIPE = PROBE_RECIPE
RINGS, GRID = 32, 16
FEATURES = 1 + 3 + 3 + RINGS + GRID * GRID


def default_config(name: str) -> ModelConfig:
    # mean 0, std 1: pixels in [0, 1]; the features are about differences, so no dataset statistics
    return ModelConfig(name=name, image_size=224, input_size=224, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                       options={"crop": 224})


def high_pass(x: torch.Tensor) -> torch.Tensor:
    """Each pixel less the mean of its 3 x 3 neighbourhood: what a smooth image model cannot explain."""
    smooth = nn.functional.avg_pool2d(nn.functional.pad(x, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
    return x - smooth


class SpectrumProbe(LinearProbe):
    """Residual spectrum features (`features`) -> one linear layer."""

    def __init__(self):
        super().__init__(FEATURES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # spectra need float32's digits
            return self._features(x.float())

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if h != w or h % GRID:
            raise AivsrealError(f"spectrum features need a square input divisible by {GRID} px, got {h}x{w}: "
                                f"set input_size to a multiple of {GRID}")
        r = high_pass(x)
        flat = r.flatten(2)
        std = flat.std(2, correction=0)
        unit = (flat - flat.mean(2, keepdim=True)) / (std[..., None] + 1e-6)
        corr = torch.stack([(unit[:, i] * unit[:, j]).mean(1) for i, j in ((0, 1), (1, 2), (0, 2))], 1)
        power = torch.fft.fft2(r).abs().pow(2).mean(1)  # (N, S, S), averaged over colour channels
        log_power = torch.log(power + 1e-10)
        energy = torch.log(power.mean((1, 2)) + 1e-10)[:, None]
        freq = torch.fft.fftfreq(h, device=x.device)
        radius = torch.sqrt(freq[:, None] ** 2 + freq[None, :] ** 2)
        ring = torch.clamp((radius / radius.max() * RINGS).long(), max=RINGS - 1).flatten()
        sums = torch.zeros(n, RINGS, device=x.device).index_add_(1, ring, log_power.flatten(1))
        profile = sums / torch.bincount(ring, minlength=RINGS).clamp(min=1)
        profile = profile - profile.mean(1, keepdim=True)
        # the 5 x 5 neighbourhood wraps around: the spectrum is periodic
        around = nn.functional.avg_pool2d(nn.functional.pad(log_power[:, None], (2, 2, 2, 2), mode="circular"),
                                          5, stride=1)[:, 0]
        around = (around * 25 - log_power) / 24
        step = h // GRID
        peaks = (log_power - around)[:, ::step, ::step].flatten(1)
        return torch.cat([energy, torch.log(std + 1e-6), corr, profile, peaks], 1)


@register_model
def spectrum_probe(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> SpectrumProbe:
    if config.input_size % GRID:
        raise AivsrealError(f"spectrum_probe reads its peaks on a {GRID}x{GRID} frequency grid, so its input must be "
                            f"a multiple of {GRID} px, got {config.input_size}: use --crop 224 (or 64, 128, 256...)")
    return SpectrumProbe()  # nothing pretrained: the features are fixed
