"""The `model.pt` format: weights plus everything `predict` needs (see safe_io for how it is read)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aivsreal import __version__
from aivsreal.errors import AivsrealError
from aivsreal.models import Detector, ModelConfig, build_model
from aivsreal.safe_io import atomic_save, safe_load

FORMAT = "aivsreal-model"
FORMAT_VERSION = 1


def save_model(path: str | Path, model: Detector, extra: dict[str, Any] | None = None) -> None:
    """Write a standalone model file: config, preprocessing, class names, threshold, metrics."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_save({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "aivsreal_version": __version__,
        "config": model.config.to_dict(),
        "class_names": ["REAL", "FAKE"],
        "output": "logit of P(FAKE)",
        "preprocessing": {
            "decode": "RGB (alpha over white), EXIF-rotated, bicubic resize to image_size",
            "input": "float32 NCHW pixels in [0, 255]; normalisation happens inside the model",
        },
        "threshold": 0.5,
        "state_dict": state,
        **(extra or {}),
    }, path)


def load_model(path: str | Path) -> tuple[Detector, dict[str, Any]]:
    """The model in eval mode, and the file's metadata (threshold, metrics, ...)."""
    obj = safe_load(path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise AivsrealError(f"{path}: not an aivsreal model file (a training checkpoint or other file?)")
    if obj.get("format_version", 0) > FORMAT_VERSION:
        raise AivsrealError(
            f"{path}: model format v{obj['format_version']} is newer than this aivsreal "
            f"({__version__}) reads (v{FORMAT_VERSION}); upgrade aivsreal"
        )
    config = ModelConfig.from_dict(obj["config"])
    model = build_model(config)
    try:
        model.load_state_dict(obj["state_dict"])
    except RuntimeError as e:
        raise AivsrealError(f"{path}: weights do not fit model {config.name!r} ({str(e).splitlines()[0]})") \
            from None
    model.eval()
    meta = {k: v for k, v in obj.items() if k != "state_dict"}
    return model, meta


def update_model_meta(path: str | Path, updates: dict[str, Any]) -> None:
    """Rewrite a model file's metadata (e.g. a fitted temperature), keeping its weights, atomically."""
    load_model(path)  # the same checks as any load: refuse what we would refuse to read
    obj = safe_load(path)
    atomic_save({**obj, **updates}, path)
