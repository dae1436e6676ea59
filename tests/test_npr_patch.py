"""npr_patch reads the neighbouring-pixel residual only: what is pictured at 2x2-cell scale cannot move it."""

import numpy as np
import pytest
import torch

from aivsreal.errors import AivsrealError
from aivsreal.models import build_model, default_config
from aivsreal.models.npr_patch import npr_residual


def cells(rng: np.random.Generator, n: int, side: int) -> torch.Tensor:
    """Images constant over each 2x2 cell (nearest-upsampled by 2): pure content, no residual."""
    coarse = torch.from_numpy(rng.uniform(0, 255, (n, 3, side // 2, side // 2))).float()
    return coarse.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def test_the_residual_is_zero_for_an_upsampled_image_and_keeps_every_pixel_of_a_cell():
    rng = np.random.default_rng(0)
    assert torch.count_nonzero(npr_residual(cells(rng, 2, 16))) == 0
    x = torch.from_numpy(rng.uniform(0, 255, (1, 3, 4, 4))).float()
    r = npr_residual(x)
    assert r.shape == (1, 12, 2, 2)
    # channel 4c + 2i + j of cell (y, x) is pixel (2y+i, 2x+j) less pixel (2y, 2x), per colour c
    for c in range(3):
        for i in range(2):
            for j in range(2):
                want = x[0, c, i::2, j::2] - x[0, c, ::2, ::2]
                assert torch.allclose(r[0, 4 * c + 2 * i + j], want)


def test_content_constant_over_cells_does_not_change_the_logit():
    """Adding any image that is constant over 2x2 cells (a picture at half resolution) leaves the
    residual, and so the verdict, unchanged; a change inside a cell does change it."""
    rng = np.random.default_rng(1)
    torch.manual_seed(0)
    model = build_model(default_config("npr_patch")).double().eval()
    with torch.no_grad():
        model.network.head.weight *= 1e3  # untrained, the logit barely moves: make any change visible
        x = torch.from_numpy(rng.uniform(0, 200, (4, 3, 96, 96)))
        base = model(x)
        assert torch.allclose(model(x + cells(rng, 4, 96).double() * 0.2), base, atol=1e-9)
        inside = x.clone()
        inside[:, :, 1::2, 1::2] += 40
        assert (model(inside) - base).abs().min() > 1e-3


def test_an_odd_input_and_pretrained_weights_are_refused_with_the_fix():
    network = build_model(default_config("npr_patch")).network.eval()  # DetectorNet would resize it first
    with pytest.raises(AivsrealError, match="even"):
        network(torch.rand(1, 3, 95, 96))
    with pytest.raises(AivsrealError, match="from scratch"):
        build_model(default_config("npr_patch"), pretrained=True)
