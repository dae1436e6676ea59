"""`aivsreal train`: load the data, train, calibrate if asked, evaluate, and write model.pt once."""

from __future__ import annotations

import logging
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aivsreal.commands.evaluate import summary_of, write_evaluation
from aivsreal.data.splits import DataOptions
from aivsreal.device import amp_dtype, resolve_device, train_amp
from aivsreal.errors import AivsrealError
from aivsreal.evaluate.calibration import CalibrationOptions, calibrate_on_val
from aivsreal.evaluate.scores import score_splits
from aivsreal.models import build_model, default_config, train_recipe
from aivsreal.models.file import ModelMeta, save_model
from aivsreal.models.network import ModelConfig, image_logits_and_features, sigmoid
from aivsreal.safe_io import writable_dir
from aivsreal.train import distributed
from aivsreal.train.augment import CodecChain
from aivsreal.train.compute import train_flops_per_image
from aivsreal.train.domain import fit_domain
from aivsreal.train.loop import TrainConfig, train

log = logging.getLogger(__name__)


def model_config(model_name: str, overrides: dict[str, Any]) -> ModelConfig:
    """The family's config with the user's changes; `crop` makes a native-crop model, whose network
    sees the crop as it is (no resize)."""
    overrides = dict(overrides)
    crop = overrides.pop("crop", None)
    config = default_config(model_name, **overrides)
    if crop:
        for key in ("image_size", "input_size"):
            if overrides.get(key) not in (None, crop):
                raise AivsrealError(f"--crop {crop} sets the {key.replace('_', ' ')} to {crop}; "
                                    f"leave out --{key.replace('_', '-')}")
        config.image_size = config.input_size = crop
        config.options["crop"] = crop
    return config


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
    config = model_config(model_name, model_overrides)
    cfg = TrainConfig.for_model(train_recipe(model_name), seed=data.recipe.seed, **train_overrides)
    rd = data.load(config.image_size, config.crop)
    log.info("data: %d train, %d val, %d test images from %s", len(rd.train), len(rd.val), len(rd.test), rd.path)
    for note in rd.notes:
        log.info("data: %s", note)
    torch.manual_seed(cfg.seed)  # the initial weights too: the same seed gives the same model on CPU
    model = build_model(config, pretrained=pretrained, weights=weights)
    state = train(model, rd.train, rd.val, cfg, out, dev, resume=resume)
    if not distributed.is_main():  # rank 0 alone writes the model and the report
        distributed.finish()
        return {}
    speeds = [h["train_img_per_s"] for h in state.history] or [0.0]
    flops = train_flops_per_image(model, config.image_size)
    images_seen = state.epoch * (len(rd.train) // cfg.batch_size) * cfg.batch_size
    summary = summary_of(rd, model, dev, {
        "model": {"name": model_name, "config": config.to_dict(),
                  "params": sum(p.numel() for p in model.parameters()),
                  "pretrained": bool(pretrained or weights)},
        "training": {"config": asdict(cfg), "epochs_run": state.epoch, "best_epoch": state.best_epoch,
                     "best_val_loss": state.best_val_loss, "seconds": state.seconds,
                     "median_img_per_s": statistics.median(speeds), "stopped_early": state.stopped_early,
                     # the loop ends when its epochs are done, by patience, or before an epoch that would overrun
                     "stopped_by_time_budget": bool(cfg.time_budget_s) and state.epoch < cfg.epochs
                     and not state.stopped_early,
                     "flops_per_image": flops, "images_seen": images_seen, "pflops": flops * images_seen / 1e15,
                     "precision": (str(amp_dtype(dev)).removeprefix("torch.") if train_amp(dev, cfg.cpu_amp)
                                   else "float32"),
                     "codec_chain": asdict(CodecChain()) if config.crop and cfg.codec_chain else None},
        "processes": distributed.world_size(),
    })
    meta = ModelMeta(tta=tta, split=rd.recipe, data_fingerprint=rd.fingerprint, summary=summary)
    if calibration and calibration.requested:
        meta = calibrate_on_val(model, rd.val, dev, meta, calibration)
    meta.domain = fit_domain(model, rd.train, rd.val, rd.train_sizes, dev, cfg.seed)
    log.info("domain check: fitted on train, threshold flags %.1f%% of val", 100 * meta.domain.val_flagged)
    if run_eval:
        ev = score_splits(model, {"train": rd.train, "val": rd.val, "test": rd.test}, dev, meta, leaked=rd.leaked)
        meta.summary = write_evaluation(out, ev, summary, state.history)
        val_p = ev.scores["val"].p_fake
    else:
        val_p = sigmoid(image_logits_and_features(model, rd.val.images, dev, tta=meta.tta)[0] / meta.temperature)
    save_model(out / "model.pt", model, meta)
    distributed.finish()
    constant = constant_model(val_p, rd.val.labels, meta.threshold)
    if constant and data.strict:
        raise AivsrealError(f"{constant} ({out / 'model.pt'} written; --strict)")
    if constant:
        log.warning("warning: %s", constant)
    return meta.summary


CONSTANT_SPREAD = 1e-4  # P(FAKE) this close on every validation image: the model ignores its input


def constant_model(p_fake: np.ndarray, labels: np.ndarray, threshold: float) -> str | None:
    """One line when a run ends with a model that has learned nothing, else None.

    Such a run (e.g. too few steps) reports accuracy 0.5 and looks like a weak detector; it is
    none: every validation image gets the same P(FAKE), or the same verdict, so its accuracy is
    the share of one class (chance).
    """
    if len(p_fake) == 0:
        return None
    spread = float(np.max(p_fake) - np.min(p_fake))
    fake = np.asarray(p_fake) >= threshold
    if spread >= CONSTANT_SPREAD and fake.any() and not fake.all():
        return None
    accuracy = float(np.mean(fake == (np.asarray(labels) == 1)))
    what = (f"P(FAKE) {float(np.mean(p_fake)):.4f} on every validation image (spread {spread:.1e})"
            if spread < CONSTANT_SPREAD else f"the verdict {'FAKE' if fake.all() else 'REAL'} on every "
            "validation image")
    return (f"constant model: it gives {what}, validation accuracy {accuracy:.4f} (chance); it has learned "
            "nothing: train for more steps (--epochs, a larger --limit) or check the data's labels")
