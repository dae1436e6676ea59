"""Measure every image of a manifest and write the labels file the benchmark and extract.py read.

    python benchmarks/photoreal/build_labels.py --mirror MIRROR benchmarks/photoreal/manifest.tsv \
        > benchmarks/photoreal/labels.csv

manifest.tsv (one row per image): source, cls, generator, family, repo, commit, path, out_name, crop,
note, content. labels.csv: the wild set's columns (relpath = source/cls/out_name, measured width,
height, format, mode, bytes, JPEG quality estimate, chroma subsampling, embedded-metadata flags,
sha1) plus `content`. The measurements are there to see the shortcuts (format, size, JPEG tables,
metadata) that separate the classes without any generation trace; the models never read them.
Refuses (exit 2) a manifest that names an image twice or lists identical bytes twice.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import sys
from pathlib import Path

from extract import blob, cut
from PIL import Image, JpegImagePlugin

CONTENT = ("people", "face", "animal", "landscape", "urban", "food", "object", "indoor", "vehicle", "art", "graphic")
COLUMNS = ["relpath", "source", "cls", "generator", "family", "repo", "commit", "orig_path", "crop", "width",
           "height", "format", "mode", "bytes", "jpeg_quality", "jpeg_q_match", "chroma", "metadata", "sha1", "note",
           "content"]
# libjpeg's (IJG) luminance table at quality 50, in natural order
IJG_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17,
            22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87,
            103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]


def ijg_table(q: int) -> list[int]:
    scale = 5000 / q if q < 50 else 200 - 2 * q
    return [min(255, max(1, int((t * scale + 50) // 100))) for t in IJG_LUMA]


def jpeg_quality(im: Image.Image) -> tuple[str, str]:
    """The IJG quality whose luminance table is nearest, and 'ijg' when it is that table exactly."""
    table = list(getattr(im, "quantization", {}).get(0, []))
    if len(table) != 64:
        return "", ""
    err, q = min((sum(abs(a - b) for a, b in zip(table, ijg_table(q), strict=True)), q) for q in range(1, 101))
    return str(q), "ijg" if err == 0 else f"approx(err={err})"


def metadata_flags(im: Image.Image) -> str:
    flags = ["exif"] if "exif" in im.info or len(im.getexif()) else []
    flags += ["icc"] if "icc_profile" in im.info else []
    flags += [k for k in ("parameters", "prompt", "workflow", "Comment", "comment", "Description", "Software",
                          "XML:com.adobe.xmp", "xmp") if k in im.info]
    return "|".join(flags)


def measure(row: dict[str, str], data: bytes) -> dict[str, str | int]:
    im = Image.open(io.BytesIO(data))
    q, match = jpeg_quality(im) if im.format == "JPEG" else ("", "")
    chroma = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}.get(JpegImagePlugin.get_sampling(im), "?") \
        if im.format == "JPEG" else ""
    return {"relpath": f"{row['source']}/{row['cls']}/{row['out_name']}", "source": row["source"], "cls": row["cls"],
            "generator": row["generator"], "family": row["family"], "repo": row["repo"], "commit": row["commit"],
            "orig_path": row["path"], "crop": row["crop"], "width": im.width, "height": im.height,
            "format": im.format, "mode": im.mode, "bytes": len(data), "jpeg_quality": q, "jpeg_q_match": match,
            "chroma": chroma, "metadata": metadata_flags(im), "sha1": hashlib.sha1(data).hexdigest(),
            "note": row["note"], "content": row["content"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mirror", required=True, type=Path)
    ap.add_argument("manifest", type=Path)
    args = ap.parse_args(argv)
    with open(args.manifest, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    out, seen = [], {}
    for row in rows:
        if row["cls"] not in ("REAL", "FAKE") or row["content"] not in CONTENT:
            print(f"error: {row['out_name']}: cls {row['cls']!r} / content {row['content']!r} is not one of "
                  f"REAL, FAKE / {', '.join(CONTENT)}", file=sys.stderr)
            return 2
        data = blob(args.mirror, row["repo"], row["commit"], row["path"])
        if data is None:
            print(f"error: {row['repo']}@{row['commit'][:7]}:{row['path']} is not in the snapshot", file=sys.stderr)
            return 2
        labelled = measure(row, cut(data, row["crop"]) if row["crop"] not in ("", "-") else data)
        for key in ("relpath", "sha1"):
            if labelled[key] in seen:
                print(f"error: {labelled['relpath']} repeats {seen[labelled[key]]} ({key})", file=sys.stderr)
                return 2
            seen[labelled[key]] = labelled["relpath"]
        out.append(labelled)
    writer = csv.DictWriter(sys.stdout, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
