r"""Score folders of any size: parallel decode, bounded memory, resumable CSV output.

Paths stream in (a generator over os.walk: the full list is never held), are decoded by a
process pool one window at a time, scored in batches, and each row is written and flushed
as soon as it is known. With `resume`, paths already in the CSV are skipped, so a killed
job over a million files picks up where it stopped.

Text cells are escaped so that any file name survives the round trip and every row is one line
(a torn last row is then always the last line): a backslash is written `\\`, a newline `\n`, a
carriage return `\r`, a tab `\t`, and a byte of a name that is not UTF-8 `\xNN` (Python's
surrogateescape, os.fsdecode); the CSV itself stays valid UTF-8. A cell that starts with
= + - @ or ' gets one more leading ' (the spreadsheet-formula guard). `--resume` reads the cells
back through the exact inverse, so what was written is what is skipped.
"""

from __future__ import annotations

import csv
import itertools
import multiprocessing
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path

from tqdm import tqdm

from aivsreal.data.images import BadImageError
from aivsreal.data.inputs import resolved
from aivsreal.errors import AivsrealError
from aivsreal.predict.detector import DecodedInput, Detector, Prediction

CSV_FIELDS = ["path", "label", "p_fake", "error", "in_domain", "domain_score", "domain_reason"]


def decode_path(path: str, read: Callable[[str], tuple]) -> DecodedInput:
    """One file as the model reads it (`read`: its detector's `view_reader`); an unreadable one carries
    its error (every engine decodes here)."""
    try:
        return DecodedInput(path, *read(path))
    except BadImageError as e:
        return DecodedInput(path, None, error=str(e))


def already_scored(csv_path: Path) -> set[str]:
    """Resolved paths already in the CSV; a torn last line (power loss, full disk) is cut off first."""
    if not csv_path.exists():
        return set()
    truncate_torn_line(csv_path)
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames and reader.fieldnames != CSV_FIELDS:
            raise AivsrealError(f"{csv_path} has the columns {','.join(reader.fieldnames)}, not this version's "
                                f"{','.join(CSV_FIELDS)}: resume into the CSV of a run of this version, or "
                                "start a new one")
        return {resolved(read_cell(row["path"])) for row in reader if row.get("path")}


def csv_row(pred: Prediction) -> list[str]:
    return [write_cell(pred.source), pred.label or "", "" if pred.p_fake is None else f"{pred.p_fake:.6f}",
            write_cell(pred.error or ""), "" if pred.in_domain is None else str(pred.in_domain).lower(),
            "" if pred.domain_score is None else f"{pred.domain_score:.4f}", write_cell(pred.domain_reason or "")]


def truncate_torn_line(path: Path) -> None:
    """Cut a file back to its last newline, so appended rows never merge with half a row."""
    with open(path, "rb+") as f:
        size = f.seek(0, 2)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        block = min(size, 1 << 20)
        f.seek(size - block)
        tail = f.read(block)
        cut = tail.rfind(b"\n")
        f.truncate(size - block + cut + 1 if cut >= 0 else 0)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
GUARDED = (*FORMULA_START, "'")  # a leading ' is guarded too, so that the guard can always be taken off
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNESCAPE = re.compile(r"\\(\\|n|r|t|x[89a-fA-F][0-9a-fA-F])")
_UNESCAPES = {code[1]: ch for ch, code in _ESCAPES.items()}  # the inverse, keyed by the letter after the backslash


def escaped(text: str) -> str:
    """A file name (or message) on one line of valid UTF-8, reversibly: backslash, newline, CR and tab
    as \\\\ \\n \\r \\t, a byte that is not UTF-8 (a surrogateescape surrogate) as \\xNN."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(ch)
    return "".join(out)


def unescaped(text: str) -> str:
    """The inverse of `escaped`; a backslash not followed by an escape is kept (CSVs of older versions)."""
    def one(m: re.Match) -> str:
        code = m.group(1)
        if code[0] == "x":
            return chr(0xDC00 + int(code[1:], 16))
        return _UNESCAPES[code]
    return _UNESCAPE.sub(one, text)


def safe_cell(text: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula (OWASP CSV injection): a leading ' when
    it starts with = + - @ tab or CR, or with ' itself (so that reading it back can always drop one)."""
    return "'" + text if text.startswith(GUARDED) else text


def unsafe_cell(text: str) -> str:
    return text[1:] if text.startswith("'") and text[1:].startswith(GUARDED) else text


def write_cell(text: str) -> str:
    """A text cell as written to the CSV: escaped, then guarded; `read_cell` is its exact inverse."""
    return safe_cell(escaped(text))


def read_cell(cell: str) -> str:
    return unescaped(unsafe_cell(cell))


def score_paths(det: Detector, paths: Iterable[str], batch_size: int = 256,
                workers: int | None = None) -> Iterator[Prediction]:
    """Predictions in input order; decoding runs `workers` processes ahead, one window at a time."""
    workers = workers or os.cpu_count() or 1
    window = max(det.window(batch_size * 4), 2 * workers)  # bounded memory: views, not images
    decode = partial(decode_path, read=det.view_reader)
    pool = None
    if workers > 1:
        methods = multiprocessing.get_all_start_methods()
        pool = multiprocessing.get_context("fork" if "fork" in methods else "spawn").Pool(workers)
    try:
        it = iter(paths)
        while chunk := list(itertools.islice(it, window)):
            decoded = pool.map(decode, chunk, chunksize=min(16, -(-len(chunk) // (2 * workers)))) if pool \
                else [decode(p) for p in chunk]
            yield from det.score_decoded(decoded, batch_size)
    finally:
        if pool:
            pool.terminate()


def score_to_csv(det: Detector, paths: Iterable[str], csv_path: Path, resume: bool = False,
                 batch_size: int = 256, workers: int | None = None) -> Iterator[Prediction]:
    """`score_paths`, writing each row to `csv_path` as it comes (appending when resuming)."""
    skip = already_scored(csv_path) if resume else set()
    todo = (p for p in paths if resolved(p) not in skip)
    new_file = not (resume and csv_path.exists())
    with open(csv_path, "w" if new_file else "a", newline="") as f:
        writer = csv.writer(f)
        if new_file:
            writer.writerow(CSV_FIELDS)
        bar = tqdm(unit="img", desc="scoring", disable=not sys.stderr.isatty())
        for pred in score_paths(det, todo, batch_size, workers):
            writer.writerow(csv_row(pred))
            f.flush()
            bar.update()
            yield pred
        bar.close()
