"""Training augmentation: flips and shifts on tensors, optional in-the-wild degradations, and the
codec chain that every native-resolution training view goes through."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from aivsreal.data.crops import random_crop
from aivsreal.data.perturb import gaussian_blur, gaussian_noise, jpeg, rescale


def flip_and_translate(x: torch.Tensor, flip: bool | torch.Tensor, max_shift: int,
                       generator: torch.Generator) -> torch.Tensor:
    """A horizontal flip (True: a coin per image; a boolean mask: the images it marks) and a random
    shift of up to `max_shift` pixels (reflect-padded).

    Flips and small shifts keep the pixel grid, so JPEG block artefacts and generator
    fingerprints survive; rotations or rescaling would resample them away.
    """
    n, _, h, w = x.shape
    if not isinstance(flip, torch.Tensor):
        flip = torch.rand(n, generator=generator) < 0.5 if flip else None
    if flip is not None:
        x = torch.where(flip.view(n, 1, 1, 1).to(x.device), x.flip(3), x)
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


def alternating_flips(n_images: int, seed: int) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """Which of the images at rows `idx` to mirror in `epoch`: a coin per image in epoch 0, then the
    opposite of the last epoch's choice (airbench's alternating flip, Jordan 2024).

    Random flips show an image the same way in two epochs running half the time; alternating
    shows every image both ways in every pair of epochs, so fewer epochs cover the flipped data.
    The coins come from `seed` alone, not the training generator, so a resumed run flips alike.
    """
    first = torch.rand(n_images, generator=torch.Generator().manual_seed(seed)) < 0.5

    def mask(idx: torch.Tensor, epoch: int) -> torch.Tensor:
        return first[idx] ^ bool(epoch % 2)

    return mask


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Paint one random `size` x `size` square per image (clipped at the border) in its mean colour.

    Cutout (DeVries & Taylor 2017; airbench96 for 40-epoch CIFAR-10 runs): with part of the image
    hidden, the net has to use evidence spread over the whole of it. It costs no FLOPs, unlike a
    wider net, which is what the compute budget of the fast recipe needs (at 32 epochs it fits
    train far better than test: 99.7% against 98.1%). The mean colour, not black, so that the
    square adds no new colour statistic that either class could own.
    """
    if size <= 0:
        return x
    n, _, h, w = x.shape
    top = torch.randint(0, h, (n, 1), generator=generator) - size // 2
    left = torch.randint(0, w, (n, 1), generator=generator) - size // 2
    ys, xs = torch.arange(h), torch.arange(w)
    rows = (ys >= top) & (ys < top + size)
    cols = (xs >= left) & (xs < left + size)
    mask = (rows[:, None, :, None] & cols[:, None, None, :]).to(x.device)
    return torch.where(mask, x.mean((2, 3), keepdim=True), x)


def degrade(images: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Re-compress, blur or shrink-and-enlarge a random `share` of (N, H, W, 3) uint8 images.

    Detectors trained on clean images key on fine generator traces that blur and resizing
    erase (see `aivsreal robustness`); Wang et al. (CVPR 2020) showed that training with blur
    and JPEG makes them survive such images. Each chosen image gets one degradation, its
    strength drawn from a range: JPEG quality 40-95, blur sigma 0.25-1.25 px, resize to
    50-90% and back. Per-image Python work: about 10% slower epochs at share 0.5.
    """
    out = images.copy()
    for i in np.flatnonzero(rng.random(len(images)) < share):
        kind, one = rng.integers(3), images[i : i + 1]
        if kind == 0:
            out[i] = jpeg(one, int(rng.integers(40, 96)))[0]
        elif kind == 1:
            out[i] = gaussian_blur(one, float(rng.uniform(0.25, 1.25)))[0]
        else:
            out[i] = rescale(one, float(rng.uniform(0.5, 0.9)))[0]
    return out


@dataclass(frozen=True)
class CodecChain:
    """One random chain every training view goes through, REAL and FAKE alike (B-Free; Wang et al. 2020).

    In real-world data the file format, JPEG tables and image size separate the classes on their
    own (one published detector learned "JPEG = real"). Passing every view through the same
    random rescale, blur, noise and a final JPEG re-encode at a random quality takes those cues
    away: what is left to learn is in the pixels. benchmarks/wild.py trains its probes on such views.
    """

    scale: tuple[float, float] = (0.5, 1.0)  # resize the whole image by this factor first, p_scale of the time
    p_scale: float = 0.3
    blur_sigma: tuple[float, float] = (0.1, 1.2)
    p_blur: float = 0.2
    noise_sigma: tuple[float, float] = (1.0, 4.0)
    p_noise: float = 0.2
    jpeg_quality: tuple[int, int] = (65, 100)  # every view is re-encoded last

    def view(self, pixels: np.ndarray, crop: int, rng: np.random.Generator) -> np.ndarray:
        """A random native `crop` x `crop` training view of an HxWx3 uint8 image."""
        if rng.random() < self.p_scale:
            h, w = pixels.shape[:2]
            f = rng.uniform(*self.scale)
            size = (max(1, round(w * f)), max(1, round(h * f)))
            pixels = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BICUBIC))
        x = random_crop(pixels, crop, rng)[None]
        if rng.random() < self.p_blur:
            x = gaussian_blur(x, float(rng.uniform(*self.blur_sigma)))
        if rng.random() < self.p_noise:
            x = gaussian_noise(x, float(rng.uniform(*self.noise_sigma)), seed=int(rng.integers(2**31)))
        return jpeg(x, int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)))[0]
