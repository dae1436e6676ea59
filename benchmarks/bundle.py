"""Turn a training run into a bundled detector: safetensors + config.json + model card, inside the package.

    aivsreal train --data ../shared/data/cifake --out runs/cifake --calibrate
    python benchmarks/bundle.py --run runs/cifake --data ../shared/data/cifake --name cifake

Rebuilds the run's own splits, fits the domain check if the model file has none (the same
`fit_domain` that `train` calls), measures whether fp16 weights change any test verdict (they
are stored as fp16 only if accuracy is unchanged), measures robustness on the test split, and
writes src/aivsreal/bundled/NAME/ with a card that states all of it. Prints what it measured.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from aivsreal.commands.evaluate import load_saved
from aivsreal.data.splits import DataOptions
from aivsreal.evaluate import robustness
from aivsreal.evaluate.scores import score_splits
from aivsreal.models.card import model_card
from aivsreal.models.hub import BUNDLED, save_pretrained
from aivsreal.predict.detector import Detector
from aivsreal.train.domain import fit_domain

ROBUSTNESS_IMAGES = 2000

CIFAKE_NOTES = """## Intended use

- **Domain: 32x32 images like CIFAKE's** (CIFAR-10 photos vs Stable Diffusion 1.4 renders at 32x32,
  JPEG). It is a benchmark model and a demonstration of the toolkit, not a detector for images found
  in the wild.
- **Known failure modes.** On real photographs and AI images from other generators at 256-2048 px
  (the wild development set) it reaches ROC AUC 0.71 and accuracy 0.65 as stored, but it sees them
  shrunk to 32 px, and in that set size and format separate the classes on their own: do not read
  that as detection (benchmarks/results/domain.md, wild.md). The domain check flags every such image.
  Blur and downscaling cost it most (table below); JPEG re-compression and flips cost little.
- Training data licence: CIFAKE is published under the MIT licence (the same as CIFAR-10).
"""


def fp16_check(det32: Detector, network: torch.nn.Module, meta, images: np.ndarray, labels: np.ndarray) -> dict:
    """Do fp16-rounded weights change the test verdicts? Both scored in fp32 arithmetic."""
    half = copy.deepcopy(network)
    half.load_state_dict({k: v.half().float() if v.is_floating_point() else v
                          for k, v in network.state_dict().items()})
    det16 = Detector.from_network(half, meta, "cpu", precision="fp32")
    p32, p16 = det32.predict_proba(images), det16.predict_proba(images)
    acc32 = float(np.mean((p32 >= meta.threshold) == labels))
    acc16 = float(np.mean((p16 >= meta.threshold) == labels))
    return {"accuracy_fp32_weights": acc32, "accuracy_fp16_weights": acc16,
            "verdicts_changed": int(np.sum((p32 >= meta.threshold) != (p16 >= meta.threshold))),
            "max_abs_p_fake_change": float(np.max(np.abs(p32 - p16)))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="folder with model.pt from `aivsreal train`")
    ap.add_argument("--data", required=True, help="the data it was trained on")
    ap.add_argument("--name", required=True)
    ap.add_argument("--train-command", default="aivsreal train --data ../shared/data/cifake --out runs/cifake "
                    "--calibrate")
    args = ap.parse_args()

    run = load_saved(Path(args.run) / "model.pt", DataOptions(path=args.data), device="cpu")
    network, meta, rd = run.network.float().eval(), run.meta, run.data
    notes = []
    if meta.domain is None:
        meta = replace(meta, domain=fit_domain(network, rd.train, rd.val, rd.train_sizes, run.device))
        notes.append("The domain check was fitted after training by this script, with the same `fit_domain` "
                     "that `aivsreal train` now runs at the end of training.")
    print("scoring the splits", flush=True)
    ev = score_splits(network, {"train": rd.train, "val": rd.val, "test": rd.test}, run.device, meta,
                      leaked=rd.leaked)
    meta.summary = {**meta.summary, "metrics": ev.metrics}
    det = Detector.from_network(network, meta, run.device, precision="fp32")
    fp16 = fp16_check(det, network, meta, rd.test.images, rd.test.labels)
    half = fp16["accuracy_fp16_weights"] == fp16["accuracy_fp32_weights"]
    sample = np.random.default_rng(0).permutation(len(rd.test))[:ROBUSTNESS_IMAGES]  # 20 perturbations each
    print(f"robustness on {len(sample)} test images", flush=True)
    rows = robustness.measure(det.predict_proba, rd.test.images[sample], rd.test.labels[sample], det.threshold,
                              clean_p_fake=ev.scores["test"].p_fake[sample])
    command = f"{args.train_command}\npython benchmarks/bundle.py " + " ".join(sys.argv[1:])
    extra = "\n".join([
        CIFAKE_NOTES if args.name.startswith("cifake") else "",
        f"## Robustness ({len(sample):,} random test images, every one perturbed)", "",
        robustness.markdown_table(rows), "",
        "## Weights", "",
        f"Stored as {'fp16' if half else 'fp32'}: fp16-rounded weights give test accuracy "
        f"{fp16['accuracy_fp16_weights']:.4f} vs {fp16['accuracy_fp32_weights']:.4f} in fp32, "
        f"{fp16['verdicts_changed']} of {len(rd.test):,} verdicts changed, P(fake) moved by at most "
        f"{fp16['max_abs_p_fake_change']:.5f}.", "",
        "## Reproduce", "", "```bash", command, "```", "",
        *notes, f"Bundled {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, torch {torch.__version__}.",
    ])
    meta.summary["trained_on"] = "CIFAKE (32x32)" if args.name.startswith("cifake") else rd.path
    out = save_pretrained(BUNDLED / args.name, network, meta, model_card(args.name, network.config, meta, extra),
                          half=half)
    print(json.dumps({"out": str(out), "fp16": fp16, "stored_fp16": half,
                      "test_accuracy": ev.metrics["test"]["accuracy"],
                      "test_domain_flagged": ev.metrics["test"].get("domain_flagged"),
                      "files": {f.name: f.stat().st_size for f in out.iterdir()}}, indent=2))


if __name__ == "__main__":
    main()
