"""Which scale should a photoreal detector read a large photo at? (issue 50, "scale on purpose")

The shipped `wild` detector reads a photo at one scale: shorter side resized to 512 px, then 2x2
tiles of 224 px. A 12 MP photo is shrunk 6x on the way, and its sensor noise with it; read at native
resolution instead, four 224 px tiles show 1/60 of it, perhaps a corner of sky. This benchmark
compares the policies on the images where the choice matters: the photoreal slice's images whose
shorter side is at least LARGE px (REAL and FAKE alike), the locked external sources left out.

Every policy is the bundled recipe (a logistic regression on frozen ImageNet EfficientNet-Lite2
features, C by inner group CV), trained and tested on the same view under group k-fold over sources
(evaluate/folds.py), and every view is re-encoded the same way (JPEG q90), so codec and stored size
do not separate the classes:

- native tiles: a 448 px centre crop at native resolution, 2x2 tiles (wild.py's `same_codec`);
- 512 px: shorter side to 512, centre 512 crop, 2x2 tiles (wild.py's `same_size`, the headline);
- 1024 px: shorter side to 1024, centre 1024 crop, 4x4 tiles of 224 px (this script's own features);
- 512 + 1024 pooled: the mean logit of the two probes above;
- the content-only baseline (32 px thumbnail, same probe) on the same images, for reference.

    python benchmarks/wild_scales.py --wild ~/wild --labels ../shared/data/wild/labels.csv \\
        benchmarks/wild_extra/labels.csv --add benchmarks/photoreal/labels.csv

It reads wild.py's Lite2 feature cache (run wild.py first) and adds its 1024 px features beside it.
Results: benchmarks/results/wild_scales.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import wild  # noqa: E402  (benchmarks/wild.py: labels, features, probes, summaries)

from aivsreal.data.crops import tiles  # noqa: E402
from aivsreal.data.images import decode_native, read_limited  # noqa: E402
from aivsreal.evaluate.conditions import decode_jpeg, same_size  # noqa: E402
from aivsreal.evaluate.folds import source_folds  # noqa: E402
from aivsreal.report.provenance import provenance  # noqa: E402

LARGE = 1024  # px, shorter side: the images a scale policy can matter for
WIDE, WIDE_TILES = 1024, 16  # the second scale and its tiles (4x4 of 224 px: 896 px of 1024 seen)
RESULTS = Path(__file__).parent / "results"
POLICIES = {"native tiles (448 px centre crop, 2x2 tiles)": "same_codec",
            "512 px reduction, 2x2 tiles (shipped)": "same_size",
            f"{WIDE} px reduction, 4x4 tiles": "wide"}
POOLED = "512 + 1024 px pooled (mean logit)"


def wide_features(rows: list[dict], root: Path, cache: Path) -> tuple[np.ndarray, float]:
    """(N, D) Lite2 features of each image's WIDE px reduction (WIDE_TILES tiles, averaged), and the
    seconds they took (cached ones included); cached by relpath, computed for the images the cache lacks."""
    have: dict[str, np.ndarray] = {}
    seconds = 0.0
    if cache.exists():
        stored = np.load(cache)
        have = dict(zip(map(str, stored["relpaths"]), stored["features"], strict=True))
        seconds = float(stored["seconds"]) if "seconds" in stored else 0.0
    missing = [r for r in rows if r["relpath"] not in have]
    if missing:
        model = wild.build_model(wild.default_config(wild.PROBES["lite2"]), pretrained=True).eval()
        started = time.time()
        for i, row in enumerate(missing, 1):
            px = decode_native(read_limited(root / row["relpath"]))
            views = tiles(decode_jpeg(same_size(px, WIDE)), wild.CROP, WIDE_TILES)
            have[row["relpath"]] = wild.embed(model, views).mean(0)
            if i % 200 == 0 or i == len(missing):
                print(f"{WIDE} px features {i}/{len(missing)}, {time.time() - started:.0f} s", flush=True)
                total = seconds + time.time() - started
                np.savez(cache, relpaths=np.array(list(have)), features=np.stack(list(have.values())),
                         seconds=np.array(total))
        seconds = total  # the last image always saves
    return np.stack([have[r["relpath"]] for r in rows]), seconds


def held_out(feats: np.ndarray, labels: np.ndarray, folds: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """P(fake) of each image from the probe of the fold that held its source out (one view per image)."""
    views = {"view": feats[:, None], "test": feats}
    return wild.cross_validate(views, labels, folds, "view", sources, conditions=("test",))[0]["test"]


def markdown(r: dict) -> str:
    lines = ["# Which scale to read a large photo at (issue 50)", "",
             f"Measured {r['date']}: `{r['command']}` ({r['machine']}). The photoreal slice's images with a "
             f"shorter side of at least {LARGE} px, locked external sources left out: {r['n_real']} REAL, "
             f"{r['n_fake']} FAKE from {r['n_sources']} sources, group {r['folds']}-fold over sources. Every "
             "policy is the shipped recipe (Lite2 probe) trained and tested on its own view; every view re-encoded "
             "as JPEG q90 (benchmarks/wild_scales.py's docstring).", "",
             "| policy | AUC | size-matched AUC | content-matched AUC | accuracy at 0.5 | "
             + " | ".join(r["content_tags"]) + " |", "|---|---|---|---|---|" + "---|" * len(r["content_tags"])]
    for name, s in r["policies"].items():
        tags = [wild.fmt(s["per_content"].get(t, {}).get("auc")) for t in r["content_tags"]]
        lines.append(f"| {name} | {wild.fmt(s['pooled_auc'])} | {wild.fmt(s['size_matched_auc'])} | "
                     f"{wild.fmt(s['content_matched_auc'])} | {s['pooled_accuracy']:.3f} | {' | '.join(tags)} |")
    lines += ["", "Size-matched: within each of 10 quantile bins of the stored shorter side, as many REAL as FAKE "
              f"({r['size_matched_n']} of each): a native crop shows less of a larger image, so it too carries the "
              "stored size. Content-matched: the same on the content-only baseline's held-out score "
              f"({r['content_matched_n']} of each). Per content tag: REAL of that tag against FAKE of it (n in the "
              "JSON); '–' where a class is missing.", "",
              f"{r['minutes']} minutes this run; the {WIDE} px features took {r['wide_minutes']} minutes when computed "
              "(cached in benchmarks/runs/)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    wild.data_args(ap)
    args = ap.parse_args()
    started = time.time()
    root = Path(args.wild).expanduser()
    external = wild.read_sources(args.external)
    rows = [r for r in wild.read_labels(args.labels + args.add, wild.read_content(args.content))
            if r["source"] not in external]
    rows = [r for r, photoreal in zip(rows, wild.photoreal_mask(rows), strict=True)
            if photoreal and min(int(r["width"]), int(r["height"])) >= LARGE]
    labels = np.array([int(r["cls"] == "FAKE") for r in rows])
    sources = np.array([r["source"] for r in rows])
    lite2 = wild.features_for(rows, root, wild.feature_cache(Path(args.cache), "lite2"), wild.PROBES["lite2"])
    wide, wide_seconds = wide_features(rows, root, Path(args.cache).with_name(f"wild_scales_lite2_{WIDE}.npz"))
    feats = {"same_codec": lite2["same_codec"], "same_size": lite2["same_size"], "thumb": lite2["thumb"],
             "wide": wide}
    folds = source_folds(list(sources), labels)
    p = {name: held_out(feats[view], labels, folds, sources) for name, view in POLICIES.items()}
    shipped, wide_p = p["512 px reduction, 2x2 tiles (shipped)"], p[f"{WIDE} px reduction, 4x4 tiles"]
    p[POOLED] = wild.mean_logit(shipped, wide_p)
    p[wild.CONTENT_BASELINE] = held_out(feats["thumb"], labels, folds, sources)
    everything = np.ones(len(rows), bool)
    by_size = wild.matched(np.log([min(int(r["width"]), int(r["height"])) for r in rows]), labels, everything)
    by_content = wild.matched(p[wild.CONTENT_BASELINE], labels, everything)
    policies = {name: {**wild.summarise(ps, labels, rows),
                       "size_matched_auc": wild.summarise(ps, labels, rows, by_size)["pooled_auc"],
                       "content_matched_auc": wild.summarise(ps, labels, rows, by_content)["pooled_auc"]}
                for name, ps in p.items()}
    result = {"provenance": provenance().to_dict(), "date": datetime.now(UTC).strftime("%Y-%m-%d"),
              "command": "python benchmarks/wild_scales.py " + " ".join(sys.argv[1:]),
              "machine": f"{torch.get_num_threads()} threads, CPU", "large_px": LARGE,
              "n_real": int((labels == 0).sum()), "n_fake": int(labels.sum()), "n_sources": len(set(sources)),
              "folds": int(folds.max() + 1),
              "content_tags": sorted({t for s in policies.values() for t, c in s["per_content"].items()
                                      if c["n_real"] and c["n_fake"]}),
              "size_matched_n": int(by_size.sum() // 2), "content_matched_n": int(by_content.sum() // 2),
              "policies": policies, "views": POLICIES, "wide_minutes": round(wide_seconds / 60, 1),
              "minutes": round((time.time() - started) / 60, 1)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "wild_scales.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "wild_scales.md").write_text(markdown(result))
    print((RESULTS / "wild_scales.md").read_text())


if __name__ == "__main__":
    main()
