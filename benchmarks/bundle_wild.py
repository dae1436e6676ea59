"""Make the bundled `wild` detector: the best contender of benchmarks/wild.py, fitted on every source.

    python benchmarks/wild.py --wild ~/wild --labels ../shared/data/wild/labels.csv benchmarks/wild_extra/labels.csv
    python benchmarks/bundle_wild.py --wild ~/wild --labels ../shared/data/wild/labels.csv \
        benchmarks/wild_extra/labels.csv

The recipe is wild.py's BUNDLED_RECIPE, `lite2 probe (codec chain)`: frozen ImageNet EfficientNet-Lite2
features (models/lite_probe.py) of two codec-chain views per image, standardised, logistic regression with
C chosen by group cross-validation over sources. Here it is fitted on every image (its
held-out figures are wild.py's, where every score came from a fold that never saw the source), and
the classifier is folded into the network's linear head, so the detector runs everywhere a model
does (CLI, API, server, ONNX) on native 224 px tiles. The domain check is fitted on the as-is
tile features (90% of the images; its threshold on the other 10%). Writes src/aivsreal/bundled/wild/.
--external-auc is the detector's AUC on the locked external set (benchmarks/photoreal/external.txt,
scored once): below 0.80, or not given, the detector ships marked experimental
(models/file.experimental_reason), and `aivsreal models`, the card and every verdict say so.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from bundle import fp16_check
from wild import (
    BUNDLED_PROBE,
    BUNDLED_RECIPE,
    CROP,
    PROBES,
    RESULTS,
    feature_cache,
    features_for,
    inner_c,
    probe,
    read_labels,
)

from aivsreal.commands.options import SHARE
from aivsreal.data.crops import centre_crop
from aivsreal.data.images import decode_native, read_limited
from aivsreal.data.sources import stratified_split
from aivsreal.models import build_model, default_config
from aivsreal.models.card import model_card
from aivsreal.models.domain import DomainCheck
from aivsreal.models.file import ModelMeta, experimental_reason
from aivsreal.models.hub import BUNDLED, save_pretrained
from aivsreal.predict.detector import Detector

SOURCES_MD = (Path(__file__).resolve().parents[2] / "shared" / "data" / "wild" / "SOURCES.md",
              Path(__file__).resolve().parent / "wild_extra" / "README.md")
FP16_SAMPLE = 300
FAMILY = PROBES[BUNDLED_PROBE]


def licence_rows(sources_md: Path) -> list[list[str]]:
    """(source, repository @ commit, licence, REAL, FAKE) per source, from a sources table (the set's
    SOURCES.md, benchmarks/wild_extra/README.md), its header row left out."""
    rows = []
    for line in sources_md.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and re.fullmatch(r"[a-z0-9_]+", cells[0]) and cells[0] != "source":
            rows.append(cells[:5])
    return rows


def held_out_table(wild: dict) -> list[str]:
    """wild.py's source-held-out figures for this recipe: pooled, then per generator family."""
    ours = wild["contenders"][BUNDLED_RECIPE]
    shortcut = wild["contenders"]["size/format/bytes only"]
    lines = [f"Pooled AUC **{ours['same_codec']['pooled_auc']:.3f}** same codec (every test image a native 448 px "
             f"centre crop re-encoded as JPEG q90), {ours['as_is']['pooled_auc']:.3f} as stored; a classifier that "
             f"sees only width, height, format and bytes: {shortcut['same_codec']['pooled_auc']:.3f} / "
             f"{shortcut['as_is']['pooled_auc']:.3f}. Within one stored format, where compression history "
             "cannot tell the classes apart: " + "; ".join(
                 f"REAL {f} vs FAKE {f} {m['auc']:.3f} ({m['n_real']} and {m['n_fake']} files)"
                 for f, m in ours["same_codec"]["within_format"].items())
             + f". Measured {wild['date']}, `{wild['command']}`.", "",
             "| generator family (held out) | n | AUC vs all REAL, same codec | FAKE caught at 0.5 |",
             "|---|---|---|---|"]
    for family, m in ours["same_codec"]["per_family"].items():
        if family != "REAL":
            lines.append(f"| {family} | {m['n']} | {m['auc_vs_other_class']:.3f} | {m['fake_recall']:.0%} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wild", required=True, help="the extracted set (OUT of extract.sh)")
    ap.add_argument("--labels", nargs="+", required=True, help="wild.py's --labels")
    ap.add_argument("--cache", default="benchmarks/runs/wild_features.npz", help="wild.py's --cache")
    ap.add_argument("--sources", nargs="+", default=[str(p) for p in SOURCES_MD],
                    help="the sources tables with the licences (the set's SOURCES.md, wild_extra/README.md)")
    ap.add_argument("--external-auc", type=SHARE, default=None,
                    help="the AUC on the locked external set (0..1); without it the detector ships as experimental")
    args = ap.parse_args()
    root = Path(args.wild).expanduser()
    rows = read_labels(args.labels)
    labels = np.array([int(r["cls"] == "FAKE") for r in rows])
    sources = np.array([r["source"] for r in rows])
    feats = features_for(rows, root, feature_cache(Path(args.cache), BUNDLED_PROBE), FAMILY)

    c = inner_c(feats["chain"], labels, sources)
    fitted = probe(feats["chain"], labels, c)
    scaler, lr = fitted.named_steps["standardscaler"], fitted.named_steps["logisticregression"]
    network = build_model(default_config(FAMILY), pretrained=True).eval()
    network.network.set_head(lr.coef_[0], float(lr.intercept_[0]), scaler.mean_, scaler.scale_)
    with torch.no_grad():  # the folded head gives the classifier's own logits
        head = network.network.head(torch.from_numpy(feats["as_is"][:50]).float()).squeeze(1).numpy()
    assert np.allclose(head, fitted.decision_function(feats["as_is"][:50]), atol=1e-3), "head folding is wrong"

    fit, val = stratified_split(labels, 0.1, seed=0)
    sizes = np.array([(int(r["width"]), int(r["height"])) for r in rows])
    domain = DomainCheck.fit(feats["as_is"][fit], labels[fit], feats["as_is"][val], sizes[fit])
    wild = json.loads((RESULTS / "wild.json").read_text())
    held = wild["contenders"][BUNDLED_RECIPE]  # this recipe's figures, whatever wild.py's headline is
    repos = len({r["repo"] for r in rows})
    data = {"path": f"the wild development set (../shared/data/wild and benchmarks/wild_extra: {repos} public "
                    "repositories)",
            "train": len(rows), "val": 0, "test": 0, "seed": 0}
    summary = {"model": {"name": FAMILY, "config": network.config.to_dict(),
                         "params": sum(p.numel() for p in network.parameters()), "pretrained": True},
               "data": data, "training": {"recipe": f"wild.py {BUNDLED_RECIPE}, C={c} (group CV over sources)",
                                          "views_per_image": int(feats["chain"].shape[1])},
               "held_out": {"same_codec_auc": held["same_codec"]["pooled_auc"],
                            "as_is_auc": held["as_is"]["pooled_auc"]},
               "trained_on": "the wild development set (photos; ~25 generator families), native 224 px crops"}
    if args.external_auc is not None:
        summary["external"] = {"auc": args.external_auc, "sources": "benchmarks/photoreal/external.txt"}
    meta = ModelMeta(tta=False, summary=summary, domain=domain,
                     experimental=experimental_reason(args.external_auc, held["same_codec"]["pooled_auc"]))

    picks = np.random.default_rng(0).permutation(len(rows))[:FP16_SAMPLE]
    crops = np.stack([centre_crop(decode_native(read_limited(root / rows[i]["relpath"])), CROP) for i in picks])
    det = Detector.from_network(network, meta, "cpu", precision="fp32")
    fp16 = fp16_check(det, network, meta, crops, labels[picks])
    half = fp16["verdicts_changed"] == 0

    licences = [row for path in args.sources for row in licence_rows(Path(path))]
    extra = "\n".join([
        "## Held-out figures (benchmarks/results/wild.md)", "",
        f"Each figure is on sources the recipe never saw: {len(wild['folds'])} folds over the set's "
        f"{len({r['source'] for r in rows})} sources, each holding out REAL "
        "and FAKE sources. The bundled weights are then fitted on every source, so no held-out figure exists for "
        "them as such: these are the recipe's.", "", *held_out_table(wild), "",
        f"The domain check was fitted on the as-stored tile features of {len(fit):,} images and its threshold set "
        f"on the other {len(val)} (which the probe itself did see).", "",
        "## Intended use and limits", "",
        "- **Domain:** photographs and AI images of 224 px and more, read as native 224 px tiles (up to 3x3 per "
        "image, logits averaged); never resized. Smaller images are reflect-padded.",
        f"- **Not reliable enough to act on alone:** same-codec AUC {held['same_codec']['pooled_auc']:.2f} on unseen "
        "sources; it misses most StyleGAN faces and calls many real face photos FAKE (see the table above and "
        "wild.md). Use its P(fake) as one signal among others.",
        "- Its REAL training photos are mostly small ImageNet JPEGs, denoising test sets and face crops: photos "
        "from modern phones are under-represented.", "",
        "## Training data and licences", "",
        "**Several sources are non-commercial (ImageNet terms, CC BY-NC 4.0, the NVIDIA source code licence) or "
        "carry no licence file; one excludes the EU, UK and South Korea.** The weights are shared for research "
        "and evaluation; check these terms before any other use.", "",
        "| source | repository @ commit | licence | REAL | FAKE |", "|---|---|---|---|---|",
        *[f"| {' | '.join(r)} |" for r in licences], "",
        "Every image is listed, with its repository, commit, path and sha1, in `../shared/data/wild/labels.csv` "
        "and `benchmarks/wild_extra/labels.csv`; `extract.sh` beside the first rebuilds the set from either "
        "manifest.", "",
        "## Weights", "",
        f"Stored as {'fp16' if half else 'fp32'}: on {FP16_SAMPLE} centre crops fp16-rounded weights changed "
        f"{fp16['verdicts_changed']} verdicts, P(fake) by at most {fp16['max_abs_p_fake_change']:.5f}.", "",
        "## Reproduce", "", "```bash",
        wild["command"],
        "python benchmarks/bundle_wild.py " + " ".join(sys.argv[1:]), "```", "",
        f"Bundled {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, torch {torch.__version__}.",
    ])
    out = save_pretrained(BUNDLED / "wild", network, meta, model_card("wild", network.config, meta, extra), half=half)
    print(json.dumps({"out": str(out), "C": c, "fp16": fp16, "domain_val_flagged": domain.val_flagged,
                      "files": {f.name: f.stat().st_size for f in out.iterdir()}}, indent=2))


if __name__ == "__main__":
    main()
