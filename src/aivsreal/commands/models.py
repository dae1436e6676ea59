"""`aivsreal models`: the detectors that come with the package, and their cards."""

from __future__ import annotations

from aivsreal.models.card import card_of, number_cell
from aivsreal.models.hub import DEFAULT_MODEL, bundled_names, load_model, resolve_model


def describe_models() -> str:
    """One row per bundled detector: what it was trained on, how well it did, where it can be trusted."""
    rows = ["| name | model | trained on | test accuracy | test AUC | domain (shorter side) | size | status |",
            "|---|---|---|---|---|---|---|---|"]
    for name in bundled_names():
        source = resolve_model(name)
        network, meta = load_model(source)
        test = meta.summary.get("metrics", {}).get("test", {})
        data = meta.summary.get("data", {})
        size = sum(f.stat().st_size for f in source.path.iterdir() if f.is_file())
        domain = f"{meta.domain.describe_sizes()} px" if meta.domain else "unchecked"
        rows.append(f"| {name}{' (default)' if name == DEFAULT_MODEL else ''} | {network.config.name} | "
                    f"{meta.summary.get('trained_on', data.get('path', '?'))} | {number_cell(test.get('accuracy'))} | "
                    f"{number_cell(test.get('roc_auc'))} | {domain} | {size / 2**20:.1f} MB | "
                    f"{'**experimental**: ' + meta.experimental if meta.experimental else '–'} |")
    if len(rows) == 2:
        rows.append("| (none installed) | | | | | | | |")
    return "\n".join(rows) + "\n\n`aivsreal models NAME` prints a detector's model card."


def show_card(ref: str) -> str:
    """The card stored with a detector, or one made from a model file's own metadata."""
    source = resolve_model(ref)
    network, meta = load_model(source)
    return card_of(source, network.config, meta)

