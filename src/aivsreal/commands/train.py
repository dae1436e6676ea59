"""What `aivsreal train` and `aivsreal evaluate` do, end to end, as plain functions."""

from __future__ import annotations

import csv
import logging
import statistics
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from aivsreal.data import splits as run_data
from aivsreal.data.cache import DecodedSplit, default_cache_dir
from aivsreal.data.download import default_data_path
from aivsreal.device import resolve_device
from aivsreal.errors import AivsrealError
from aivsreal.evaluate.calibration import (
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
    rescale_threshold,
    sigmoid,
)
from aivsreal.evaluate.scores import evaluate
from aivsreal.models import Detector as Network
from aivsreal.models import build_model, default_config, train_recipe
from aivsreal.models.file import load_model, save_model, update_model_meta
from aivsreal.predict.detector import predict_logits
from aivsreal.train import distributed
from aivsreal.train.loop import TrainConfig, train

log = logging.getLogger(__name__)


@dataclass
class DataOptions:
    path: str | None = None  # None: $AIVSREAL_DATA, a previous download, or download now
    val_fraction: float = 0.1
    seed: int = 0
    limit: int | None = None
    cache_dir: str | None = None
    no_cache: bool = False
    strict: bool = False

    def load(self, image_size: int) -> run_data.RunData:
        path = Path(self.path) if self.path else default_data_path()
        cache = None if self.no_cache else Path(self.cache_dir) if self.cache_dir else default_cache_dir()
        return run_data.prepare(path, image_size, cache, self.val_fraction, self.seed, self.limit, self.strict)


@dataclass
class CalibrationOptions:
    """`--calibrate`, `--target-precision`, `--target-fpr`: fitted on the validation split."""

    temperature: bool = False
    target_precision: float | None = None
    target_fpr: float | None = None

    @property
    def requested(self) -> bool:
        return self.temperature or self.target_precision is not None or self.target_fpr is not None


def calibrate_on_val(model: Network, val: DecodedSplit, device: torch.device, meta: dict[str, Any],
                     options: CalibrationOptions) -> dict[str, Any]:
    """The model-file keys that calibration changes: temperature, threshold, operating point.

    Never fitted on test: the test figures would then be tuned to the test split.
    """
    logits = predict_logits(model, val.images, device, tta=bool(meta.get("tta")))
    old_t = float(meta.get("temperature", 1.0))
    new_t, updates = old_t, {}
    if options.temperature:
        new_t = fit_temperature(logits, val.labels)
        updates = {"temperature": new_t,
                   "threshold": rescale_threshold(float(meta.get("threshold", 0.5)), old_t, new_t)}
        log.info("calibration: temperature %.3f fitted on %d validation images (val ECE %.4f -> %.4f)",
                 new_t, len(val), expected_calibration_error(val.labels, sigmoid(logits / old_t)),
                 expected_calibration_error(val.labels, sigmoid(logits / new_t)))
    if options.target_precision is not None or options.target_fpr is not None:
        point = choose_threshold(val.labels, sigmoid(logits / new_t), options.target_precision, options.target_fpr)
        updates["threshold"] = point.threshold
        updates["operating_point"] = {"target": point.target, "chosen_on": "val",
                                      "val": {k: v for k, v in point.to_dict().items() if k != "target"}}
        log.info("calibration: threshold %.4f for %s on val (FAKE flagged: precision %.4f, recall %.4f, "
                 "FPR %.4f)", point.threshold, point.target, point.precision, point.recall, point.fpr)
    return updates


def writable_dir(path: str | Path) -> Path:
    """Fail before hours of training, not after; the probe name is unique because torchrun ranks
    probe the same folder at the same moment."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".aivsreal-write-test-"):
            pass
    except OSError as e:
        raise AivsrealError(f"output folder {path} is not writable ({e.strerror or e})") from None
    return path


def train_and_evaluate(
    model_name: str,
    out_dir: str | Path,
    data: DataOptions,
    train_overrides: dict[str, Any],
    model_overrides: dict[str, Any],
    device: str = "auto",
    pretrained: bool = False,
    weights: str | None = None,
    resume: bool = False,
    tta: bool = True,
    run_eval: bool = True,
    calibration: CalibrationOptions | None = None,
) -> dict[str, Any]:
    out = writable_dir(out_dir)
    dev = distributed.init(resolve_device(device))
    config = default_config(model_name, **model_overrides)
    cfg = TrainConfig.for_model(train_recipe(model_name), seed=data.seed, **train_overrides)
    rd = data.load(config.image_size)
    log.info("data: %d train, %d val, %d test images from %s", len(rd.train), len(rd.val), len(rd.test), rd.path)
    for note in rd.notes:
        log.info("data: %s", note)
    model = build_model(config, pretrained=pretrained, weights=weights)
    state = train(model, rd.train, rd.val, cfg, out, dev, resume=resume)
    if not distributed.is_main():  # rank 0 alone writes the model and the report
        distributed.finish()
        return {}
    speeds = [h["train_img_per_s"] for h in state.history] or [0.0]
    summary = {
        "model": {"name": model_name, "config": config.to_dict(),
                  "params": sum(p.numel() for p in model.parameters()),
                  "pretrained": bool(pretrained or weights)},
        "data": {**rd.describe(), "val_fraction": data.val_fraction, "seed": data.seed, "limit": data.limit},
        "training": {"config": asdict(cfg), "epochs_run": state.epoch, "best_epoch": state.best_epoch,
                     "best_val_loss": state.best_val_loss, "seconds": state.seconds,
                     "median_img_per_s": statistics.median(speeds), "stopped_early": state.stopped_early},
        "device": str(dev),
        "processes": distributed.world_size(),
    }
    meta: dict[str, Any] = {"tta": tta}
    save_model(out / "model.pt", model, {**meta, "summary": summary})
    if calibration and calibration.requested:
        meta.update(calibrate_on_val(model, rd.val, dev, meta, calibration))
        save_model(out / "model.pt", model, {**meta, "summary": summary})
    if run_eval:
        splits = {"train": rd.train, "val": rd.val, "test": rd.test}
        summary = evaluate(model, splits, dev, out, summary, meta, leaked=rd.leaked, history=state.history)
        save_model(out / "model.pt", model, {**meta, "summary": summary})
    distributed.finish()
    return summary


def evaluate_saved(model_path: str | Path, out_dir: str | Path | None, data: DataOptions,
                   device: str = "auto", calibration: CalibrationOptions | None = None) -> dict[str, Any]:
    """Re-score a saved model; the val split is rebuilt from the seed stored with the model.

    With `calibration`, the temperature/threshold fitted on val are written into the model file.
    """
    model, meta = load_model(model_path)
    stored = meta.get("summary", {})
    stored_data = stored.get("data", {})
    data = replace(data, val_fraction=stored_data.get("val_fraction", data.val_fraction),
                   seed=stored_data.get("seed", data.seed))
    out = writable_dir(out_dir or Path(model_path).parent)
    dev = resolve_device(device)
    rd = data.load(model.config.image_size)
    summary = {
        "model": stored.get("model", {"name": model.config.name, "config": model.config.to_dict(),
                                      "params": sum(p.numel() for p in model.parameters())}),
        "data": {**rd.describe(), "val_fraction": data.val_fraction, "seed": data.seed, "limit": data.limit},
        "training": stored.get("training", {}),
        "device": str(dev),
    }
    if calibration and calibration.requested:
        updates = calibrate_on_val(model, rd.val, dev, meta, calibration)
        update_model_meta(model_path, updates)
        meta = {**meta, **updates}
        log.info("calibration stored in %s", model_path)
    history = _read_history(Path(model_path).parent / "history.csv")
    splits = {"train": rd.train, "val": rd.val, "test": rd.test}
    return evaluate(model, splits, dev, out, summary, meta, leaked=rd.leaked, history=history)


def _read_history(path: Path) -> list[dict[str, float]] | None:
    if not path.exists():
        return None
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
