"""Does bf16 autocast pay on this CPU? Training-step and inference img/s, fp32 against bf16 forced on.

    python benchmarks/precision.py

aivsreal turns CPU autocast on only where oneDNN runs bf16 on the CPU's own instructions
(AVX512-BF16 or AMX; aivsreal/device.py); elsewhere `--precision bf16` runs fp32. This measures
both sides of that rule on the machine at hand, with autocast forced on whatever the rule says, so
the rule can be checked anywhere. Writes benchmarks/results/precision.{json,md}, one section per
CPU: a run replaces its CPU's earlier one and keeps the others (AVX2-only AMD: bf16 8-18x slower;
AMX Xeon: bf16 trains `fast` 1.9x faster but Lite0 at 0.54x, hence the Lite recipes' `cpu_amp`).

Freshly initialised networks (speed does not depend on the weights), channels_last as in training,
random pixels at each model's image size; a training step is forward, BCE loss, backward and an
SGD step. Images/s are medians of timed steps after a warm-up, over interleaved rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from aivsreal.device import cpu_bf16_native
from aivsreal.models import build_model, default_config
from aivsreal.report.provenance import provenance

sys.path.insert(0, str(Path(__file__).parent))
from cifake import RESULTS, cpu_name  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def images_per_s(step: Callable[[], None], batch: int, min_seconds: float) -> float:
    step()  # warm-up: oneDNN picks and caches its kernels on the first call
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def measure(name: str, train_batch: int, infer_batch: int, min_seconds: float) -> dict[tuple[str, str], float]:
    """img/s of one model for each (pass, precision), the precisions interleaved on the same network."""
    config = default_config(name)
    net = build_model(config).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    gen = torch.Generator().manual_seed(0)

    def pixels(n: int) -> torch.Tensor:
        x = torch.randint(0, 256, (n, 3, config.image_size, config.image_size), generator=gen).float()
        return x.contiguous(memory_format=torch.channels_last)

    x_train, y_train, x_infer = pixels(train_batch), (torch.rand(train_batch, generator=gen) > 0.5).float(), \
        pixels(infer_batch)

    def cast(precision: str) -> contextlib.AbstractContextManager:
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def train_step(precision: str) -> None:
        net.train()
        with cast(precision):
            logits = net(x_train).float()
        loss = F.binary_cross_entropy_with_logits(logits, y_train)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.inference_mode()
    def infer(precision: str) -> None:
        net.eval()
        with cast(precision):
            net(x_infer)

    speeds = {}
    for precision in PRECISIONS:
        speeds["train", precision] = images_per_s(partial(train_step, precision), train_batch, min_seconds)
        speeds["inference", precision] = images_per_s(partial(infer, precision), infer_batch, min_seconds)
    return speeds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["fast", "efficientnet_lite0"])
    ap.add_argument("--train-batch", type=int, default=64)
    ap.add_argument("--infer-batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3, help="repeat every measurement; report the median")
    ap.add_argument("--min-seconds", type=float, default=3.0, help="time each measurement at least this long")
    args = ap.parse_args()
    meta = {"provenance": provenance().to_dict(), "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "command": " ".join(["python benchmarks/precision.py", *sys.argv[1:]]), "cpu": cpu_name(),
            "cpus": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cpu_bf16_native": cpu_bf16_native(), "train_batch": args.train_batch, "infer_batch": args.infer_batch,
            "rounds": args.rounds, "min_seconds": args.min_seconds}
    print(json.dumps(meta), flush=True)
    rounds: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(args.rounds):  # rounds interleave the models, so a slow spell of the machine hits all alike
        for name in args.models:
            for (phase, precision), speed in measure(name, args.train_batch, args.infer_batch,
                                                     args.min_seconds).items():
                rounds.setdefault((name, phase, precision), []).append(speed)
                print(f"{name} {phase} {precision}: {speed:,.1f} img/s", flush=True)
    rows = [{"model": name, "pass": phase, "precision": precision, "img_per_s": statistics.median(values),
             "rounds": [round(v, 1) for v in values]} for (name, phase, precision), values in rounds.items()]
    RESULTS.mkdir(exist_ok=True)
    machines = merged(RESULTS / "precision.json", {"meta": meta, "rows": rows})
    (RESULTS / "precision.json").write_text(json.dumps({"provenance": meta["provenance"], "machines": machines},
                                                       indent=2) + "\n")
    text = "\n".join(line for machine in machines for line in section(machine["meta"], machine["rows"]))
    (RESULTS / "precision.md").write_text(text)
    print(text)


def merged(path: Path, run: dict) -> list[dict]:
    """Every CPU's latest run, oldest first: a run replaces the earlier one from its CPU and keeps the
    others', because which precision pays is a property of the CPU (and of the network)."""
    earlier = json.loads(path.read_text())["machines"] if path.exists() else []
    kept = [m for m in earlier if m["meta"]["cpu"] != run["meta"]["cpu"]]
    return sorted([*kept, run], key=lambda m: m["meta"]["date"])


def section(meta: dict, rows: list[dict]) -> list[str]:
    native = "has" if meta["cpu_bf16_native"] else "has no"
    rule = ("turns bf16 autocast on here, except for the training steps of recipes that set `cpu_amp` off "
            "(the Lite ones)" if meta["cpu_bf16_native"] else "keeps autocast off and runs fp32 here")
    lines = [f"## {meta['cpu']}, {meta['date']}", "",
             f"{meta['cpus']} cores, torch {meta['torch']}: `{meta['command']}`. This CPU {native} native bf16 "
             f"(oneDNN), so aivsreal {rule}. Images/s: median of {meta['rounds']} interleaved rounds, each the "
             f"median of timed steps over {meta['min_seconds']:g} s; training steps of batch {meta['train_batch']}, "
             f"inference batches of {meta['infer_batch']}, bf16 autocast forced on for the bf16 column.", "",
             "| model | pass | fp32 img/s | bf16 img/s | bf16 / fp32 |", "|---|---|---|---|---|"]
    speed = {(r["model"], r["pass"], r["precision"]): r["img_per_s"] for r in rows}
    for name in dict.fromkeys(r["model"] for r in rows):
        for phase in ("train", "inference"):
            fp32, bf16 = speed[name, phase, "fp32"], speed[name, phase, "bf16"]
            lines.append(f"| `{name}` | {phase} | {fp32:,.1f} | {bf16:,.1f} | {bf16 / fp32:.2f}x |")
    return [*lines, ""]


if __name__ == "__main__":
    main()
