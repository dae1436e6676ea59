"""Stage 2, models: the detector families, their registry, weights and the model file.

Every model takes float RGB pixels in [0, 255], NCHW, at `image_size`, and returns one logit
per image: P(FAKE) = sigmoid(logit).
"""

from aivsreal.models._registry import build_model, default_config, model_names, register_model, train_recipe
from aivsreal.models.network import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DetectorNet,
    ModelConfig,
    Normalize,
    pixels_to,
    to_tensor,
    tta_logit,
    tta_views,
)

MODEL_NAMES = model_names()

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "MODEL_NAMES", "DetectorNet", "ModelConfig", "Normalize",
           "build_model", "default_config", "model_names", "pixels_to", "register_model", "to_tensor",
           "train_recipe", "tta_logit", "tta_views"]
