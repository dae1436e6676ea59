"""`npr_patch`: a small CNN on the neighbouring-pixel residual of native patches (NPR, Tan et al. 2024).

Why a residual: a generator's decoder upsamples in steps of 2 (a latent diffusion decoder 8x), so
the four pixels of each 2x2 cell are computed together from one coarser value and relate to each
other in a way a camera's sensor and demosaicing do not. `x - up(down(x))` (nearest down and up by
2) takes away what is pictured and keeps exactly that relation; a network that reads only it has
less content to fall back on than one that reads the pixels (issue 50: the `wild` probe follows a
content-only classifier on photoreal images).

Why patches: the network is fully convolutional and ends in a global average pool and one linear
unit, so its logit on a tile is, up to the border, the mean of its logits on the patches inside
it. It is trained on random native patches (`--crop`, 96 px) of many images and scores an image
by the mean logit of tiles spread over it (data/crops.tiles), so one patch of sky does not decide.
No pretrained weights read residuals: it trains from scratch, in minutes per thousand images on
two CPU cores. The residual's 2x2 cells go to channels (pixel unshuffle) before the first
convolution, so nothing of the cell is lost to a stride and the convolutions run at half size.
"""

from __future__ import annotations

import torch
from torch import nn

from aivsreal.errors import AivsrealError
from aivsreal.models._registry import register_model
from aivsreal.models.network import ModelConfig

DEFAULT_WIDTHS = (24, 48, 96)
CROP = 96
# AdamW with a one-cycle schedule; many epochs, since each one sees one random patch per image
TRAIN_RECIPE = {"epochs": 20, "batch_size": 64, "optimizer": "adamw", "lr": 2e-3, "weight_decay": 0.05,
                "schedule": "onecycle", "label_smoothing": 0.1, "max_shift": 0, "flip": True,
                "patience": 6, "cpu_amp": False}


def default_config(name: str) -> ModelConfig:
    # mean 0, std 1: pixels in [0, 1]; the residual is a difference, so no data set statistics
    return ModelConfig(name=name, image_size=CROP, input_size=CROP, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                       options={"crop": CROP, "widths": list(DEFAULT_WIDTHS)})


def npr_residual(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 12, H/2, W/2): each 2x2 cell's four pixels as channels, less its top-left
    pixel (what nearest upsampling by 2 would have copied to all four). The top-left channels are
    then zero; kept so that the layout stays plain. Plain reshapes and a subtraction, so it exports
    to ONNX."""
    cells = nn.functional.pixel_unshuffle(x, 2)
    n, c4, h, w = cells.shape
    cells = cells.view(n, c4 // 4, 4, h, w)
    return (cells - cells[:, :, :1]).view(n, c4, h, w)


def _block(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class NPRPatchNet(nn.Module):
    """2x2 cells' residual as channels -> three conv stages (the last two halve the size) -> mean -> logit."""

    def __init__(self, widths: tuple[int, ...] = DEFAULT_WIDTHS):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 12
        for i, w in enumerate(widths):
            layers += _block(cin, w, 1 if i == 0 else 2)
            cin = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cin, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            raise AivsrealError(f"npr_patch reads 2x2 cells: its input must have even sides, got "
                                f"{x.shape[-2]}x{x.shape[-1]}; use an even --crop")
        return self.head(self.body(npr_residual(x)).mean((2, 3)))


@register_model
def npr_patch(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> nn.Module:
    if pretrained or weights:
        raise AivsrealError("npr_patch has no pretrained weights: it trains from scratch (drop --pretrained)")
    return NPRPatchNet(tuple(config.options.get("widths", DEFAULT_WIDTHS)))
