"""aivsreal: tell AI-generated images from real ones."""

__version__ = "0.1.0"

from aivsreal.predict.detector import Detector, Prediction  # noqa: E402

__all__ = ["Detector", "Prediction", "__version__"]
