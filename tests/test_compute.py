"""Training compute: FLOPs per image counted on the real network, recorded by every training run."""

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from aivsreal.device import cpu_bf16_native
from aivsreal.models import build_model, default_config
from aivsreal.train.compute import train_flops_per_image


def test_flops_scale_with_the_input_and_leave_the_network_untouched():
    net = build_model(default_config("fast"))
    wide = build_model(default_config("fast", input_size=64))  # the network upsamples 32 px images to 64
    before = {k: v.clone() for k, v in net.state_dict().items()}
    small, large = train_flops_per_image(net, 32), train_flops_per_image(wide, 32)
    assert 100e6 < small < 300e6  # about 53 MFLOPs forward, twice that backward
    assert 3.5 < large / small < 4.5  # convolutions: four times the pixels, four times the work
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BN statistics unchanged


@pytest.mark.parametrize("name", ["fast", "efficientnet_lite0"])
def test_a_training_image_costs_about_three_forward_passes(name):
    """Backward = the input's and the weights' gradients, each as dear as the forward; torch's own
    formula counted a depthwise convolution's weight gradient `groups` times over (Lite0: 42x)."""
    net = build_model(default_config(name))
    with FlopCounterMode(display=False) as counter:
        net.eval()(torch.rand(1, 3, 32, 32) * 255)
    assert 2.8 < train_flops_per_image(net, 32) / counter.get_total_flops() < 3.0


def test_training_records_its_compute(trained_run):
    _, run = trained_run
    training = json.loads((run / "metrics.json").read_text())["training"]
    assert training["images_seen"] == 4 * (172 // 16) * 16  # epochs x full batches
    assert training["pflops"] == training["flops_per_image"] * training["images_seen"] / 1e15
    # which arithmetic the speed figures came from: bf16 only where this CPU does it natively
    assert training["precision"] == ("bfloat16" if cpu_bf16_native() else "float32")
