"""`aivsreal predict`: label files, folders and globs, streaming rows to stdout, CSV and JSON."""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from aivsreal.data.images import is_image_name
from aivsreal.errors import AivsrealError
from aivsreal.predict.batch import score_paths, score_to_csv
from aivsreal.predict.detector import Detector

log = logging.getLogger(__name__)


def expand_inputs(inputs: list[str]) -> Iterator[str]:
    """Files as given, folders walked recursively for images, globs expanded; lazily, for big folders."""
    for item in inputs:
        if os.path.isdir(item):
            for dirpath, dirnames, names in os.walk(item):
                dirnames.sort()
                for n in sorted(names):
                    if is_image_name(n):
                        yield os.path.join(dirpath, n)
        elif os.path.exists(item):
            yield item
        elif glob.has_magic(item):
            matches = sorted(glob.iglob(item, recursive=True))
            if not matches:
                raise AivsrealError(f"no files match {item}")
            yield from (m for m in matches if os.path.isfile(m))
        else:
            raise AivsrealError(f"no such file or folder: {item}")


def predict_files(det: Detector, inputs: list[str], csv_path: str | None = None, json_path: str | None = None,
                  resume: bool = False, batch_size: int = 256, workers: int | None = None,
                  quiet: bool = False) -> int:
    """Print (unless quiet) and write one row per input; returns the exit code (1 if nothing was readable)."""
    if resume and not csv_path:
        raise AivsrealError("--resume needs --csv: it skips the files already in that CSV")
    paths = expand_inputs(inputs)
    if csv_path:
        preds = score_to_csv(det, paths, Path(csv_path), resume, batch_size, workers)
    else:
        preds = score_paths(det, paths, batch_size, workers)
    json_out = open(json_path, "w") if json_path else None
    total = failed = 0
    if not quiet:
        print("path\tlabel\tp_fake")
    try:
        for pred in preds:
            total += 1
            failed += pred.error is not None
            if not quiet:
                print(f"{pred.source}\tERROR\t{pred.error}" if pred.error
                      else f"{pred.source}\t{pred.label}\t{pred.p_fake:.4f}")
            if json_out:
                json_out.write(("[\n" if total == 1 else ",\n") + json.dumps(asdict(pred)))
    finally:
        if json_out:
            json_out.write("\n]\n" if total else "[]\n")
            json_out.close()
    if failed:
        log.warning("%d of %d input(s) could not be read", failed, total)
    return 1 if failed and failed == total else 0
