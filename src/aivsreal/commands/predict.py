"""`aivsreal predict`: label images (files, folders, globs, zips, path lists, URLs: data/inputs.py), streaming rows
to stdout, CSV and JSON."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import asdict, replace
from pathlib import Path

from aivsreal.data.inputs import expand_inputs
from aivsreal.errors import AivsrealError
from aivsreal.predict.batch import escaped, score_paths, score_to_csv
from aivsreal.predict.detector import Detector, Prediction
from aivsreal.predict.spec import DetectorSpec

log = logging.getLogger(__name__)


def writable_file(path: str, flag: str) -> Path:
    """Refuse an output file whose folder is missing or read-only before any image is scored."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise AivsrealError(f"{flag} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise AivsrealError(f"{flag} {path}: not writable here")
    if target.is_dir():
        raise AivsrealError(f"{flag} {path}: is a folder, not a file")
    return target


def _previous_json(path: Path) -> list:
    """What an earlier run wrote to --json, kept on --resume (an unreadable file is refused, not lost)."""
    if not path.exists() or path.stat().st_size == 0:
        return []
    try:
        rows = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise AivsrealError(f"--json {path}: not a JSON list from an earlier run; move it away or drop "
                            "--resume") from None
    if not isinstance(rows, list):
        raise AivsrealError(f"--json {path}: not a JSON list from an earlier run")
    return rows


def domain_cell(pred: Prediction) -> str:
    if pred.in_domain is None:
        return "unknown (model has no domain check)"
    return "in" if pred.in_domain else f"OUT: {escaped(pred.domain_reason or '')}"


def predict_files(det: Detector, inputs: list[str], csv_path: str | None = None, json_path: str | None = None,
                  resume: bool = False, batch_size: int = 256, workers: int | None = None,
                  quiet: bool = False) -> int:
    """Print (unless quiet) and write one row per input; returns the exit code (1 if nothing was readable)."""
    if resume and not csv_path:
        raise AivsrealError("--resume needs --csv: it skips the files already in that CSV")
    csv_file = writable_file(csv_path, "--csv") if csv_path else None
    json_file = writable_file(json_path, "--json") if json_path else None
    earlier = _previous_json(json_file) if json_file and resume else []
    paths = expand_inputs(inputs)
    preds = score_to_csv(det, paths, csv_file, resume, batch_size, workers) if csv_file \
        else score_paths(det, paths, batch_size, workers)
    return report(preds, json_file, earlier, quiet)


def predict_on_ray(spec: DetectorSpec, inputs: list[str], out: str | None, csv_path: str | None = None,
                   address: str | None = None, actors: int = 1, batch_size: int = 256, quiet: bool = False) -> int:
    """`predict --engine ray`: Parquet shards in `out` (resumed from its manifest), the same rows and exit code."""
    from aivsreal.predict.ray_engine import import_ray, score_on_ray

    import_ray()
    if not out:
        raise AivsrealError("--engine ray needs --out DIR: the folder for the Parquet shards (a rerun with the same "
                            "folder skips what is there)")
    csv_file = writable_file(csv_path, "--csv") if csv_path else None
    replace(spec, device="cpu").load()  # a bad model is one line here, not a stack of actor failures
    return report(score_on_ray(spec, expand_inputs(inputs), out, address, actors, batch_size, csv_file), quiet=quiet)


def report(preds: Iterable[Prediction], json_file: Path | None = None, earlier: list | None = None,
           quiet: bool = False) -> int:
    """Print (unless quiet) and write to JSON each row as it comes; returns the exit code (1 if nothing was
    readable)."""
    json_out = open(json_file, "w") if json_file else None
    written = total = failed = outside = 0
    if not quiet:
        print("path\tlabel\tp_fake\tdomain")
    try:
        if json_out:
            for row in earlier or []:
                json_out.write(("[\n" if written == 0 else ",\n") + json.dumps(row))
                written += 1
        for pred in preds:
            total += 1
            failed += pred.error is not None
            outside += pred.in_domain is False
            if not quiet:
                print(f"{escaped(pred.source)}\tERROR\t{escaped(pred.error)}" if pred.error
                      else f"{escaped(pred.source)}\t{pred.label}\t{pred.p_fake:.4f}\t{domain_cell(pred)}")
            if json_out:
                json_out.write(("[\n" if written == 0 else ",\n") + json.dumps(asdict(pred)))
                written += 1
    finally:
        if json_out:
            json_out.write("\n]\n" if written else "[]\n")
            json_out.close()
    if failed:
        log.warning("%d of %d input(s) could not be read", failed, total)
    if outside:
        log.warning("%d of %d verdict(s) are on images unlike this model's training data (domain OUT): "
                    "treat them as unreliable; `aivsreal models` lists what each detector was trained on",
                    outside, total)
    return 1 if failed and failed == total else 0
