"""The detectors we ship, by the name `--model` takes.

Every model takes float RGB pixels in [0, 255], NCHW, at `image_size`, and returns one logit
per image: P(FAKE) = sigmoid(logit). Normalisation and any resizing happen inside the model,
so a saved model, its ONNX export and the web service all need only the raw pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from aivsreal.errors import AivsrealError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model and feed it: saved inside every model file."""

    name: str = "fast"
    image_size: int = 32  # images are decoded and resized to this
    input_size: int = 32  # the network sees this (models pretrained on 224px upsample to it)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    options: dict[str, Any] = field(default_factory=dict)  # model-specific (widths, dropout...)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        return cls(**{**d, "mean": tuple(d["mean"]), "std": tuple(d["std"])})


class Normalize(nn.Module):
    """Pixels in [0, 255] to the network's normalised input, resized if the network wants it."""

    def __init__(self, mean, std, input_size: int):
        super().__init__()
        self.register_buffer("scale", 1.0 / (255.0 * torch.tensor(std).view(1, 3, 1, 1)))
        self.register_buffer("shift", torch.tensor(mean).view(1, 3, 1, 1) / torch.tensor(std).view(1, 3, 1, 1))
        self.input_size = input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.scale - self.shift
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = nn.functional.interpolate(x, size=(self.input_size, self.input_size),
                                          mode="bilinear", align_corners=False)
        return x


class Detector(nn.Module):
    """Normalize -> network -> one logit per image."""

    def __init__(self, config: ModelConfig, network: nn.Module):
        super().__init__()
        self.config = config
        self.normalize = Normalize(config.mean, config.std, config.input_size)
        self.network = network

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.network(self.normalize(pixels)).squeeze(-1)


def default_config(name: str, **overrides: Any) -> ModelConfig:
    """The config a model is trained with unless the user overrides fields."""
    module = _module(name)
    config = module.default_config()
    for key, value in overrides.items():
        if value is not None:
            setattr(config, key, value)
    return config


def build_model(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> Detector:
    return Detector(config, _module(config.name).build(config, pretrained=pretrained, weights=weights))


def train_recipe(name: str) -> dict[str, Any]:
    """The training options a model is trained with unless the user overrides them."""
    return dict(_module(name).TRAIN_RECIPE)


MODEL_NAMES = ("fast", "resnet50v2", "efficientnet_lite0")


def _module(name: str):
    if name == "fast":
        from aivsreal.models import fast as module
    elif name == "resnet50v2":
        from aivsreal.models import resnet50v2 as module
    elif name == "efficientnet_lite0":
        from aivsreal.models import efficientnet_lite0 as module
    else:
        raise AivsrealError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return module
