"""The training loop: bf16 autocast, checkpoint every epoch; the training set in memory as uint8,
or read from disk by worker processes for native-crop runs (`--crop N`, train/batches.py).

Early stopping watches validation loss and restores the best epoch's weights. A run killed
at any point resumes from its last complete epoch (`--resume`): the checkpoint holds the
model, optimiser, schedule, early-stopping state and random-generator state.
"""

from __future__ import annotations

import csv
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from timm.optim import Lookahead
from timm.utils import ModelEmaV3
from tqdm import tqdm

from aivsreal.data.cache import DecodedSplit
from aivsreal.data.stream import CentreCrops
from aivsreal.device import amp_dtype, autocast, train_amp
from aivsreal.errors import AivsrealError
from aivsreal.models import DetectorNet, pixels_to, to_tensor
from aivsreal.train import checkpoint, distributed
from aivsreal.train.augment import alternating_flips, cutout, flip_and_translate
from aivsreal.train.batches import epoch_batches
from aivsreal.train.muon import muon_for
from aivsreal.train.teacher import TEACHER_SHARE, teacher_targets

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 256
    optimizer: str = "sgd"  # sgd (Nesterov), adam(w) or muon (train/muon.py)
    lr: float = 0.1
    weight_decay: float = 5e-4
    schedule: str = "onecycle"  # onecycle or constant
    warmup: float = 0.25  # fraction of steps spent warming up (onecycle)
    label_smoothing: float = 0.1
    max_shift: int = 2  # translate augmentation, pixels; 0 turns augmentation off
    flip: bool = True
    alternate_flip: bool = False  # with flip: mirror each image in every other epoch instead of at random
    cutout: int = 0  # side of the square hidden in each training image, pixels; 0: off
    degrade: float = 0.0  # share of training images blurred, resized or re-compressed (robustness)
    patience: int = 5  # epochs without val-loss improvement before stopping
    ema: float = 0.0  # decay of an exponential moving average of the weights (0: off); validated and kept
    lookahead: int = 0  # every k steps the weights go halfway back to a slow copy (Lookahead); 0: off
    bias_lr_scale: float = 1.0  # batch-norm shifts' learning rate as a multiple of lr (airbench: 64)
    teacher: str | None = None  # CSV of a teacher's P(FAKE) per training image: distil (train/teacher.py)
    codec_chain: bool = True  # --crop runs: every view through train/augment.CodecChain, REAL and FAKE alike
    workers: int = 2  # --crop runs: processes decoding training views ahead (no effect on the result)
    seed: int = 0
    time_budget_s: float | None = None  # stop before an epoch that would overrun it
    cpu_amp: bool = True  # bf16 steps on a native-bf16 CPU; off where slower than fp32 (device.train_amp)

    def __post_init__(self) -> None:
        if not 0.0 <= self.degrade <= 1.0:
            raise AivsrealError(f"--degrade is a share of the training images, from 0 to 1 (got {self.degrade})")
        if not 0.0 <= self.ema < 1.0:
            raise AivsrealError(f"--ema is a decay per step, 0 (off) or more and below 1, e.g. 0.999 (got {self.ema})")
        if self.lookahead < 0:
            raise AivsrealError(f"--lookahead is a number of steps, 0 (off) or more, e.g. 5 (got {self.lookahead})")
        if self.bias_lr_scale <= 0:
            raise AivsrealError(f"--bias-lr-scale multiplies the learning rate of batch-norm shifts: above 0, e.g. "
                                f"64 (got {self.bias_lr_scale})")
        if self.workers < 0:
            raise AivsrealError(f"--workers is a number of processes, 0 or more (got {self.workers})")

    @classmethod
    def for_model(cls, recipe: dict[str, Any], **overrides: Any) -> TrainConfig:
        values = {**recipe, **{k: v for k, v in overrides.items() if v is not None}}
        return cls(**values)


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    best_val_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


def _optimizer(model: DetectorNet, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The base optimiser, inside timm's Lookahead (Zhang et al. 2019: k fast steps, then halfway back
    to the slow weights, alpha 0.5) when cfg.lookahead is k > 0."""
    base = _base_optimizer(model, cfg)
    return Lookahead(base, alpha=0.5, k=cfg.lookahead) if cfg.lookahead else base


def _base_optimizer(model: DetectorNet, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on filters and matrices only. Batch-norm shifts get their own learning rate
    (cfg.bias_lr_scale x lr): with a batch norm after every conv the filters are scale-invariant and
    move in angle, so airbench found the shifts learn too slowly at the filters' rate."""
    scaled = cfg.bias_lr_scale != 1.0
    shifts = {id(m.bias) for m in model.modules()
              if scaled and isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.affine}
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1 and id(p) not in shifts]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if scaled:  # the schedule reads lr_scale: its peak for this group is lr x lr_scale
        groups.append({"params": [p for p in model.parameters() if id(p) in shifts], "weight_decay": 0.0,
                       "lr": cfg.lr * cfg.bias_lr_scale, "lr_scale": cfg.bias_lr_scale})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    if cfg.optimizer in ("adam", "adamw"):
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.optimizer == "muon":
        return muon_for(groups, cfg.lr)
    raise AivsrealError(f"unknown optimizer {cfg.optimizer!r} (sgd, adam, muon)")


def _scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int):
    if cfg.schedule == "onecycle":
        steps = max(steps, 4)  # OneCycleLR needs at least one step in each phase
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[cfg.lr * g.get("lr_scale", 1.0) for g in opt.param_groups], total_steps=steps,
            pct_start=min(max(cfg.warmup, 2.0 / steps), 0.5),
            anneal_strategy="linear", div_factor=10.0, final_div_factor=100.0,
        )
    if cfg.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    raise AivsrealError(f"unknown schedule {cfg.schedule!r} (onecycle, constant)")


def soft_targets(labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    return labels.float() * (1.0 - smoothing) + 0.5 * smoothing


@torch.no_grad()
def evaluate_loss(model: DetectorNet, data: DecodedSplit, device: torch.device, batch_size: int = 1024):
    """(mean BCE loss, accuracy) on a split, in eval mode, without augmentation."""
    model.eval()
    y_all = torch.from_numpy(data.labels)
    loss_sum, correct = 0.0, 0
    for i in range(0, len(y_all), batch_size):
        y = y_all[i : i + batch_size].to(device)
        with autocast(device):  # slice first: the images may be lazy crops (data/stream.py)
            logits = model(pixels_to(to_tensor(data.images[i : i + batch_size]), device)).float()
        loss_sum += F.binary_cross_entropy_with_logits(logits, y.float(), reduction="sum").item()
        correct += ((logits > 0).long() == y).sum().item()
    return loss_sum / len(y_all), correct / len(y_all)


def train(
    model: DetectorNet,
    train_data: DecodedSplit,
    val_data: DecodedSplit,
    cfg: TrainConfig,
    out_dir: Path,
    device: torch.device,
    resume: bool = False,
    progress: bool | None = None,
    on_epoch_end: Callable[[TrainState], None] | None = None,
) -> TrainState:
    """Train in place; on return `model` holds the best epoch's weights.

    `on_epoch_end` runs after each epoch's checkpoint is on disk (the tests use it to
    simulate a crash at that point).
    """
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)  # the same on every rank: the same permutation
    model.to(device).to(memory_format=torch.channels_last)
    rank, world, main = distributed.rank(), distributed.world_size(), distributed.is_main()
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                        else None)
    on_disk = isinstance(train_data.images, CentreCrops)
    if on_disk and cfg.degrade:
        raise AivsrealError("--degrade is for in-memory runs: a --crop run puts every view through the codec chain")
    y_all = torch.from_numpy(train_data.labels)
    teacher = torch.from_numpy(teacher_targets(cfg.teacher, train_data.names)) if cfg.teacher else None
    flips = alternating_flips(len(y_all), cfg.seed) if cfg.flip and cfg.alternate_flip else None
    x_all = None if on_disk else to_tensor(train_data.images)
    if x_all is not None and device.type == "cuda":
        x_all = x_all.pin_memory()
    steps_per_epoch = len(y_all) // world // cfg.batch_size
    if steps_per_epoch == 0:
        raise AivsrealError(f"only {len(y_all)} training images, fewer than one batch of {cfg.batch_size}"
                            f"{f' per each of {world} processes' if world > 1 else ''}")
    val_counts = torch.bincount(torch.from_numpy(val_data.labels), minlength=2).tolist()
    if min(val_counts) == 0:  # early stopping and the reported validation figures need both classes
        raise AivsrealError(f"the validation split holds {val_counts[0]} REAL and {val_counts[1]} FAKE images, and "
                            "needs both: add images or hold out more for validation (--val-fraction)")
    opt = _optimizer(model, cfg)
    sched = _scheduler(opt, cfg, steps_per_epoch * cfg.epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype(device) == torch.float16)
    # timm's EMA with its warm-up (decay 1 - (1 + step)^-3/4, capped at cfg.ema): early steps are not
    # averaged with the random init. It is what gets validated, early-stopped on and returned.
    ema = ModelEmaV3(model, decay=cfg.ema, use_warmup=True, warmup_power=0.75) if cfg.ema else None
    scored = ema.module if ema else model
    state, best_weights = TrainState(), checkpoint.copy_weights(model)
    ckpt_path = out_dir / checkpoint.CHECKPOINT
    if resume:
        fields, best_weights = checkpoint.restore(ckpt_path, model, opt, sched, gen, cfg, ema)
        state = TrainState(**fields)

    while state.epoch < cfg.epochs and not state.stopped_early:
        last = state.history[-1]["seconds"] if state.history else 0.0
        if cfg.time_budget_s and state.seconds + last > cfg.time_budget_s:
            log.info("time budget of %.0fs reached after %d epochs", cfg.time_budget_s, state.epoch)
            break
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(y_all), generator=gen)[rank::world][: steps_per_epoch * cfg.batch_size]
        # Running sums stay on the device: one .item() per progress update, not a sync per step.
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        show = main and (sys.stderr.isatty() if progress is None else progress)
        bar = tqdm(epoch_batches(train_data, x_all, perm, cfg, gen, state.epoch, device), total=steps_per_epoch,
                   desc=f"epoch {state.epoch + 1}/{cfg.epochs}", unit="step", disable=not show, leave=False)
        for step, (x, idx) in enumerate(bar):
            y = y_all[idx].to(device, non_blocking=True)
            flip = flips(idx, state.epoch) if flips else cfg.flip
            x = cutout(flip_and_translate(x, flip, cfg.max_shift, gen), cfg.cutout, gen)
            with autocast(device, enabled=train_amp(device, cfg.cpu_amp)):
                logits = net(x).float()
            target = soft_targets(y, cfg.label_smoothing)
            if teacher is not None:
                target = (1 - TEACHER_SHARE) * target + TEACHER_SHARE * teacher[idx].to(device, non_blocking=True)
            loss = F.binary_cross_entropy_with_logits(logits, target)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if ema:
                ema.update(model, step=state.epoch * steps_per_epoch + step + 1)
            lr_used = opt.param_groups[0]["lr"]  # after the last step OneCycle's linear phase extrapolates below 0
            sched.step()
            loss_sum += loss.detach() * len(y)
            correct += ((logits.detach() > 0).long() == y).sum()
            seen += len(y)
            if show and step % 20 == 0:
                elapsed = time.perf_counter() - t0
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{correct.item() / seen:.4f}",
                                img_s=f"{seen / elapsed:.0f}")
        loss_sum, correct = loss_sum.item(), correct.item()
        if not math.isfinite(loss_sum):
            raise AivsrealError(f"training diverged (loss is {loss_sum}); try a lower --lr")
        train_seconds = time.perf_counter() - t0
        if cfg.lookahead:
            opt.sync_lookahead()  # the epoch ends on a slow step, so the slow weights are validated and kept
        if world > 1:
            distributed.sync_from_main(model)
            if ema:
                distributed.sync_from_main(ema.module)
        val_loss, val_acc = evaluate_loss(scored, val_data, device)
        seconds = time.perf_counter() - t0
        state.epoch += 1
        state.seconds += seconds
        row = {"epoch": state.epoch, "train_loss": loss_sum / seen, "train_acc": correct / seen,
               "val_loss": val_loss, "val_acc": val_acc, "lr": lr_used,
               "seconds": seconds, "train_img_per_s": seen * world / train_seconds}
        state.history.append(row)
        if val_loss < state.best_val_loss:
            state.best_val_loss, state.best_epoch, state.bad_epochs = val_loss, state.epoch, 0
            best_weights = checkpoint.copy_weights(scored)
        else:
            state.bad_epochs += 1
            state.stopped_early = state.bad_epochs >= cfg.patience
        if not main:
            continue  # same weights and buffers on every rank: the same val loss, the same decision
        log.info("epoch %d/%d  loss %.4f acc %.4f | val loss %.4f acc %.4f | %.0fs, %.0f img/s%s",
                 state.epoch, cfg.epochs, row["train_loss"], row["train_acc"], val_loss, val_acc,
                 seconds, row["train_img_per_s"], "  (early stop)" if state.stopped_early else "")
        checkpoint.save(ckpt_path, model, opt, sched, gen, cfg, state, best_weights, ema)
        write_history(out_dir / "history.csv", state.history)
        if on_epoch_end:
            on_epoch_end(state)

    model.load_state_dict(best_weights)
    model.eval()
    return state


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    if not history:
        return
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    tmp.replace(path)
