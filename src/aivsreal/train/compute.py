"""Training compute in FLOPs: the budget unit that does not drift with the machine's speed.

The same `fast` run took 20 minutes one day and 39 the next on this machine, so "trained in 20
CPU-minutes" is not a budget anyone can check. Forward + backward FLOPs per image (counted by
`torch.utils.flop_counter` on the real network, convolutions and matrix products) times images
seen is.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from aivsreal.models import DetectorNet


def train_flops_per_image(network: DetectorNet, image_size: int) -> float:
    """Forward + backward FLOPs of one training image (batch of 2, counted, halved), on a copy: a
    training-mode forward would move the BatchNorm statistics of the network itself."""
    probe = copy.deepcopy(network).cpu().float().train()
    x = torch.rand(2, 3, image_size, image_size) * 255
    with FlopCounterMode(display=False) as counter:
        F.binary_cross_entropy_with_logits(probe(x).float(), torch.zeros(2)).backward()
    return counter.get_total_flops() / 2
