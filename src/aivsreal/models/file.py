"""The `model.pt` format: weights plus a typed `ModelMeta` with everything inference needs.

Read with `safe_load` (weights only, never code). Files are forward-tolerant: keys a newer
minor version adds are ignored, so a model trained with a newer aivsreal still loads; a
newer `format_version` is refused with the fix (upgrade).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from aivsreal import __version__
from aivsreal.data.splits import SplitRecipe
from aivsreal.errors import AivsrealError
from aivsreal.models._registry import build_model
from aivsreal.models.domain import DomainCheck
from aivsreal.models.network import DetectorNet, ModelConfig
from aivsreal.safe_io import atomic_save, safe_load

FORMAT = "aivsreal-model"
FORMAT_VERSION = 1
CLASS_NAMES = ("REAL", "FAKE")


def verdict(p_fake: float, threshold: float) -> str:
    """The one rule that turns P(FAKE) into a label: FAKE at or above the threshold."""
    return "FAKE" if p_fake >= threshold else "REAL"


EXPERIMENTAL_BELOW = 0.80  # locked external AUC a detector for images in the wild must reach (issue 50)
MAX_REASON_CHARS = 300


def experimental_reason(external_auc: float | None, held_out_auc: float | None = None) -> str | None:
    """The rule for shipping a detector of images in the wild: experimental unless its AUC on the
    locked external set (sources set aside before any model saw them) is at least EXPERIMENTAL_BELOW.
    A held-out figure alone does not count: its sources shaped the recipe, and issue 50's wild
    detector held 0.79 there and 0.45 on sources never used. None: not experimental."""
    held = f" (held-out {held_out_auc:.3f})" if held_out_auc is not None else ""
    if external_auc is None:
        return f"no locked external AUC measured{held}"
    if external_auc >= EXPERIMENTAL_BELOW:
        return None
    return f"locked external AUC {external_auc:.3f} is below {EXPERIMENTAL_BELOW:.2f}{held}"


def experimental_notice(reason: str) -> str:
    """What the CLI, the Python API and the card say after "experimental", in one line."""
    return f"{reason}; treat its verdicts as one weak signal, never as proof"


@dataclass
class ModelMeta:
    """How to read a model's output, and where it came from; stored beside the weights."""

    threshold: float = 0.5  # FAKE when P(FAKE) >= threshold
    temperature: float = 1.0  # P(FAKE) = sigmoid(logit / temperature), fitted by --calibrate
    tta: bool = False  # average the logit with the mirrored image's (train turns it on unless --no-tta)
    operating_point: dict[str, Any] | None = None  # how the threshold was chosen on val, if it was
    split: SplitRecipe | None = None  # how train/val/test were drawn: evaluate rebuilds the same test
    data_fingerprint: str | None = None  # digest of the training data's file list, sizes and labels
    summary: dict[str, Any] = field(default_factory=dict)  # training record and metrics (JSON-like)
    domain: DomainCheck | None = None  # what the training data looked like (None: files before 0.2)
    experimental: str | None = None  # why its verdicts are not to be relied on, one line (experimental_reason)
    aivsreal_version: str = __version__

    def label(self, p_fake: float) -> str:
        return verdict(p_fake, self.threshold)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(replace(self, domain=None))
        d["domain"] = self.domain.to_dict() if self.domain else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "model file") -> ModelMeta:
        """Read what a file stores, refusing values that would give wrong verdicts silently."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known and v is not None}
        for key in ("threshold", "temperature"):
            if key in values:
                values[key] = _finite(values[key], f"{where}: {key}")
        if not 0.0 <= values.get("threshold", 0.5) <= 1.0:
            raise AivsrealError(f"{where}: threshold {values['threshold']} is outside 0..1")
        if values.get("temperature", 1.0) <= 0:
            raise AivsrealError(f"{where}: temperature must be positive (got {values['temperature']})")
        values["tta"] = bool(values.get("tta", False))
        if "experimental" in values:
            values["experimental"] = _reason(values["experimental"], f"{where}: experimental")
        split = values.get("split") or _legacy_split(values.get("summary"))
        values["split"] = SplitRecipe.from_dict(split) if isinstance(split, dict) else None
        if not isinstance(values.get("summary", {}), dict):
            raise AivsrealError(f"{where}: summary is not a mapping")
        if "domain" in values:
            try:
                values["domain"] = DomainCheck.from_dict(values["domain"])
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise AivsrealError(f"{where}: unreadable domain check ({type(e).__name__}: {e}); "
                                    "refit it with `aivsreal train` or load an intact copy") from None
        return cls(**values)


def _finite(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AivsrealError(f"{what} is not a number ({value!r})") from None
    if not math.isfinite(number):
        raise AivsrealError(f"{what} is not finite ({number})")
    return number


def _reason(value: Any, what: str) -> str:
    """One printable line: it is shown beside every verdict, so a crafted file must not break the layout."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_REASON_CHARS \
            or not value.isprintable():
        raise AivsrealError(f"{what} must be one line of text (up to {MAX_REASON_CHARS} characters) saying why the "
                            f"detector is experimental, or null when it is not (got {repr(value)[:60]})")
    return value.strip()


def _legacy_split(summary: Any) -> dict[str, Any] | None:
    """Files written before `split` existed kept the seed and val fraction in summary['data']."""
    data = summary.get("data") if isinstance(summary, dict) else None
    if not isinstance(data, dict) or "seed" not in data:
        return None
    return {k: data[k] for k in ("seed", "val_fraction", "limit") if k in data}


def save_model(path: str | Path, model: DetectorNet, meta: ModelMeta | None = None) -> None:
    """Write a standalone model file: config, preprocessing, class names, weights and `meta`."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_save({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "class_names": list(CLASS_NAMES),
        "output": "logit of P(FAKE)",
        "preprocessing": {
            "decode": "RGB (alpha over white), EXIF-rotated, bicubic resize to image_size",
            "input": "float32 NCHW pixels in [0, 255]; normalisation happens inside the model",
        },
        **(meta or ModelMeta()).to_dict(),
        "state_dict": state,
    }, path)


def _read(path: str | Path) -> dict[str, Any]:
    obj = safe_load(path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise AivsrealError(f"{path}: not an aivsreal model file (a training checkpoint or other file?)")
    version = obj.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise AivsrealError(f"{path}: format_version {version!r} is not a whole number; the file is damaged")
    if version > FORMAT_VERSION:
        raise AivsrealError(
            f"{path}: model format v{version} is newer than this aivsreal "
            f"({__version__}) reads (v{FORMAT_VERSION}); upgrade aivsreal"
        )
    if not isinstance(obj.get("config"), dict) or not isinstance(obj.get("state_dict"), dict):
        raise AivsrealError(f"{path}: model file has no config or no weights; the file is damaged")
    return obj


SIZE_RANGE = (8, 4096)  # px: what `train --image-size/--input-size/--crop` accept (cli.py), and all a file may ask


def read_config(d: dict[str, Any], where: str) -> ModelConfig:
    """A ModelConfig from stored values; unknown keys (a newer minor version) are ignored.

    Every model file, folder and ONNX export is read through here, so `check_config` refuses a
    config out of bounds before anything is built or decoded (predict, serve, evaluate alike).
    """
    known = {f.name for f in fields(ModelConfig)}
    try:
        config = ModelConfig.from_dict({k: v for k, v in d.items() if k in known})
    except (KeyError, TypeError, ValueError) as e:
        raise AivsrealError(f"{where}: unreadable model config ({type(e).__name__}: {e})") from None
    check_config(config, where)
    return config


def check_config(config: ModelConfig, where: str) -> None:
    """Refuse sizes, crops and normalisation no trained model has: an image_size of 60000 would make
    every decode allocate gigabytes, a zero input size or a std of 0 would fail or give NaN per image."""
    low, high = SIZE_RANGE
    if not isinstance(config.options, dict):
        raise AivsrealError(f"{where}: model config options are not a mapping; the file is damaged")
    crop = config.options.get("crop")
    sizes = {"image_size": config.image_size, "input_size": config.input_size,
             **({"crop": crop} if crop not in (None, 0) else {})}
    for key, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise AivsrealError(f"{where}: {key} {value!r} is outside {low}..{high} px: the file is damaged or "
                                "not one aivsreal trained; retrain it or load an intact copy")
    if crop not in (None, 0) and not crop == config.image_size == config.input_size:
        raise AivsrealError(f"{where}: crop {crop} differs from image_size {config.image_size} / input_size "
                            f"{config.input_size} (a native-crop model reads its crops as they are); the file is "
                            "damaged")
    check_rescale(config.options, crop, where)
    for key, values in (("mean", config.mean), ("std", config.std)):
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)]
        if len(values) != 3 or len(numbers) != 3 or (key == "std" and min(numbers) <= 0):
            raise AivsrealError(f"{where}: {key} {list(values)} is not 3 finite numbers (one per RGB channel"
                                f"{', each above 0' if key == 'std' else ''}); the file is damaged")


def check_rescale(options: dict[str, Any], crop: Any, where: str) -> None:
    """`rescale` S resizes an image's shorter side to S px before its crops are cut: it must be a whole
    number from the crop (a smaller one would only pad the crops) to the largest size a file may ask."""
    rescale, high = options.get("rescale"), SIZE_RANGE[1]
    if rescale is not None and (crop in (None, 0) or not isinstance(rescale, int) or isinstance(rescale, bool)
                                or not crop <= rescale <= high):
        raise AivsrealError(f"{where}: rescale {rescale!r} is not a whole number of px from the crop "
                            f"({crop}) to {high} on a native-crop model; the file is damaged or not one aivsreal "
                            "wrote")
    if not isinstance(options.get("draft", True), bool):
        raise AivsrealError(f"{where}: draft {options['draft']!r} is not true or false; the file is damaged")
    tiles = options.get("max_tiles")
    if tiles is not None and (crop in (None, 0) or tiles not in (1, 4, 9) or isinstance(tiles, bool)):
        raise AivsrealError(f"{where}: max_tiles {tiles!r} is not 1, 4 or 9 (tiles per image, 1x1 to 3x3) on a "
                            "native-crop model; the file is damaged or not one aivsreal wrote")
    q = options.get("reencode")
    if q is not None and (rescale is None or not isinstance(q, int) or isinstance(q, bool) or not 1 <= q <= 100):
        raise AivsrealError(f"{where}: reencode {q!r} is not a JPEG quality from 1 to 100 on a model with rescale; "
                            "the file is damaged or not one aivsreal wrote")


def check_weights(state: dict[str, Any], where: str) -> None:
    """NaN or inf in a weight makes every verdict NaN: refuse the file at load (predict and serve
    alike), not at the first request."""
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise AivsrealError(f"{where}: weight {key} holds non-finite values (NaN or inf); the file is damaged: "
                                "load an intact copy or retrain")


def load_model_file(path: str | Path) -> tuple[DetectorNet, ModelMeta]:
    """The model in eval mode, and its metadata (`models.hub.load_model` takes any model reference)."""
    obj = _read(path)
    config = read_config(obj["config"], str(path))
    check_weights(obj["state_dict"], str(path))
    model = build_model(config)
    try:
        model.load_state_dict(obj["state_dict"])
    except (RuntimeError, TypeError) as e:
        raise AivsrealError(f"{path}: weights do not fit model {config.name!r} ({str(e).splitlines()[0]})") \
            from None
    model.eval()
    return model, ModelMeta.from_dict(obj, str(path))


def update_model_meta(path: str | Path, **changes: Any) -> ModelMeta:
    """Rewrite a model file's metadata (e.g. a fitted temperature), keeping its weights, atomically."""
    model, meta = load_model_file(path)  # the same checks as any load: refuse what we would refuse to read
    meta = replace(meta, **changes)
    save_model(path, model, meta)
    return meta
