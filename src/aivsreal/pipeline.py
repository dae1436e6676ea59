"""What `aivsreal train` and `aivsreal evaluate` do, end to end, as plain functions."""

from __future__ import annotations

import csv
import logging
import statistics
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from aivsreal import data as run_data
from aivsreal import distributed
from aivsreal.decode_cache import default_cache_dir
from aivsreal.device import resolve_device
from aivsreal.download import default_data_path
from aivsreal.errors import AivsrealError
from aivsreal.evaluate import evaluate
from aivsreal.model_file import load_model, save_model
from aivsreal.models import build_model, default_config, train_recipe
from aivsreal.train import TrainConfig, train

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
    save_model(out / "model.pt", model, {"tta": tta, "summary": summary})
    if run_eval:
        splits = {"train": rd.train, "val": rd.val, "test": rd.test}
        summary = evaluate(model, splits, dev, out, summary, tta=tta, leaked=rd.leaked, history=state.history)
        save_model(out / "model.pt", model, {"tta": tta, "summary": summary})
    distributed.finish()
    return summary


def evaluate_saved(model_path: str | Path, out_dir: str | Path | None, data: DataOptions,
                   device: str = "auto") -> dict[str, Any]:
    """Re-score a saved model; the val split is rebuilt from the seed stored with the model."""
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
    history = _read_history(Path(model_path).parent / "history.csv")
    splits = {"train": rd.train, "val": rd.val, "test": rd.test}
    return evaluate(model, splits, dev, out, summary, tta=bool(meta.get("tta")),
                    threshold=float(meta.get("threshold", 0.5)), leaked=rd.leaked, history=history)


def _read_history(path: Path) -> list[dict[str, float]] | None:
    if not path.exists():
        return None
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
