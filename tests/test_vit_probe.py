"""The web-scale ViT probes (UnivFD's CLIP, DINOv2), offline: a tiny random timm ViT stands in for
ViT-L, through the same code path (weights from a local file, the Hub's failure, save and load)."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from aivsreal.data.cache import DecodedSplit
from aivsreal.errors import AivsrealError
from aivsreal.models import build_model, default_config
from aivsreal.models.file import load_model_file, save_model
from aivsreal.train.loop import TrainConfig, train

TINY = "vit_tiny_patch16_224"  # 192 features


def tiny_config(name: str = "clip_probe"):
    config = default_config(name)
    config.options = {**config.options, "arch": TINY}
    return config


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A 'pretrained' tiny ViT in timm's layout, its ImageNet classifier included."""
    torch.manual_seed(1)
    source = timm.create_model(TINY, pretrained=False)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    return path, source.state_dict()


@pytest.mark.parametrize("name", ["clip_probe", "dinov2_probe"])
def test_defaults_name_the_field_s_backbones_with_their_own_normalisation(name):
    config = default_config(name)
    assert config.options["arch"] == {"clip_probe": "vit_large_patch14_clip_224.openai",
                                      "dinov2_probe": "vit_large_patch14_dinov2.lvd142m"}[name]
    assert config.crop == config.input_size == 224
    assert config.mean == ((0.48145466, 0.4578275, 0.40821073) if name == "clip_probe" else (0.485, 0.456, 0.406))


def test_a_local_weights_file_loads_into_a_frozen_backbone_and_only_the_head_learns(weights_file, tmp_path):
    path, source = weights_file
    model = build_model(tiny_config(), weights=str(path))
    backbone = model.network.backbone
    assert torch.equal(backbone.state_dict()["blocks.0.attn.qkv.weight"], source["blocks.0.attn.qkv.weight"])
    assert model.network.head.in_features == 192  # the pooled class token; the ImageNet classifier dropped
    rng = np.random.default_rng(0)
    split = DecodedSplit(rng.integers(0, 256, (8, 224, 224, 3), dtype=np.uint8), np.array([0, 1] * 4),
                         [str(i) for i in range(8)], [])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, split, split, TrainConfig(epochs=1, batch_size=4, optimizer="adam", lr=1e-2), tmp_path,
          torch.device("cpu"), progress=False)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"network.head.weight", "network.head.bias"}
    model.train()
    assert not backbone.training and model.network.head.training

    # a saved probe carries its backbone: loading it needs neither the Hub nor the weights file
    save_model(tmp_path / "probe.pt", model)
    path.rename(path.with_suffix(".gone"))
    try:
        loaded, _ = load_model_file(tmp_path / "probe.pt")
    finally:
        path.with_suffix(".gone").rename(path)
    x = torch.from_numpy(split.images[:2]).permute(0, 3, 1, 2).float()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_weights_that_cannot_be_had_are_one_line_errors_that_say_the_way_out(weights_file, tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load this file")

    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_hf", offline)
    with pytest.raises(AivsrealError) as err:
        build_model(tiny_config(), pretrained=True)
    message = str(err.value)
    assert "\n" not in message and "Hugging Face Hub (timm/" in message and "--weights FILE" in message
    assert "couldn't connect" in message

    with pytest.raises(AivsrealError, match="no such weights file"):
        build_model(tiny_config(), weights=str(tmp_path / "missing.safetensors"))
    foreign = tmp_path / "foreign.safetensors"  # another network's weights
    save_file({"conv_stem.weight": torch.zeros(8, 3, 3, 3)}, str(foreign))
    with pytest.raises(AivsrealError) as err:
        build_model(tiny_config(), weights=str(foreign))
    assert "\n" not in str(err.value) and f"{foreign}: not {TINY} weights" in str(err.value)
