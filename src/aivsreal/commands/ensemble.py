"""`aivsreal ensemble`: trained detectors into one model file that soft-votes (models/ensemble.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aivsreal.errors import AivsrealError
from aivsreal.models.ensemble import make_ensemble
from aivsreal.models.file import save_model
from aivsreal.models.hub import load_model, resolve_model


def ensemble_models(refs: Sequence[str], out: str | Path) -> str:
    """Write the ensemble of `refs` to `out` (a model.pt) and say what it holds and how to measure it.
    Refuses to overwrite a member: that would lose a trained model."""
    out = Path(out)
    sources = [resolve_model(ref) for ref in refs]
    if any(s.kind == "file" and s.path.resolve() == out.resolve() for s in sources):
        raise AivsrealError(f"--out {out} is one of the members: write the ensemble to a new file")
    members = []
    for source in sources:
        network, meta = load_model(source)
        members.append((source.name, network, meta))
    network, meta = make_ensemble(members)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(out, network, meta)
    names = ", ".join(f"{name} ({net.config.name})" for name, net, _ in members)
    if meta.split is None:
        how = ("the members were trained on different data or splits: evaluate it only on images none of them "
               "trained on")
    else:
        how = f"measure it on the members' own test split: aivsreal evaluate --model {out} --data DATA"
    return f"{out}: soft vote of {names}; {how}"
