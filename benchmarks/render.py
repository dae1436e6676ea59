"""Render every results table in README.md and docs/ from benchmarks/results/*.json, and the results index.

    python benchmarks/render.py          # rewrite every table, and benchmarks/results/README.md
    python benchmarks/render.py --check  # exit 1 naming each table that differs (tests/test_results.py runs it)

A table lives in a Markdown file between two markers, `<!-- render:NAME -->` and `<!-- /render:NAME -->`;
NAME is a key of TABLES, whose function builds the table from the committed results files. Nothing between
the markers is written by hand: after a benchmark is rerun, this script rewrites the tables, and until it
does the test that compares the committed tables with a fresh rendering fails. Figures quoted in prose
around a table are not rendered: a table that cannot drift is the reference, and prose should point to it.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import results_index  # noqa: E402

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results"
# a marker is a line of its own (so prose may quote one in backticks)
MARKER = re.compile(r"^(<!-- render:(?P<name>[\w-]+) -->\n)(?P<body>.*?)^(<!-- /render:(?P=name) -->)$", re.S | re.M)
OPEN = re.compile(r"^<!-- render:([\w-]+) -->$", re.M)
WILD_CARD = ROOT / "src" / "aivsreal" / "bundled" / "wild" / "config.json"


def load(name: str, results: Path) -> dict:
    return json.loads((results / f"{name}.json").read_text())


def pct(x: float) -> str:
    """An accuracy as a percentage, to the 0.005% that 20,000 test images resolve, without trailing zeros."""
    return f"{100 * x:.3f}".rstrip("0").rstrip(".") + "%"


def f4(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"


def f3(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def source(names: tuple[str, ...], depth: int, results: Path) -> str:
    """The line under a table naming the files it was rendered from, linked from a page `depth` folders down
    (a file a table reads only when present, such as wild_external.json, is named only then)."""
    up = "../" * depth
    links = ", ".join(f"[{n}.json]({up}benchmarks/results/{n}.json)" for n in names
                      if (results / f"{n}.json").exists())
    return f"\n*Rendered by `python benchmarks/render.py` from {links}; do not edit by hand.*\n"


def recipes(rows: list[dict]) -> dict[str, list[dict]]:
    """cifake.json rows grouped by recipe (one row per seed), in file order."""
    grouped: dict[str, list[dict]] = {}
    for r in rows:
        grouped.setdefault(r["model"], []).append(r)
    return grouped


def wild_recipe() -> str:
    """The wild.json contender whose recipe the bundled `wild` detector was fitted with (its card says)."""
    recipe = json.loads(WILD_CARD.read_text())["meta"]["summary"]["training"]["recipe"]
    return recipe.removeprefix("wild.py ").split(", C=")[0]


def headline(results: Path) -> str:
    """README: the seed, the default, the best single model and ensemble, and the wild detector's figures."""
    cifake, ens = load("cifake", results), load("cifake_ensembles", results)["rows"]
    seed = cifake["seed"]
    grouped = recipes(cifake["rows"])
    fast = [r["test_accuracy"] for r in grouped["fast"]]
    best = max(grouped.values(), key=lambda rs: statistics.mean(r["test_accuracy"] for r in rs))
    best_acc = [r["test_accuracy"] for r in best]
    top = max(ens, key=lambda r: r["test_accuracy"])
    size = len(top.get("selected") or top["members"])
    photoreal = load("wild", results)["photoreal"]
    recipe = wild_recipe()
    if recipe not in photoreal["contenders"]:
        raise SystemExit(f"error: the bundled wild detector's recipe {recipe!r} has no row in wild.json's photoreal "
                         "table: rerun benchmarks/wild.py for it")
    same_size = photoreal["contenders"][recipe]["same_size"]
    ours, n_photoreal = same_size["pooled_auc"], same_size["n_real"] + same_size["n_fake"]
    matched = photoreal["content_matched"][recipe]["same_size"]["pooled_auc"]
    external = load("wild_external", results) if (results / "wild_external.json").exists() else None
    rows = [
        ["seed notebook: Keras ResNet50V2, ImageNet weights, GPU (published)", "CIFAKE test accuracy",
         pct(seed["test_accuracy"])],
        [f"`fast`, the default recipe: {grouped['fast'][0]['params'] / 1e6:.2f}M parameters, from scratch",
         "CIFAKE test accuracy", f"{pct(statistics.mean(fast))} (mean of {len(fast)} seeds)"],
        [f"best single model: `{best[0]['model']}`", "CIFAKE test accuracy",
         f"{pct(statistics.mean(best_acc))} (mean of {len(best_acc)} seeds; best run {pct(max(best_acc))})"],
        [f"best ensemble: `{top['name']}`, {size} models", "CIFAKE test accuracy",
         pct(top["test_accuracy"])],
        [f"the bundled `wild` detector's recipe ({recipe})",
         f"photoreal slice, sources held out: AUC ({n_photoreal:,} images)",
         f"{ours:.3f} (content-only baseline {photoreal['content_baseline_auc']:.3f}; content-matched {matched:.3f})"],
        ["the shipped `wild` detector on the locked external photoreal set (files as stored)", "AUC",
         f"{external['pooled_auc']:.3f} (scored once; {len(external['sources'])} sources never used in development)"
         if external else f"not yet scored ({len(photoreal['external_sources'])} sources held back)"],
    ]
    return table(["what", "measured", "figure"], rows)


def cifake(results: Path) -> str:
    """docs/results/cifake.md: every CIFAKE run (each recipe tried, each seed), every ensemble, the seed."""
    data, ens = load("cifake", results), load("cifake_ensembles", results)["rows"]
    by_run = {f"{r['model']}_seed{r['seed']}": r for r in data["rows"]}
    rows = []
    for r in data["rows"]:
        rows.append([f"`{r['model']}` seed {r['seed']}", r["notes"], f"{r['date']}, {r['machine']}",
                     f"{r['params'] / 1e6:.2f}M", str(r["epochs"]), f3(r.get("train_pflops")),
                     f"{r['train_minutes']:.1f}", f"{r['train_img_per_s']:.0f}", f"**{f4(r['test_accuracy'])}**",
                     f4(r["test_accuracy_without_leaked"]), f4(r["test_precision"]), f4(r["test_recall"]),
                     f4(r["test_f1"]), f4(r["test_auc"]), f"{r['inference_img_per_s_b256']:.0f}"])
    for e in ens:
        chosen = e.get("selected") or list(e["members"])  # the first run recorded no `selected`: all members
        members = [by_run.get(m) for m in chosen]
        params = f"{sum(m['params'] for m in members) / 1e6:.1f}M" if all(members) else "–"
        rows.append([f"ensemble `{e['name']}`", f"{e['rule']}: " + ", ".join(f"`{m}`" for m in chosen),
                     e["date"], params, "–", f3(e["train_pflops"]), f"{e['train_minutes']:.0f}", "–",
                     f"**{f4(e['test_accuracy'])}**", f4(e["test_accuracy_without_leaked"]),
                     f4(e["test_precision"]), f4(e["test_recall"]), "–", f4(e["test_auc"]), "–"])
    s = data["seed"]
    rows.append([s["model"], "published", "–", "–", "–", "–", "–", "–", f4(s["test_accuracy"]), "–",
                 f4(s["test_precision"]), f4(s["test_recall"]), "–", "–", "–"])
    header = ["run", "recipe", "date, machine", "params", "epochs", "train PFLOP", "train min", "train img/s",
              "test acc", "test acc w/o 378 leaked", "precision", "recall", "F1", "AUC", "infer img/s (b256)"]
    return table(header, rows)


def inference(results: Path) -> str:
    """docs/results/cifake.md: images/s per model, backend and batch size."""
    rows: dict[tuple[str, str], dict[int, float]] = {}
    for r in load("inference", results)["rows"]:
        rows.setdefault((r["model"], r["backend"]), {})[r["batch"]] = r["img_per_s"]
    body = [[f"`{m}`", b, f"{by[1]:,.0f}", f"{by[256]:,.0f}"] for (m, b), by in rows.items()]
    return table(["model", "backend", "batch 1 img/s", "batch 256 img/s"], body)


ROBUSTNESS = (("fast", "robustness_fast"), ("efficientnet_lite0", "robustness_efficientnet_lite0"),
              ("fast --degrade 0.5", "robustness_fast_degrade"))


def robustness(results: Path) -> str:
    """docs/evaluate.md: accuracy and FAKE recall per perturbation, for each benchmark model."""
    runs = [(label, load(name, results)["rows"]) for label, name in ROBUSTNESS]
    header = ["perturbation"] + [f"`{label}` {what}" for label, _ in runs for what in ("acc", "FAKE recall")]
    body = [[row["label"]] + [f4(r[i][k]) for _, r in runs for k in ("accuracy", "fake_recall")]
            for i, row in enumerate(runs[0][1])]
    return table(header, body)


def domain(results: Path) -> str:
    """docs/detectors.md: how often the domain check flags each image set, and how well its score separates."""
    d = load("domain", results)
    inside = d["in_domain"]
    body = [[f"{inside['set']} (in domain; goal <= 2%)", f"{inside['n']:,}",
             f"**{100 * inside['flagged']:.2f}%** (accuracy {inside['accuracy_in_domain']:.3f} on the rest, "
             f"{inside['accuracy_flagged']:.3f} on those)", "–"]]
    body += [[f"{o['set']}, {o['as']}", f"{o['n']:,}", f"**{100 * o['flagged']:.1f}%**",
              f"**{o['auroc_domain_score']:.3f}**"] for o in d["out_of_domain"]]
    return table(["images", "n", "flagged", f"AUROC of the domain score vs {inside['set']}"], body)


# the second wild table's contenders, in words (wild.json names them briefly); a new contender shows its key
WILD_WORDS = {
    "lite2 probe (512 px reductions)": "frozen ImageNet EfficientNet-Lite2, stage-pooled features, logistic "
                                       "regression, trained on the 512 px reductions (`lite2_probe`; the bundled "
                                       "`wild` since 2026-12-07)",
    "lite2 probe (codec chain)": "frozen ImageNet EfficientNet-Lite2, stage-pooled features, logistic regression, "
                                 "codec-chain views (`lite2_probe`; the bundled `wild` until 2026-12-07)",
    "lite0 probe (codec chain)": "the Lite2 probe's recipe on frozen EfficientNet-Lite0 (`lite0_probe`)",
    "lite1 probe (codec chain)": "the Lite2 probe's recipe on frozen EfficientNet-Lite1 (`lite1_probe`)",
    "lite2 probe, stages only (no head; codec chain)": "the Lite2 probe on its pooled stages alone, without the "
                                                       "1,280-wide head",
    "lite2 probe, head only (codec chain)": "the Lite2 probe on the 1,280-wide head alone",
    "lite2 probe, mean+std pooled (codec chain)": "Lite2 with each stage pooled by mean and standard deviation "
                                                  "(`lite2_probe_stats`, 4,272 values)",
    "lite0+lite2 probe (codec chain, features side by side)": "Lite0 and Lite2 features side by side",
    "lite1+lite2 probe (codec chain, features side by side)": "Lite1 and Lite2 features side by side",
    "lite2 probe (codec-chain and plain views, 4 per image)": "the Lite2 probe trained on codec-chain and plain "
                                                              "native views (4 per image)",
    "lite2 probe (codec chain, sources weighted)": "the Lite2 probe with each training source weighted by "
                                                   "1/sqrt(its size)",
    "lite0 probe (plain crops)": "the Lite0 probe on plain native crops (no codec chain)",
    "spectrum probe (codec chain)": "no backbone: the power spectrum of each crop's high-pass residual (fall-off, "
                                    "periodic peaks) and its colour correlations (`spectrum_probe`, 295 values), "
                                    "codec-chain views",
    "spectrum probe (plain crops)": "the spectrum probe on plain native crops (no codec chain)",
    "lite2+spectrum probe (codec chain, features side by side)": "Lite2 and the spectrum features side by side",
    "efficientnet_lite0 fine-tuned (ImageNet, codec chain, 160 px crops, 2 epochs)":
        "EfficientNet-Lite0 fully fine-tuned from ImageNet (`train --crop 160`, codec chain, 2 epochs)",
    "fast fine-tuned (scratch, codec chain, 96 px crops, 6 epochs)":
        "`fast` from scratch (`train --crop 96`, codec chain, 6 epochs)",
    "cifake (bundled, 32 px)": "`cifake` (bundled, CIFAKE-trained, images shrunk to 32 px)",
    "size/format/bytes only": "a classifier that sees only width, height, format and file size (the shortcut)",
    "content only (32 px thumbnail, same probe)": "content only: the same probe on a 32 px thumbnail of each image",
}


def _auc(contender: dict | None, condition: str) -> float | None:
    return (contender or {}).get(condition, {}).get("pooled_auc")


def wild(results: Path) -> str:
    """docs/wild.md: every contender on the wild development set, held-out sources, with the figure on the
    3,599-image set before the additions in brackets."""
    now, before = load("wild", results), load("wild_3599", results)
    body = []
    for key, c in now["contenders"].items():
        if "same_codec" not in c:
            continue
        old = before["contenders"].get(key)
        cells = [f"{f3(_auc(c, k))} ({f3(_auc(old, k))})" for k in ("same_codec", "as_is")]
        run = now.get("from_earlier_run", {}).get(key)
        body.append([WILD_WORDS.get(key, key) + (f" (measured {run['date']})" if run else ""), *cells])
    header = [f"contender ({now['images']:,} images; in brackets: {before['images']:,})",
              "same codec AUC (headline)", "as is AUC"]
    return table(header, body)


PHOTOREAL_CONDITIONS = (("same_size", "same size (512 px, JPEG q90)"), ("native_512", "native 512 px crops"),
                        ("as_is", "as stored"))


def photoreal(results: Path) -> str:
    """docs/wild.md: every contender on the photoreal slice, and on its content-matched part."""
    p = load("wild", results)["photoreal"]
    header = ["contender"] + [f"{words} AUC" for _, words in PHOTOREAL_CONDITIONS] + ["content-matched, same size"]
    body = [[WILD_WORDS.get(key, key)] + [f3(_auc(c, k)) for k, _ in PHOTOREAL_CONDITIONS]
            + [f3(_auc(p["content_matched"].get(key), "same_size"))] for key, c in p["contenders"].items()]
    return table(header, body)


CONTENT_ONLY = "content only (32 px thumbnail, same probe)"


def photoreal_content(results: Path) -> str:
    """docs/wild.md: the bundled recipe and the content-only baseline within each content tag (same size)."""
    p = load("wild", results)["photoreal"]
    recipe = p["contenders"][wild_recipe()]["same_size"]["per_content"]
    baseline = p["contenders"].get(CONTENT_ONLY, {}).get("same_size", {}).get("per_content", {})
    body = [[tag, f"{c['n_real']:,}", f"{c['n_fake']:,}", f3(c["auc"]), f3(baseline.get(tag, {}).get("auc"))]
            for tag, c in recipe.items()]
    return table(["content", "REAL", "FAKE", "the bundled recipe's AUC", "content-only AUC"], body)


def photoreal_families(results: Path) -> str:
    """docs/wild.md: the bundled recipe per generator family (each family's FAKE images against every REAL
    image), weakest first."""
    families = load("wild", results)["photoreal"]["contenders"][wild_recipe()]["same_size"]["per_family"]
    body = [[name, str(f["n"]), f3(f["auc_vs_other_class"]), f"{100 * f['fake_recall']:.0f}%"]
            for name, f in sorted(families.items(), key=lambda kv: kv[1]["auc_vs_other_class"]) if name != "REAL"]
    return table(["generator family", "FAKE images", "AUC against the REAL images", "FAKE caught"], body)


def service(results: Path) -> str:
    """docs/results/cifake.md: the web service under load, then under each hostile case per bundled model."""
    load_, hostile = load("load", results), load("load_hostile", results)
    body = [[f"{load_['clients']} clients, {load_['seconds']:.0f} s, real CIFAKE JPEGs", "`cifake`",
             f"{load_['requests']:,} requests, {load_['correct']:,} correct, "
             f"{load_['failed_or_wrong']} failed or wrong",
             f"{load_['requests_per_s']:.0f} requests/s, latency p50 {load_['latency_ms_p50']:.0f} ms, "
             f"p99 {load_['latency_ms_p99']:.0f} ms"]]
    for model, run in hostile["models"].items():
        for case in run["cases"]:
            statuses = ", ".join(f"{n} x {status}" for status, n in case["requests"].items()) or "none but the attack's"
            body.append([f"hostile: {case['case']} ({case['seconds']:.0f} s)", f"`{model}`",
                         f"requests {statuses}; HTTP 500: {case['http_500']}; normal requests 200 within 5 s: "
                         f"{case['normal_200_within_5s']:.0%} (p99 {case['normal_p99_s']:.2f} s)",
                         f"RSS {case['rss_before_mb']:,} MB -> peak **{case['peak_rss_mb']:,} MB** -> "
                         f"{case['rss_after_mb']:,} MB; spool at most {case['peak_spool_mb']:.0f} MB"])
    return table(["load", "model", "answered", "memory"], body)


# name -> (the function that builds the table, the results files it reads)
TABLES: dict[str, tuple[Callable[[Path], str], tuple[str, ...]]] = {
    "headline": (headline, ("cifake", "cifake_ensembles", "wild", "wild_external")),
    "cifake": (cifake, ("cifake", "cifake_ensembles")),
    "inference": (inference, ("inference",)),
    "robustness": (robustness, tuple(name for _, name in ROBUSTNESS)),
    "domain": (domain, ("domain",)),
    "wild": (wild, ("wild", "wild_3599")),
    "photoreal": (photoreal, ("wild",)),
    "photoreal_content": (photoreal_content, ("wild",)),
    "photoreal_families": (photoreal_families, ("wild",)),
    "service": (service, ("load", "load_hostile")),
}


def render_file(text: str, depth: int, results: Path = RESULTS) -> str:
    """`text` (a page `depth` folders below the repository root) with every marked table rewritten; an
    unknown or unclosed marker is an error."""
    closed = {m.group("name") for m in MARKER.finditer(text)}
    for name in OPEN.findall(text):
        if name not in TABLES:
            raise SystemExit(f"error: unknown table <!-- render:{name} --> (known: {', '.join(TABLES)})")
        if name not in closed:
            raise SystemExit(f"error: <!-- render:{name} --> has no <!-- /render:{name} -->")

    def block(m: re.Match) -> str:
        build, names = TABLES[m.group("name")]
        return m.group(1) + build(results) + source(names, depth, results) + m.group(4)

    return MARKER.sub(block, text)


def documents(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing them")
    args = ap.parse_args(argv)
    wanted = {path: render_file(path.read_text(), len(path.relative_to(ROOT).parts) - 1) for path in documents()}
    wanted[RESULTS / "README.md"] = results_index.render()
    stale = [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date: run python benchmarks/render.py", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path])
        print(f"rewrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
