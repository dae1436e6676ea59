"""Short proxies of cifake.py's contenders: N epochs, scored on validation only (test untouched).

A full contender run costs 25-35 minutes here; a quarter of its epochs ranks recipe changes
cheaply before one is given a full run. Proxies have misled twice (Muon, patch whitening: ahead
after 8 epochs, level or behind after the full anneal), so a proxy only chooses what to run in
full; claims come from cifake.py. Run from the repository root:

    python benchmarks/cifake_proxy.py --data ../shared/data/cifake --models fast fast_whiten --epochs 8

Merges one row per (contender, epochs, seed) into benchmarks/results/cifake_proxies.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cifake import CONTENDERS, RESULTS  # noqa: E402

from aivsreal.commands.train import train_and_evaluate  # noqa: E402
from aivsreal.data.splits import DataOptions, SplitRecipe  # noqa: E402
from aivsreal.report.provenance import provenance


def proxy(name: str, epochs: int, seed: int, data: str, runs: Path) -> dict:
    model, train_over, model_over, pretrained, _ = CONTENDERS[name]
    out = runs / f"proxy_{name}_{epochs}ep_seed{seed}"
    t = time.perf_counter()
    summary = train_and_evaluate(model, out, DataOptions(path=data, recipe=SplitRecipe(seed=seed)),
                                 {**train_over, "epochs": epochs, "patience": epochs}, model_over,
                                 device="cpu", pretrained=pretrained, run_eval=False)
    with open(out / "history.csv") as f:
        last = list(csv.DictReader(f))[-1]
    return {"model": name, "epochs": epochs, "seed": seed, "val_loss": float(last["val_loss"]),
            "val_acc": float(last["val_acc"]), "train_acc": float(last["train_acc"]),
            "train_pflops": summary["training"]["pflops"], "minutes": (time.perf_counter() - t) / 60,
            "date": date.today().isoformat(), "command": "python " + " ".join(sys.argv)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/cifake")
    ap.add_argument("--models", nargs="+", required=True, choices=list(CONTENDERS))
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", default="benchmarks/runs", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    path = RESULTS / "cifake_proxies.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    header = provenance().to_dict()
    for name in args.models:
        row = proxy(name, args.epochs, args.seed, args.data, args.runs)
        print(json.dumps(row), flush=True)
        rows = [r for r in rows if (r["model"], r["epochs"], r["seed"]) != (name, args.epochs, args.seed)] + [row]
        path.write_text(json.dumps({"provenance": header, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
