"""CIFAKE: a soft-voting ensemble of models that benchmarks/cifake.py trained, on the same splits.

    python benchmarks/cifake_ensemble.py --data ../shared/data/cifake \
        --members fast_cutout_seed0 fast_ema_seed0 efficientnet_lite0_6ep_seed0

The rule is fixed before any score is seen, so nothing is tuned on test: the plain mean of the
members' P(FAKE) (each with its own TTA and temperature, as `aivsreal predict` scores it), threshold
0.5. Every member must have been trained on the same split recipe (checked: same images in the same
order). Its compute is the sum of the members' training compute, taken from the committed
benchmarks/results/cifake.json rows, so the ensemble is held to the same budgets as one model.
The figures are those of the model file `aivsreal ensemble` writes from the members (--out), scored
like any model; the members are scored too, for the table, and the file's P(FAKE) is checked against
their mean. Each ensemble is one row of benchmarks/results/cifake_ensembles.json (and a section of
its Markdown twin), named by --name, with its own provenance header; a rerun under the same name
replaces that row and keeps the others. With --teacher-out, also the ensemble's P(FAKE) on the
training images, the file `aivsreal train --teacher` distils from (cifake.py's fast_distill).

With --select-within PFLOP the members are chosen, not given: --members lists candidates, and greedy
forward selection (Caruana et al., 2004) adds, one at a time, the candidate whose training compute
still fits the budget and that lowers the ensemble's validation log loss most, until none fits or
none lowers it. Only validation scores choose; test is scored once for the table. Its row is
named cifake_ensemble_selected unless --name says otherwise; a new ensemble needs a new --name, or it
replaces the committed row of that name.

With --across-seeds the members may come from different seeds, so from different splits (a seed
ensemble: the same recipe trained three times). Then only test is scored: each member's validation
images are another member's training images, so no clean validation exists and nothing may be
chosen on it (--select-within and --teacher-out are refused). CIFAKE's test folder is the same for
every seed, and that is checked.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from aivsreal.commands.evaluate import load_saved
from aivsreal.data.splits import DataOptions
from aivsreal.evaluate.metrics import binary_metrics
from aivsreal.evaluate.scores import score_splits
from aivsreal.models.ensemble import make_ensemble
from aivsreal.models.file import save_model
from aivsreal.report.provenance import provenance

RESULTS = Path(__file__).parent / "results"
ENSEMBLES = "cifake_ensembles"  # benchmarks/results/cifake_ensembles.{json,md}: one row per ensemble
SPLITS = ("val", "test")


def member_row(name: str, rows: list[dict]) -> dict:
    """The committed cifake.json row of run folder `name` (`<contender>_seed<seed>`)."""
    for r in rows:
        if f"{r['model']}_seed{r['seed']}" == name:
            return r
    print(f"error: no row for {name} in {RESULTS / 'cifake.json'}: train it with benchmarks/cifake.py first",
          file=sys.stderr)
    raise SystemExit(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/cifake")
    ap.add_argument("--runs", default="benchmarks/runs", help="where benchmarks/cifake.py put the trained models")
    ap.add_argument("--members", nargs="+", required=True, help="run folders under --runs, e.g. fast_seed0")
    ap.add_argument("--teacher-out", metavar="CSV", help="also write the ensemble's P(FAKE) on the training images")
    ap.add_argument("--out", default="benchmarks/runs/cifake_ensemble/model.pt", help="the ensemble's model file")
    ap.add_argument("--select-within", type=float, metavar="PFLOP",
                    help="--members are candidates: pick them greedily on validation log loss within this compute")
    ap.add_argument("--across-seeds", action="store_true",
                    help="members trained on different seeds' splits: score test only (no clean validation)")
    ap.add_argument("--name", help=f"the ensemble's row in benchmarks/results/{ENSEMBLES}.json, replaced if it "
                    "exists (default: cifake_ensemble, or cifake_ensemble_selected with --select-within)")
    args = ap.parse_args()
    if args.name is not None and not args.name.replace("_", "").replace("-", "").isalnum():
        ap.error(f"--name {args.name!r}: a row name of letters, digits, '_' and '-' (a heading in {ENSEMBLES}.md)")
    if len(args.members) < 2 and args.select_within is None:
        ap.error(f"--members {args.members[0]}: an ensemble needs at least two members (or pass --select-within to "
                 "choose among candidates)")
    if args.across_seeds and (args.select_within is not None or args.teacher_out):
        ap.error("--across-seeds scores test only, since the members' validation images are other members' training "
                 "images: it cannot choose members (--select-within) or label training images (--teacher-out)")
    scored = ("test",) if args.across_seeds else SPLITS
    splits = scored + ("train",) if args.teacher_out else scored
    started = time.perf_counter()
    committed = json.loads((RESULTS / "cifake.json").read_text())
    rows = [member_row(name, committed["rows"]) for name in args.members]

    members, p_fake, reference, loaded = {}, {s: [] for s in splits}, None, []
    for name in args.members:
        run = load_saved(Path(args.runs) / name / "model.pt", DataOptions(path=args.data), device="cpu")
        loaded.append((name, run.network, run.meta))
        rd = run.data
        ev = score_splits(run.network, {s: getattr(rd, s) for s in splits}, torch.device("cpu"), run.meta,
                          leaked=rd.leaked)
        names = {s: ev.scores[s].names for s in splits}
        if reference is None:
            reference, labels, leaked = names, {s: ev.scores[s].labels for s in splits}, rd.leaked
        elif names != reference:
            what = "test images" if args.across_seeds else "splits"
            print(f"error: {name} was scored on other {what} than {args.members[0]}: ensemble members must share "
                  "the split recipe (same --seeds in benchmarks/cifake.py), or the data with --across-seeds",
                  file=sys.stderr)
            raise SystemExit(2)
        for s in splits:
            p_fake[s].append(ev.scores[s].p_fake)
        members[name] = {**val_figures(ev.metrics), "test_accuracy": ev.metrics["test"]["accuracy"]}
        print(name, members[name], flush=True)

    selection = None
    if args.select_within is not None:
        chosen, selection = select_members(p_fake["val"], labels["val"], [r["train_pflops"] for r in rows],
                                           args.select_within)
        selection = [{**step, "added": args.members[step["added"]]} for step in selection]
        if len(chosen) < 2:
            print(f"error: greedy selection kept {args.members[chosen[0]]} alone (val log loss "
                  f"{selection[0]['val_log_loss']:.4f}): no other candidate that fits lowered it, so there is no "
                  "ensemble to build; score that run on its own (its row in cifake.json)", file=sys.stderr)
            raise SystemExit(2)
        rows, loaded = [rows[i] for i in chosen], [loaded[i] for i in chosen]
        p_fake = {s: [p_fake[s][i] for i in chosen] for s in splits}
        print("selected", [name for name, _, _ in loaded], flush=True)
    mean = {s: np.mean(p_fake[s], axis=0) for s in splits}
    network, meta = make_ensemble(loaded)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_model(args.out, network, meta)
    run = load_saved(args.out, DataOptions(path=args.data), device="cpu")
    ev = score_splits(run.network, {s: getattr(run.data, s) for s in scored}, torch.device("cpu"), run.meta,
                      leaked=run.data.leaked)
    p_file = {s: ev.scores[s].p_fake for s in scored}
    agreement = max(float(np.abs(p_file[s] - mean[s]).max()) for s in scored)
    if args.teacher_out:
        with open(args.teacher_out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "p_fake"])
            w.writerows([name, f"{p:.6f}"] for name, p in zip(reference["train"], mean["train"], strict=True))
    metrics = {s: binary_metrics(labels[s], p_file[s]) for s in scored}
    metrics["test_without_leaked"] = binary_metrics(labels["test"][~leaked], p_file["test"][~leaked])
    stem = args.name or ("cifake_ensemble_selected" if args.select_within is not None else "cifake_ensemble")
    result = {
        "name": stem,
        "provenance": provenance().to_dict(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": "python benchmarks/cifake_ensemble.py " + " ".join(sys.argv[1:]),
        "rule": "mean of the members' P(FAKE), threshold 0.5, fixed before scoring",
        "across_seeds": args.across_seeds,
        "model_file": args.out,
        "max_abs_difference_from_members_mean": agreement,
        "members": members,
        "selected": [name for name, _, _ in loaded],
        "selection": selection,
        "select_within": args.select_within,
        "train_pflops": sum(r["train_pflops"] for r in rows),
        "train_minutes": sum(r["train_minutes"] for r in rows),
        "member_machines": sorted({f"{r['machine'].split(',')[0]}, {r['date']}" for r in rows}),
        "budget_pflops": committed["meta"]["budget_pflops"],
        **val_figures(metrics),
        "test_accuracy": metrics["test"]["accuracy"],
        "test_accuracy_without_leaked": metrics["test_without_leaked"]["accuracy"],
        "test_precision": metrics["test"]["precision"], "test_recall": metrics["test"]["recall"],
        "test_auc": metrics["test"]["roc_auc"],
        "scoring_minutes": (time.perf_counter() - started) / 60,  # incl. the training images with --teacher-out
    }
    if args.teacher_out:
        result["train_accuracy"] = binary_metrics(labels["train"], mean["train"])["accuracy"]
    write_row(result)
    print(markdown(result))


def write_row(result: dict) -> None:
    """Put one ensemble's row into cifake_ensembles.json (replacing a row of the same name, else appended)
    and rewrite its Markdown twin. The file's header is that of the run that wrote it last; each row keeps
    its own."""
    path = RESULTS / f"{ENSEMBLES}.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    rows = [r for r in rows if r["name"] != result["name"]] + [result]
    path.write_text(json.dumps({"provenance": result["provenance"], "rows": rows}, indent=2) + "\n")
    sections = [f"## {r['name']}\n\n{markdown(r)}" for r in rows]
    path.with_suffix(".md").write_text(
        "# CIFAKE ensembles\n\nOne section per ensemble, written by `python benchmarks/cifake_ensemble.py` "
        f"(each row of {ENSEMBLES}.json, with its own provenance header).\n\n" + "\n".join(sections))


def val_figures(metrics: dict) -> dict:
    """Validation accuracy and log loss, or None for both where validation was not scored (--across-seeds)."""
    val = metrics.get("val")
    return {"val_accuracy": val["accuracy"] if val else None, "val_log_loss": val["log_loss"] if val else None}


def select_members(p_val: list[np.ndarray], labels: np.ndarray, pflops: list[float],
                   budget: float) -> tuple[list[int], list[dict]]:
    """Greedy forward selection on validation log loss within a compute budget: the indices chosen
    and, per step, the candidate added with the validation figures it gave."""
    chosen, steps, best = [], [], np.inf
    while True:
        spent = sum(pflops[i] for i in chosen)
        trials = [(binary_metrics(labels, np.mean([p_val[j] for j in chosen + [i]], axis=0)), i)
                  for i in range(len(p_val)) if i not in chosen and spent + pflops[i] <= budget]
        if not trials:
            break
        m, i = min(trials, key=lambda t: t[0]["log_loss"])
        if m["log_loss"] >= best:
            break
        best = m["log_loss"]
        chosen.append(i)
        steps.append({"added": i, "val_log_loss": m["log_loss"], "val_accuracy": m["accuracy"],
                      "train_pflops": spent + pflops[i]})
    if not chosen:
        print(f"error: no candidate fits --select-within {budget} PFLOP", file=sys.stderr)
        raise SystemExit(2)
    return chosen, steps


def markdown(r: dict) -> str:
    lines = [f"Command: `{r['command']}` ({r['date']}). Rule: {r['rule']}. Scored from the model file "
             f"`aivsreal ensemble` writes ({r['model_file']}); its P(FAKE) is within "
             f"{r['max_abs_difference_from_members_mean']:.1e} of the members' mean.", "",
             "| model | val acc | val log loss | test acc |", "|---|---|---|---|"]
    lines += [f"| `{name}` | {_val(m.get('val_accuracy'))} | {_val(m.get('val_log_loss'))} | {m['test_accuracy']:.4f} |"
              for name, m in r["members"].items()]
    if r.get("selection"):
        lines += ["", f"Chosen by greedy forward selection on validation log loss within {r['select_within']:.2f} "
                  "PFLOP:", ""]
        lines += [f"{k}. `{st['added']}`: val log loss {st['val_log_loss']:.4f}, val acc {st['val_accuracy']:.4f}, "
                  f"{st['train_pflops']:.3f} PFLOP" for k, st in enumerate(r["selection"], 1)]
        lines += ["", "| model | val acc | val log loss | test acc |", "|---|---|---|---|"]
    lines += [f"| **ensemble** | {_val(r.get('val_accuracy'))} | {_val(r.get('val_log_loss'))} | "
              f"**{r['test_accuracy']:.4f}** |", "",
              f"Ensemble test accuracy without the 378 leaked images {r['test_accuracy_without_leaked']:.4f}, "
              f"precision (REAL positive) {r['test_precision']:.4f}, recall {r['test_recall']:.4f}, "
              f"AUC {r['test_auc']:.4f}.",
              f"Training compute: {r['train_pflops']:.3f} PFLOP in all (the fast recipe's budget is "
              f"{r['budget_pflops']:.3f}, \"2 h\" six times that), {r['train_minutes']:.0f} min of training "
              f"measured on {'; '.join(r['member_machines'])}.", ""]
    if r.get("across_seeds"):
        lines += ["Members from different seeds, so from different splits (`--across-seeds`): each one's "
                  "validation images are another's training images, so validation is not scored (–); test is "
                  "the same 20,000 images for all.", ""]
    return "\n".join(lines)


def _val(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"


if __name__ == "__main__":
    main()
