"""Training checkpoints: everything a killed run needs to resume from its last complete epoch.

The model, optimiser, schedule, early-stopping state and random-generator state go into one
file, written atomically, so a crash while saving leaves the previous epoch's file intact.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import torch

from aivsreal.errors import AivsrealError
from aivsreal.models import DetectorNet
from aivsreal.safe_io import atomic_save, safe_load

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"


def copy_weights(model: DetectorNet) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}


def save(path: Path, model: DetectorNet, opt, sched, gen, cfg, state, best_weights, ema=None) -> None:
    """`cfg` and `state` are the loop's TrainConfig and TrainState dataclasses."""
    atomic_save({
        "format": "aivsreal-checkpoint",
        "model_config": model.config.to_dict(),
        "train_config": asdict(cfg),
        "model": copy_weights(model),
        "ema": copy_weights(ema.module) if ema else None,
        "best_model": best_weights,
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "state": asdict(state),
    }, path)


def restore(path: Path, model: DetectorNet, opt, sched, gen, cfg, ema=None):
    """Load a checkpoint into the live objects; returns (TrainState fields as a dict, best weights)."""
    ckpt = safe_load(path, what="training checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != "aivsreal-checkpoint":
        raise AivsrealError(f"{path}: not an aivsreal training checkpoint")
    if ckpt["model_config"] != model.config.to_dict():
        raise AivsrealError(f"{path}: checkpoint is for model {ckpt['model_config']['name']!r} "
                            "with other settings; resume with the same --model and options")
    saved = {**asdict(type(cfg)()), **ckpt["train_config"]}  # options added since the checkpoint: defaults
    changed = [k for k, v in asdict(cfg).items() if k not in ("time_budget_s", "workers") and saved[k] != v]
    if changed:
        raise AivsrealError(f"{path}: resume with the same training options; these differ: {', '.join(changed)}")
    model.load_state_dict(ckpt["model"])
    if ema:
        ema.module.load_state_dict(ckpt["ema"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    gen.set_state(ckpt["generator"])
    torch.set_rng_state(ckpt["torch_rng"])
    log.info("resumed from %s after epoch %d", path, ckpt["state"]["epoch"])
    return ckpt["state"], ckpt["best_model"]
