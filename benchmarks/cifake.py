"""CIFAKE side by side: our `fast` model, EfficientNet-Lite0 fine-tuned from ImageNet, the seed recipe.

Run from the repository root (takes about `--budget-minutes` per model plus evaluation):

    python benchmarks/cifake.py --data ../shared/data/cifake --budget-minutes 20

Writes benchmarks/results/cifake.json and cifake.md (docs/results/cifake.md's table: benchmarks/render.py), and the best
model's test confusion matrix. Every figure comes from this one run on this machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from aivsreal.commands.train import train_and_evaluate
from aivsreal.data.cache import load_split
from aivsreal.data.sources import find_splits
from aivsreal.data.splits import DataOptions, SplitRecipe
from aivsreal.predict.detector import Detector
from aivsreal.report.provenance import provenance
from aivsreal.safe_io import safe_load
from aivsreal.train.checkpoint import CHECKPOINT

RESULTS = Path(__file__).parent / "results"
SEED_ROW = {"model": "seed notebook: Keras ResNet50V2, ImageNet weights, GPU (published)",
            "test_accuracy": 0.9614, "test_precision": 0.9807, "test_recall": 0.9414}

# row name: (registered model, train overrides of its recipe, model overrides, pretrained, notes)
CONTENDERS = {
    "fast": ("fast", {}, {}, False, "ours, the default; from scratch"),
    "fast_ema": ("fast", {"ema": 0.999}, {}, False, "an experiment, not the default: the fast recipe, validating "
                 "and keeping an EMA of the weights (timm ModelEmaV3, decay warm-up capped at 0.999)"),
    "fast_wide": ("fast", {"epochs": 26}, {"options": {"widths": [32, 64, 192]}}, False,
                  "an experiment, not the default: the last group 1.5x wider (cheap at 8x8 and 4x4: 191 against "
                  "159 MFLOP per training image), 26 epochs instead of 32 to stay within the fast recipe's compute"),
    "fast_big": ("fast", {}, {"options": {"widths": [64, 128, 256]}}, False,
                 "a candidate for the 2-hour budget: every group twice as wide (64-128-256), about 4x the fast "
                 "recipe's compute, the recipe otherwise unchanged"),
    "fast_lookahead": ("fast", {"lookahead": 5}, {}, False, "an experiment, not the default: the fast recipe with "
                       "its optimiser inside Lookahead (k=5, alpha 0.5; no extra FLOPs)"),
    "fast_muon": ("fast", {"optimizer": "muon", "lr": 0.03}, {}, False, "an experiment, not the default: the fast "
                  "recipe with Muon on the convolution filters (train/muon.py; peak lr 0.03, chosen among 0.01-0.25 "
                  "on validation after 8 epochs; no extra FLOPs counted)"),
    "fast_whiten": ("fast", {"epochs": 43, "patience": 43}, {"options": {"widths": [32, 64, 128], "stem": "whiten"}},
                    False, "an experiment, not the default: the stem conv replaced by a frozen 2x2 patch-whitening "
                    "conv (airbench; fitted on the first training batch), 26% fewer FLOPs per image, so 43 epochs "
                    "instead of 32 within the fast recipe's compute; no early stopping (with the recipe's patience "
                    "of 10 a first run stopped at epoch 29 of 43, its learning rate still ~40% of the peak: "
                    "cifake_tuning.md)"),
    "fast_cutout": ("fast", {"cutout": 8}, {}, False, "an experiment, not the default: the fast recipe with "
                    "an 8 px cutout square in every training image (no extra FLOPs)"),
    "fast_altflip": ("fast", {"alternate_flip": True}, {}, False, "an experiment, not the default: the fast recipe "
                     "with each image mirrored in every other epoch instead of at random (airbench's alternating "
                     "flip; no extra FLOPs)"),
    "fast_b128": ("fast", {"batch_size": 128}, {}, False, "an experiment, not the default: the fast recipe with "
                  "batch 128 instead of 256 at the same peak lr 0.1: twice the optimiser steps and more gradient noise "
                  "for the same images seen (no extra FLOPs)"),
    "fast_shift4": ("fast", {"max_shift": 4}, {}, False, "an experiment, not the default: the fast recipe with "
                    "shifts of up to 4 px instead of 2 (the 2 px translate curbed overfitting over 32 epochs: "
                    "97.87% -> 98.11%; no extra FLOPs)"),
    "fast_bnfix": ("fast", {}, {"options": {"widths": [32, 64, 128], "bn_scale": False}}, False,
                   "an experiment, not the default: the fast recipe with every batch-norm scale frozen at 1, only "
                   "the shifts learnt (airbench; no extra FLOPs)"),
    "fast_bnbias": ("fast", {"bias_lr_scale": 64.0}, {"options": {"widths": [32, 64, 128], "bn_scale": False}},
                    False, "an experiment, not the default: airbench's batch norm on the fast recipe, scales frozen "
                    "at 1 and the shifts learning at 64x the rate of the rest (--bias-lr-scale 64; no extra FLOPs)"),
    "fast_res": ("fast", {"epochs": 25, "patience": 25}, {"options": {"widths": [32, 64, 128], "residual": True}},
                 False, "an experiment, not the default: a third conv per group with a skip around the last two "
                 "(airbench96's group), 202 instead of 159 MFLOP per training image, so 25 epochs instead of 32 "
                 "within the fast recipe's compute; no early stopping"),
    "fast_distill": ("fast", {"teacher": "benchmarks/runs/teacher_cifake.csv"}, {}, False,
                     "an experiment, not the default: the fast recipe with half of each target from a teacher's "
                     "P(FAKE) (train/teacher.py), the ensemble of benchmarks/results/cifake_ensemble.md, written "
                     "by its --teacher-out; the teacher's own training compute is not in this row"),
    "efficientnet_lite0": ("efficientnet_lite0", {"epochs": 2}, {}, True,
                           "fine-tuned from the packaged ImageNet weights, 32px upsampled to 64px, 2 epochs (the "
                           "default until 2026-11-29; pinned so that this name keeps meaning what its rows measured)"),
    "efficientnet_lite0_6ep": ("efficientnet_lite0", {"epochs": 6}, {}, True,
                               "the same fine-tune for 6 epochs instead of 2 (one-cycle over the 6)"),
    "efficientnet_lite0_4ep": ("efficientnet_lite0", {"epochs": 4}, {}, True,
                               "the same fine-tune for 4 epochs instead of 2 (one-cycle over the 4; the default on "
                               "2026-11-29 until the 8-epoch seeds were in): about 15% of the fast recipe's compute, "
                               "and what fits a 75-minute sitting on an fp32-only CPU"),
    "efficientnet_lite0_8ep": ("efficientnet_lite0", {"epochs": 8}, {}, True,
                               "the same fine-tune for 8 epochs (one-cycle over the 8; the default since 2026-11-29, "
                               "pinned so that this name keeps meaning what its rows measured): about 29% of the fast "
                               "recipe's compute; ~2 h of fp32 training on 2 CPU cores, so run in sittings (--resume)"),
    "efficientnet_lite0_96px": ("efficientnet_lite0", {"epochs": 2}, {"input_size": 96}, True,
                               "a goal-2 pilot: Lite0's 2-epoch fine-tune with CIFAKE's 32px upsampled to 96px "
                               "instead of 64 (419 instead of 186 MFLOP per training image)"),
    "efficientnet_lite0_96px_8ep": ("efficientnet_lite0", {"epochs": 8}, {"input_size": 96}, True,
                                    "the goal-2 long run, chosen by the pilots' rule (cifake_tuning.md): Lite0's "
                                    "8-epoch fine-tune at 96px (one-cycle over the 8; 0.30 PFLOP, 11% of the 2-hour "
                                    "budget); ~3 h of fp32 training on 2 CPU cores, so run in sittings (--resume)"),
    "efficientnet_lite0_128px": ("efficientnet_lite0", {"epochs": 2}, {"input_size": 128}, True,
                                "a goal-2 pilot after the 96px long run: Lite0's 2-epoch fine-tune at 128px (745 "
                                "instead of 419 MFLOP per training image)"),
    "efficientnet_lite2_96px": ("efficientnet_lite2", {"epochs": 2}, {"input_size": 96}, True,
                                "a goal-2 pilot after the 96px long run: the same 2-epoch fine-tune on the packaged "
                                "ImageNet EfficientNet-Lite2 at 96px"),
    "efficientnet_lite2_96px_8ep": ("efficientnet_lite2", {"epochs": 8}, {"input_size": 96}, True,
                                    "the second goal-2 long run, chosen by the proxies' rule (cifake_tuning.md): "
                                    "Lite2's 8-epoch fine-tune at 96px (one-cycle over the 8; 629 MFLOP per training "
                                    "image, 0.45 PFLOP, 16.5% of the 2-hour budget); ~2.2 h of fp32 training on 2 "
                                    "CPU cores, so run in sittings (--resume)"),
    "efficientnet_lite2": ("efficientnet_lite2", {"epochs": 2}, {}, True,
                           "a goal-2 pilot: Lite0's 2-epoch fine-tune on the packaged ImageNet EfficientNet-Lite2, "
                           "32px upsampled to 64px (280 instead of 186 MFLOP per training image)"),
    "efficientnet_lite1": ("efficientnet_lite1", {"epochs": 2}, {}, True,
                           "Lite0's fine-tune on the packaged ImageNet EfficientNet-Lite1 (deeper), 32px upsampled "
                           "to 64px, 2 epochs"),
    "resnet50v2": ("resnet50v2", {}, {}, False, "the seed's recipe at 32x32, from scratch (no ResNet50V2 ImageNet "
                   "weights offline), Adam 1e-3, early stopping, capped at the budget"),
    "seed_lite2": ("seed_lite2", {}, {}, True, "the seed's head and recipe on the packaged ImageNet EfficientNet-Lite2 "
                   "at 32x32, every layer trained: the offline stand-in for the seed's transfer learning; capped "
                   "at the budget"),
}


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def train_flops(model: str, model_overrides: dict | None = None) -> float:
    """Forward + backward FLOPs of one training image of `model` as a contender builds it."""
    from aivsreal.models import build_model, default_config
    from aivsreal.train.compute import train_flops_per_image

    config = default_config(model, **(model_overrides or {}))
    return train_flops_per_image(build_model(config), config.image_size)


def recount_pflops(rows: list[dict]) -> None:
    """Every row's compute counted by today's counter: its images seen times its network's counted
    forward + backward FLOPs (rows from before 2026-11-27 that lack `images_seen` keep none). The
    counter was fixed on 2026-11-27: it had overcounted depthwise convolutions 14x."""
    for row in rows:
        if row.get("images_seen") and row["model"] in CONTENDERS:
            model, _, model_over, _, _ = CONTENDERS[row["model"]]
            row["train_pflops"] = train_flops(model, model_over) * row["images_seen"] / 1e15


def fast_recipe_pflops() -> float:
    """The "20 CPU-minutes" budget as compute: the `fast` recipe's 32 epochs of CIFAKE's 89,172
    training images (full batches of 256), at its counted forward + backward FLOPs per image."""
    from aivsreal.models import train_recipe

    recipe = train_recipe("fast")
    images = recipe["epochs"] * (89_172 // recipe["batch_size"]) * recipe["batch_size"]
    return train_flops("fast") * images / 1e15


def decode_throughput(data: str) -> float:
    """Cold decode of the test split (no cache), images/s, all cores."""
    split = find_splits(data)["test"]
    t = time.perf_counter()
    load_split(split, 32, cache_dir=None)
    return len(split) / (time.perf_counter() - t)


def inference_throughput(model_path: Path, batch: int = 256, repeats: int = 7) -> float:
    """Median images/s of `Detector.predict_proba` on a batch of 256 (TTA as the model uses it)."""
    det = Detector.load(model_path, device="cpu")
    pixels = np.random.default_rng(0).integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8)
    det.predict_proba(pixels)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        det.predict_proba(pixels)
        times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def merge_with_earlier(rows: list[dict]) -> list[dict]:
    """Keep the committed rows of (contender, seed) pairs this run did not retrain (`--models fast` reruns one)."""
    earlier = RESULTS / "cifake.json"
    fresh = {(r["model"], r["seed"]) for r in rows}
    kept = [r for r in json.loads(earlier.read_text())["rows"] if (r["model"], r.setdefault("seed", 0)) not in fresh] \
        if earlier.exists() else []
    for r in kept:
        r.setdefault("from_earlier_run", True)
    order = list(CONTENDERS)
    return sorted(rows + kept, key=lambda r: (order.index(r["model"]), r["seed"]))


def over_seeds(rows: list[dict]) -> list[str]:
    """Mean and range of test accuracy for each contender measured with more than one seed."""
    lines = []
    for name in CONTENDERS:
        accs = [r["test_accuracy"] for r in rows if r["model"] == name]
        if len(accs) > 1:
            lines.append(f"- `{name}` over {len(accs)} seeds: test accuracy mean **{statistics.mean(accs):.4f}**, "
                         f"min {min(accs):.4f}, max {max(accs):.4f}, standard deviation {statistics.stdev(accs):.4f}.")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("AIVSREAL_DATA", "../shared/data/cifake"))
    ap.add_argument("--budget-minutes", type=float, default=20.0,
                    help="training wall-time cap for every contender but fast")
    ap.add_argument("--models", nargs="+", default=list(CONTENDERS), choices=list(CONTENDERS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0],
                    help="train each contender once per seed (the seed also draws the validation split)")
    ap.add_argument("--runs", default="benchmarks/runs", help="where the trained models go (not committed)")
    ap.add_argument("--resume", action="store_true",
                    help="continue each contender's run in --runs from its last complete epoch instead of starting "
                         "over, so a contender longer than one sitting trains in several (--budget-minutes then "
                         "caps the training minutes of all sittings together)")
    ap.add_argument("--rows-from", metavar="LOG",
                    help="train nothing: write the tables from the rows an earlier run printed to LOG "
                         "(for a run that trained and evaluated but failed before writing)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    decode_img_s = decode_throughput(args.data)
    rows = rows_from(Path(args.rows_from)) if args.rows_from else train_contenders(args)
    write_results(rows, args, decode_img_s)


def rows_from(log: Path) -> list[dict]:
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.startswith('{"model": ')]
    if not rows:
        print(f"error: {log}: no result rows in it (lines starting with {{\"model\": )", file=sys.stderr)
        raise SystemExit(2)
    return rows


def train_contenders(args: argparse.Namespace) -> list[dict]:
    rows = []
    for name, seed in [(name, seed) for name in args.models for seed in args.seeds]:
        model, train_over, model_over, pretrained, notes = CONTENDERS[name]
        if model != "fast":
            train_over = {**train_over, "time_budget_s": args.budget_minutes * 60}
        out = Path(args.runs) / f"{name}_seed{seed}"
        done = epochs_done(out) if args.resume else 0
        if out.exists() and not done:
            shutil.rmtree(out)
        t = time.perf_counter()
        data = DataOptions(path=args.data, recipe=SplitRecipe(seed=seed))
        summary = train_and_evaluate(model, out, data, train_over, model_over, device="cpu", pretrained=pretrained,
                                     resume=bool(done))
        wall = time.perf_counter() - t
        test, clean = summary["metrics"]["test"], summary["metrics"].get("test (no train duplicates)", {})
        tr = summary["training"]
        rows.append({
            "model": name, "seed": seed, "train_overrides": train_over, "notes": notes,
            "params": summary["model"]["params"],
            "epochs": tr["epochs_run"], "best_epoch": tr["best_epoch"], "stopped_early": tr["stopped_early"],
            "train_minutes": tr["seconds"] / 60, "run_minutes_incl_data_and_eval": wall / 60,
            "train_img_per_s": tr["median_img_per_s"], "train_precision": tr["precision"],
            "train_pflops": tr.get("pflops"), "images_seen": tr.get("images_seen"),
            "machine": f"{cpu_name()}, {os.cpu_count()} cores", "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "command": "python benchmarks/cifake.py " + " ".join(sys.argv[1:]),
            "test_accuracy": test["accuracy"], "test_precision": test["precision"], "test_recall": test["recall"],
            "test_f1": test["f1"], "test_auc": test["roc_auc"],
            "test_accuracy_without_leaked": clean.get("accuracy"),
            "train_accuracy": summary["metrics"]["train"]["accuracy"],
            "inference_img_per_s_b256": inference_throughput(out / "model.pt"),
            "tta": summary["tta"],
        })
        if done:  # train_minutes add up every sitting; run_minutes_incl_data_and_eval is the last one's
            rows[-1]["resumed_after_epoch"] = done
        print(json.dumps(rows[-1]), flush=True)
    return rows


def epochs_done(run: Path) -> int:
    """Complete epochs of an earlier sitting of this run: those its checkpoint holds (0 if none)."""
    path = run / CHECKPOINT
    return safe_load(path, what="training checkpoint")["state"]["epoch"] if path.exists() else 0


def budget_minutes(rows: list[dict], args: argparse.Namespace) -> float | None:
    """This run's wall-time cap; with --rows-from, the cap the earlier run's rows were trained under."""
    if not args.rows_from:
        return args.budget_minutes
    caps = {r.get("train_overrides", {}).get("time_budget_s") for r in rows} - {None}
    return caps.pop() / 60 if len(caps) == 1 else None


def write_results(rows: list[dict], args: argparse.Namespace, decode_img_s: float) -> None:
    command = rows[0]["command"] if args.rows_from else "python benchmarks/cifake.py " + " ".join(sys.argv[1:])
    header = provenance().to_dict()  # before this function writes into results/ (that would read as dirty)
    fresh, rows = rows, merge_with_earlier(rows)
    recount_pflops(rows)
    best = max(rows, key=lambda r: r["test_accuracy"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    best_run = Path(args.runs) / f"{best['model']}_seed{best['seed']}" / "plots" / "confusion_test.png"
    if best_run.exists():  # else the best row is an earlier run's, and so is its committed plot
        shutil.copy(best_run, RESULTS / f"cifake_confusion_{best['model']}.png")
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, CPU only, torch {torch.__version__}",
        "command": command,
        "data": "CIFAKE: train 100,000 (920 duplicate pairs dropped, 10% held out for validation), "
                "test 20,000 untouched until evaluation",
        "decode_img_per_s_cold": decode_img_s,
        "budget_minutes": budget_minutes(fresh, args),
        "budget_pflops": fast_recipe_pflops(),
    }
    if any(r.get("from_earlier_run") for r in rows):
        meta["note"] = "rows marked from_earlier_run were measured by the previous run of this script"
    (RESULTS / "cifake.json").write_text(json.dumps(
        {"provenance": header, "meta": meta, "rows": rows, "seed": SEED_ROW}, indent=2))
    (RESULTS / "cifake.md").write_text(markdown(meta, rows, best["model"]))
    print((RESULTS / "cifake.md").read_text())


def earlier(row: dict) -> str:
    return f" (row from an earlier run: `{row['command']}`)" if row.get("from_earlier_run") else ""


def sitting(row: dict) -> str:
    """A resumed run's wall-clock covers its last sitting only; its train minutes cover them all."""
    minutes = f"{row['run_minutes_incl_data_and_eval']:.1f} min"
    if row.get("resumed_after_epoch"):
        return f"last sitting (resumed after epoch {row['resumed_after_epoch']}) incl. data and evaluation {minutes}"
    return f"whole run incl. data and evaluation {minutes}"


def pflops(row: dict) -> str:
    return f"{row['train_pflops']:.3f}" if row.get("train_pflops") is not None else "–"


def markdown(meta: dict, rows: list[dict], best: str) -> str:
    head = ("| model | seed | params | epochs | train PFLOP | train min | train img/s | machine, date | test acc | "
            "test acc w/o 378 leaked | precision | recall | F1 | AUC | infer img/s (b256) |")
    lines = [
        f"This run: {meta['date']} on {meta['machine']}; each row says where and when it was measured.",
        f"Command: `{meta['command']}`. Data: {meta['data']}. "
        "Precision/recall with REAL as the positive class, as in the seed.",
        f"Training budget as compute (wall-clock minutes drift up to 2x between days and machines): the `fast` "
        f"recipe's {meta['budget_pflops']:.3f} PFLOP (forward + backward, counted by torch.utils.flop_counter with "
        "grouped-convolution weight gradients corrected (train/compute.py), times images seen) is "
        "\"20 CPU-minutes\"; six times that, \"2 h\".",
        "", head, "|" + "---|" * (head.count("|") - 1),
    ]
    for r in rows:
        lines.append(
            f"| `{r['model']}` | {r['seed']} | {r['params'] / 1e6:.2f}M | {r['epochs']} | {pflops(r)} | "
            f"{r['train_minutes']:.1f} | {r['train_img_per_s']:.0f} | {r['machine'].split(',')[0]}, {r['date']} | "
            f"**{r['test_accuracy']:.4f}** | {r['test_accuracy_without_leaked']:.4f} | "
            f"{r['test_precision']:.4f} | {r['test_recall']:.4f} | {r['test_f1']:.4f} | {r['test_auc']:.4f} | "
            f"{r['inference_img_per_s_b256']:.0f} |")
    s = SEED_ROW
    lines.append(f"| {s['model']} | – | 23.6M | – | – | – | – | GPU | {s['test_accuracy']:.4f} | – | "
                 f"{s['test_precision']:.4f} | {s['test_recall']:.4f} | – | – | – |")
    lines += ["", *over_seeds(rows), "", "Notes:"] + [f"- `{r['model']}` seed {r['seed']}: {r['notes']}; "
                                                      f"best epoch {r['best_epoch']}"
                               f"{' (stopped early)' if r['stopped_early'] else ''}; "
                               f"train accuracy {r['train_accuracy']:.4f}; {sitting(r)}{earlier(r)}."
                               for r in rows]
    lines += [f"- Data pipeline: cold JPEG decode {meta['decode_img_per_s_cold']:,.0f} img/s "
              "(parallel, all cores); later runs load the cached uint8 array in about a second.",
              "- Inference figures include test-time flip averaging where the model uses it (2 passes).",
              "", f"Confusion matrix of the best model (`{best}`), test split:", "",
              f"![confusion matrix](cifake_confusion_{best}.png)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
