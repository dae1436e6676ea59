"""Model cards: what a detector was trained on, how well it did, and where it must not be trusted.

Every shared detector (a bundled one, an `export --format hf` folder, a Hub repo) carries one as
README.md, in the Hugging Face card layout (YAML front matter, then Markdown). The facts come from
the model's own metadata, so a card cannot drift from its weights; `extra` adds what only a
person knows (licences, failure modes seen by hand).
"""

from __future__ import annotations

from typing import Any

from aivsreal.models.file import ModelMeta, experimental_notice
from aivsreal.models.hub import ModelSource
from aivsreal.models.network import ModelConfig

SPLITS = ("train", "val", "test", "test (no train duplicates)")


def model_card(name: str, config: ModelConfig, meta: ModelMeta, extra: str = "") -> str:
    s = meta.summary
    data, training, model = s.get("data", {}), s.get("training", {}), s.get("model", {})
    metrics = s.get("metrics", {})
    lines = ["---", "library_name: aivsreal", "tags: [image-classification, ai-generated-image-detection]",
             "---", "", f"# `{name}`: a `{config.name}` detector", ""]
    if meta.experimental:
        lines += [experimental_line(meta.experimental), ""]
    params = model.get("params")
    lines += [f"- Architecture: `{config.name}`" + (f", {params / 1e6:.2f}M parameters" if _is_num(params) else "")
              + f"; input {config.image_size}x{config.image_size} RGB; output P(FAKE).",
              f"- Trained on: `{data.get('path', 'unknown')}` ({data.get('train', '?')} train, {data.get('val', '?')} "
              f"val, {data.get('test', '?')} test images; split seed {data.get('seed', '?')}).",
              f"- Threshold {meta.threshold:.4f}, temperature {meta.temperature:.4f}, flip-TTA "
              f"{'on' if meta.tta else 'off'}; aivsreal {meta.aivsreal_version}."]
    members = s.get("ensemble", {}).get("members") if isinstance(s.get("ensemble"), dict) else None
    if isinstance(members, list):
        lines.append("- Soft vote (mean P(FAKE)) of: " + "; ".join(
            f"`{m.get('name')}` ({m.get('model')}, test accuracy {number_cell(m.get('test', {}).get('accuracy'))})"
            for m in members if isinstance(m, dict)) + ".")
    cfg = training.get("config")
    if cfg:
        lines.append(f"- Recipe: {training.get('epochs_run', '?')} epochs of {cfg.get('optimizer')} "
                     f"lr {cfg.get('lr')}, batch {cfg.get('batch_size')}, {cfg.get('schedule')} schedule, best epoch "
                     f"{training.get('best_epoch', '?')}, {_minutes(training.get('seconds'))} min on "
                     f"{s.get('device', '?')}.")
    if metrics:
        lines += ["", "## Metrics (REAL is the positive class for precision/recall)", "",
                  "| split | n | accuracy | precision | recall | ROC AUC | flagged out of domain |",
                  "|---|---|---|---|---|---|---|"]
        for split in SPLITS:
            m = metrics.get(split)
            if isinstance(m, dict):
                cells = [number_cell(m.get(k)) for k in ("accuracy", "precision", "recall", "roc_auc")]
                lines.append(f"| {split} | {m.get('n') if _is_num(m.get('n')) else '–'} | " + " | ".join(cells)
                             + f" | {_pct(m.get('domain_flagged'))} |")
    lines += ["", "## Domain: where its verdicts can be trusted", ""]
    if meta.domain:
        d = meta.domain
        lines += [f"- Images whose shorter side is {d.describe_sizes()} px as stored "
                  f"(up to 2x either way is accepted) and aspect up to {d.aspect[1]:.2f}:1.",
                  f"- Penultimate features within the distance that {d.describe_threshold()} stay within "
                  f"(class-conditional Mahalanobis; {d.val_flagged:.1%} of validation flagged).",
                  "- Every verdict carries `in_domain`, `domain_score` (> 1 is out) and a reason; treat a verdict "
                  "outside the domain as unreliable."]
    else:
        lines.append("- This model has no domain check (trained before aivsreal 0.2): verdicts on images unlike "
                     "its training data are not flagged.")
    if extra:
        lines += ["", extra.strip()]
    return "\n".join(lines) + "\n"


def card_of(source: ModelSource, config: ModelConfig, meta: ModelMeta) -> str:
    """The card stored with a detector, or one made from the model's own metadata. An experimental
    detector's card says so under its title even when the stored card was written without it."""
    card = source.card or model_card(source.name, config, meta)
    if not meta.experimental or experimental_line(meta.experimental) in card:
        return card
    lines = card.split("\n")
    title = next((i for i, line in enumerate(lines) if line.startswith("# ")), -1)
    return "\n".join([*lines[: title + 1], "", experimental_line(meta.experimental), *lines[title + 1 :]])


def experimental_line(reason: str) -> str:
    return f"> **Experimental:** {experimental_notice(reason)}."


def _is_num(x: Any) -> bool:
    """A model file is data: a crafted one may hold anything where a number belongs."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def number_cell(x: Any) -> str:
    return f"{x:.4f}" if _is_num(x) else "–"


def _pct(x: Any) -> str:
    return f"{x:.1%}" if _is_num(x) else "–"


def _minutes(seconds: Any) -> str:
    return f"{seconds / 60:.1f}" if _is_num(seconds) else "?"
