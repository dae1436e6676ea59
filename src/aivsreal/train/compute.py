"""Training compute in FLOPs: the budget unit that does not drift with the machine's speed.

The same `fast` run took 20 minutes one day and 39 the next on this machine, so "trained in 20
CPU-minutes" is not a budget anyone can check. Forward + backward FLOPs per image (counted by
`torch.utils.flop_counter` on the real network, convolutions and matrix products) times images
seen is.

torch's counter (2.14) counts the weight gradient of a grouped convolution as if it were dense:
for EfficientNet's depthwise convolutions that is `groups` (up to 1,152) times too many, which
made a Lite0 training image look 14x dearer than it is. `_conv_backward_flop` replaces its
formula: each requested gradient (input, weight) costs what the forward convolution costs.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from aivsreal.models import DetectorNet


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed=transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def train_flops_per_image(network: DetectorNet, image_size: int) -> float:
    """Forward + backward FLOPs of one training image (batch of 2, counted, halved), on a copy: a
    training-mode forward would move the BatchNorm statistics of the network itself."""
    probe = copy.deepcopy(network).cpu().float().train()
    x = torch.rand(2, 3, image_size, image_size) * 255
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop}) \
            as counter:
        F.binary_cross_entropy_with_logits(probe(x).float(), torch.zeros(2)).backward()
    return counter.get_total_flops() / 2
