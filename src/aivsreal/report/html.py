"""`report.html`: one self-contained file (every plot embedded) to send to a colleague.

It renders what `aivsreal report` computed: metrics.json's summary, the PNG files under the
report folder, the robustness rows and the Grad-CAM examples. Nothing is fetched when it is
opened: no scripts, no fonts, no external images.
"""

from __future__ import annotations

import base64
import html
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aivsreal import __version__
from aivsreal.evaluate.robustness import RobustnessRow
from aivsreal.report.markdown import COLUMNS, SEED, format_cell

CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#1d2330}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #d8dde6;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d8dde6;padding:.25em .6em;text-align:right}th{background:#f3f5f9}
td:first-child,th:first-child{text-align:left}tr.seed td{color:#6b7385;font-style:italic}
.muted{color:#6b7385}.cards{display:flex;gap:1em;flex-wrap:wrap}
.card{border:1px solid #d8dde6;border-radius:8px;padding:.6em 1em;min-width:150px}
.card b{display:block;font-size:1.5em}
figure{margin:.8em 0}figure img{max-width:100%;border:1px solid #eef0f4}
figcaption{font-size:.85em;color:#6b7385}.row{display:flex;flex-wrap:wrap;gap:.8em}
.gallery figure{width:336px;margin:0}.gallery img{width:328px}
code{background:#f3f5f9;padding:0 .25em;border-radius:3px}
"""


@dataclass
class CamExample:
    """One Grad-CAM panel: the image file (side by side with its overlay) and what it shows."""

    png: Path
    source: str
    true_label: str
    predicted: str
    p_fake: float
    domain_score: float | None = None  # the feature score (> 1: unlike the training images), if the model has one


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _img(png: Path, alt: str) -> str:
    return f'<img src="{data_uri(png)}" alt="{html.escape(alt)}">'


def _figure(png: Path, caption: str) -> str:
    return f"<figure>{_img(png, caption)}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _num(value: Any) -> str:
    if isinstance(value, float) and value != value:  # NaN: AUC of a one-class split
        return "–"
    return html.escape(format_cell(value))


def table(header: list[str], rows: list[list[Any]], row_class: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_class[i]}"' if row_class and row_class[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_num(v)}</td>" for v in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _metrics_section(summary: dict[str, Any]) -> str:
    metrics = summary["metrics"]
    rows = [[split, *(m.get(c) for c in COLUMNS)] for split, m in metrics.items()]
    classes = [""] * len(rows)
    for split in ("train", "test"):
        rows.append([f"{split}: {SEED['name']}", *(SEED[split].get(c) for c in COLUMNS)])
        classes.append("seed")
    out = [table(["split", *COLUMNS], rows, classes)]
    per_class = metrics.get("test", {}).get("per_class", {})
    if per_class:
        out.append("<p>Per class on test (each class as the positive one):</p>")
        out.append(table(["class", "images", "predicted as it", "precision", "recall"],
                         [[c, pc["count"], pc["predicted"], pc["precision"], pc["recall"]]
                          for c, pc in per_class.items()]))
    return "".join(out)


def _calibration_section(summary: dict[str, Any], folder: Path) -> str:
    t = summary.get("temperature", 1.0)
    parts = []
    if t != 1.0:
        parts.append(f"<p>Temperature scaling fitted on the validation split: T = {t:.4f} "
                     "(P(FAKE) = sigmoid(logit / T)). ECE before and after:</p>")
        parts.append(table(["split", "ECE before", "ECE after"],
                           [[s, m.get("ece_before_temperature"), m.get("ece")]
                            for s, m in summary["metrics"].items() if "ece_before_temperature" in m]))
    else:
        parts.append("<p>No temperature scaling stored with this model (<code>--calibrate</code> fits one on "
                     "the validation split). ECE (15 equal-width bins on P(FAKE)) is in the metrics table.</p>")
    op = summary.get("operating_point")
    if op:
        parts.append(f"<p>Operating point chosen on the validation split for <b>{html.escape(op['target'])}</b> "
                     f"(FAKE flagged = positive): threshold {op['threshold']:.4f}.</p>")
        parts.append(table(["split", "precision of FAKE flags", "FAKE recall", "REAL flagged (FPR)"],
                           [[s, op[s]["precision"], op[s]["recall"], op[s]["fpr"]] for s in ("val", "test")]))
    png = folder / "plots/reliability.png"
    if png.exists():
        parts.append(_figure(png, "Reliability diagram and histogram of P(FAKE) on the test split"))
    return "".join(parts)


def _robustness_section(rows: list[RobustnessRow], folder: Path) -> str:
    body = [[r.label, r.n, r.accuracy, r.change_from(rows[0]), r.roc_auc, r.fake_recall, r.real_flagged]
            for r in rows]
    return (f"<p>The test images (n = {rows[0].n:,}), perturbed, scored at the model's threshold.</p>"
            + table(["perturbation", "images", "accuracy", "change", "AUC", "FAKE recall", "REAL flagged"], body)
            + _figure(folder / "plots/robustness.png", "Test accuracy per perturbation strength"))


def _gradcam_section(groups: dict[str, list[CamExample]], layer: str) -> str:
    parts = [f"<p>Each pair: the image (enlarged, pixels kept square) and its Grad-CAM map for the predicted "
             f"class, taken at layer <code>{html.escape(layer)}</code>. Red: regions that pushed the model "
             "towards its verdict.</p>"]
    for title, examples in groups.items():
        parts.append(f"<h3>{html.escape(title)}</h3>")
        if not examples:
            parts.append('<p class="muted">none</p>')
            continue
        figs = [f"<figure>{_img(e.png, e.source)}<figcaption>{html.escape(Path(e.source).name)}: true "
                f"{e.true_label}, predicted {e.predicted}, P(FAKE) {e.p_fake:.4f}{_domain_note(e)}</figcaption>"
                "</figure>" for e in examples]
        parts.append(f'<div class="row gallery">{"".join(figs)}</div>')
    return "".join(parts)


def _domain_note(e: CamExample) -> str:
    if e.domain_score is None:
        return ""
    if e.domain_score > 1:
        return f"; <b>outside the training domain</b> (score {e.domain_score:.2f}): unreliable"
    return f"; in domain (score {e.domain_score:.2f})"


def render(summary: dict[str, Any], folder: Path, robustness: list[RobustnessRow],
           gradcam: dict[str, list[CamExample]], gradcam_layer: str, command: str) -> str:
    """The whole page; `folder` holds the plots/*.png that evaluation wrote."""
    model, data, train = summary["model"], summary["data"], summary.get("training", {})
    test = summary["metrics"].get("test", {})
    cards = [("test accuracy", test.get("accuracy")), ("test ROC AUC", test.get("roc_auc")),
             ("test ECE", test.get("ece")), ("test images flagged out of domain", test.get("domain_flagged"))]
    if "test (no train duplicates)" in summary["metrics"]:
        cards.insert(1, ("test accuracy, no train duplicates", summary["metrics"]["test (no train duplicates)"]
                         ["accuracy"]))
    if robustness:
        worst = min(robustness[1:], key=lambda r: r.accuracy, default=robustness[0])
        cards.append((f"worst perturbed ({worst.label})", worst.accuracy))
    s = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>aivsreal report: {model['name']}"
         f"</title><meta name=viewport content='width=device-width,initial-scale=1'><style>{CSS}</style></head><body>",
         f"<h1>aivsreal report: <code>{html.escape(model['name'])}</code></h1>",
         f"<p class=muted>Data {html.escape(str(data['path']))}. Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC} "
         f"by aivsreal {__version__} on {platform.machine()} ({html.escape(str(summary.get('device', 'cpu')))}). "
         f"Command: <code>{html.escape(command)}</code></p>",
         '<div class="cards">' + "".join(f"<div class=card><b>{_num(v)}</b>{html.escape(k)}</div>" for k, v in cards)
         + "</div>",
         "<h2>Metrics</h2>",
         f"<p><b>Positive class: REAL</b>, as in the seed notebook; the model outputs P(FAKE) and calls an image "
         f"FAKE when P(FAKE) &ge; {summary['threshold']:.4f}"
         + (" (averaged with the mirrored image)." if summary.get("tta") else ".") + "</p>",
         _metrics_section(summary)]
    notes = data.get("notes", [])
    if notes:
        s.append("<p>Data notes:</p><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    s.append("<h2>Confusion matrices</h2><div class=row>")
    s += [_figure(p, p.stem.replace("_", " ")) for p in sorted((folder / "plots").glob("confusion_*.png"))]
    s.append("</div><h2>ROC and precision-recall</h2>" + _figure(folder / "plots/roc_pr.png", "REAL positive"))
    curves = folder / "plots/training_curves.png"
    if curves.exists():
        s.append("<h2>Training</h2>" + _figure(curves, "Loss and accuracy per epoch"))
        if train:
            s.append(f"<p>{train['epochs_run']} epochs in {train['seconds']:.0f} s; best epoch "
                     f"{train['best_epoch']}; {model.get('params', 0):,} parameters.</p>")
    s.append("<h2>Calibration</h2>" + _calibration_section(summary, folder))
    if robustness:
        s.append("<h2>Robustness</h2>" + _robustness_section(robustness, folder))
    if gradcam:
        s.append("<h2>Grad-CAM: most confident right and wrong predictions</h2>"
                 + _gradcam_section(gradcam, gradcam_layer))
    s.append("</body></html>")
    return "\n".join(s)
