"""Rebuild the wild and photoreal image sets from repository snapshots, byte for byte, checked by sha1.

    python benchmarks/photoreal/extract.py --mirror MIRROR --out ~/wild LABELS.csv [LABELS.csv ...]

MIRROR holds one bare git snapshot per repository as OWNER+NAME/repo (what `fetch` brings). Each
row of a labels file names its repository, commit, path and sha1: the blob is read at that commit
and written to OUT/<relpath>, or, for rows with a crop box "x0,y0,x1,y1", cut losslessly out of a
sample grid and saved as PNG. A file is written only when its sha1 is the one the labels file
records; a file already in OUT with the right sha1 is kept (a rerun resumes). Every row that fails
(missing snapshot or blob, wrong sha1) is one line on stderr, and the exit code is 2 if any did.
Works for ../shared/data/wild/labels.csv, benchmarks/wild_extra/labels.csv and
benchmarks/photoreal/labels.csv alike.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import subprocess
import sys
from pathlib import Path

from PIL import Image


def blob(mirror: Path, repo: str, commit: str, path: str) -> bytes | None:
    git_dir = mirror / repo.replace("/", "+") / "repo"
    r = subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "blob", f"{commit}:{path}"],
                       capture_output=True)
    return r.stdout if r.returncode == 0 else None


def cut(data: bytes, box: str) -> bytes:
    """A tile out of a grid image, as PNG (lossless); grids are RGBA with an opaque alpha channel."""
    x0, y0, x1, y1 = map(int, box.split(","))
    im = Image.open(io.BytesIO(data))
    im.load()
    if im.mode not in ("RGB", "L"):
        im = im.convert("RGB")
    buf = io.BytesIO()
    im.crop((x0, y0, x1, y1)).save(buf, format="PNG")
    return buf.getvalue()


def extract_row(row: dict[str, str], mirror: Path, out: Path) -> str | None:
    """Write one image; None when it is in place, else the reason it is not."""
    dest = out / row["relpath"]
    if dest.exists() and hashlib.sha1(dest.read_bytes()).hexdigest() == row["sha1"]:
        return None
    data = blob(mirror, row["repo"], row["commit"], row["orig_path"])
    if data is None:
        where = mirror / row["repo"].replace("/", "+") / "repo"
        return (f"no snapshot of {row['repo']} (bring github:{row['repo']})" if not where.is_dir()
                else f"{row['repo']}@{row['commit'][:7]}:{row['orig_path']} is not in the snapshot")
    if row.get("crop", "-") not in ("", "-"):
        data = cut(data, row["crop"])
    got = hashlib.sha1(data).hexdigest()
    if got != row["sha1"]:
        return f"sha1 {got} differs from the labels' {row['sha1']}: not written"
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    part.write_bytes(data)
    part.replace(dest)
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mirror", required=True, type=Path, help="folder of OWNER+NAME/repo bare git snapshots")
    ap.add_argument("--out", required=True, type=Path, help="where to write OUT/<relpath>")
    ap.add_argument("labels", nargs="+", type=Path, help="labels.csv files (relpath, repo, commit, orig_path, crop, "
                                                         "sha1 columns)")
    args = ap.parse_args(argv)
    ok = failed = 0
    for labels in args.labels:
        with open(labels, newline="") as f:
            for row in csv.DictReader(f):
                reason = extract_row(row, args.mirror, args.out.expanduser())
                if reason is None:
                    ok += 1
                else:
                    failed += 1
                    print(f"{labels.name}: {row['relpath']}: {reason}", file=sys.stderr)
    print(f"{ok} files in place under {args.out}, {failed} failed", file=sys.stderr)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
