"""aivsreal: tell AI-generated images from real ones.

The public face is `Detector`, `Prediction` and `ModelConfig`, imported on first use: `from aivsreal import
Detector` loads what inference needs and nothing of training, evaluation or the web service.
"""

from typing import Any

__version__ = "0.2.0"
__all__ = ["Detector", "ModelConfig", "Prediction", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Detector", "Prediction"):
        from aivsreal.predict import detector

        return getattr(detector, name)
    if name == "ModelConfig":
        from aivsreal.models.network import ModelConfig

        return ModelConfig
    raise AttributeError(f"module 'aivsreal' has no attribute {name!r}")
