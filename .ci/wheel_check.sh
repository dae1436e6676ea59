#!/usr/bin/env bash
# Packaging check (called by .ci/run after the tests): build the sdist and, from it, the wheel with
# `python -m build`; check that the wheel holds the bundled detectors, the web pages, the licence files
# and the console script, and nothing from tests/ or benchmarks/; then install the wheel into a fresh venv
# and run `aivsreal --version`, `aivsreal models` and `aivsreal predict` from outside the checkout.
#
# The fresh venv does not download torch & co again: the wheel goes in with --no-deps --no-index while the
# venv is still empty, then a .pth file puts the CI venv's site-packages after the venv's own. A plain path
# line in a .pth does not run that directory's own .pth files, so the CI venv's editable aivsreal stays out
# of sight; the check asserts that `aivsreal` is imported from the fresh venv.
#
#   .ci/wheel_check.sh                        the whole check (PYTHON: the CI venv's python, default .venv)
#   .ci/wheel_check.sh --contents-only WHEEL  only the wheel contents check, on a given wheel
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(realpath -s "${PYTHON:-.venv/bin/python}")

check_contents() {  # $1: a wheel; fails naming every missing or unwanted file
  "$PY" - "$1" <<'EOF'
import glob
import sys
import zipfile
from pathlib import Path

wheel = sys.argv[1]
names = set(zipfile.ZipFile(wheel).namelist())
problems = []
bundled = sorted(Path(p) for p in glob.glob("src/aivsreal/bundled/*/") if not Path(p).name.startswith(("_", ".")))
if not bundled:
    problems.append("no bundled detector folders under src/aivsreal/bundled/")
required = [f"aivsreal/bundled/{d.name}/{f}" for d in bundled for f in ("config.json", "model.safetensors", "README.md")]
pages = sorted(glob.glob("src/aivsreal/serve/web/*.html"))
if not pages:
    problems.append("no html pages under src/aivsreal/serve/web/")
required += [p.removeprefix("src/") for p in pages]
problems += [f"missing from the wheel: {name}" for name in required if name not in names]
for licence in ("LICENSE", "THIRD_PARTY_NOTICES.md"):
    if not any(n.endswith(f".dist-info/licenses/{licence}") for n in names):
        problems.append(f"missing from the wheel: *.dist-info/licenses/{licence}")
entry_points = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
if not entry_points or "aivsreal = aivsreal.cli:main" not in zipfile.ZipFile(wheel).read(entry_points[0]).decode():
    problems.append("no `aivsreal = aivsreal.cli:main` console script in entry_points.txt")
for name in sorted(names):
    parts = name.split("/")
    base = parts[-1]
    if {"tests", "benchmarks"} & set(parts[:-1]) or base == "conftest.py" or \
            (base.startswith("test_") and base.endswith(".py")):
        problems.append(f"test or benchmark file in the wheel: {name}")
for problem in problems:
    print(f"wheel_check: {problem}", file=sys.stderr)
if problems:
    sys.exit(1)
print(f"wheel_check: {Path(wheel).name}: {len(names)} files; {len(required)} bundled/web files present; "
      "licences, console script; no tests/ or benchmarks/")
EOF
}

if [ "${1:-}" = "--contents-only" ]; then
  check_contents "$2"
  exit
fi

start=$SECONDS
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Build from a copy of the files git tracks or would track, as a fresh clone has them: a leftover
# src/aivsreal.egg-info/SOURCES.txt (pip install -e writes one) would otherwise put files in the sdist,
# and so in the wheel, that pyproject's package-data no longer asks for.
tree=.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  tree="$work/tree"
  mkdir "$tree"
  git ls-files -z --cached --others --exclude-standard | tar --null -T - --ignore-failed-read -cf - 2>/dev/null \
    | tar -xf - -C "$tree"
fi
"$PY" -m build --outdir "$work/dist" "$tree" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
wheel=$(ls "$work"/dist/aivsreal-*.whl)
ls "$work"/dist/aivsreal-*.tar.gz >/dev/null
echo "wheel_check: built $(cd "$work/dist" && echo *) in $((SECONDS - start)) s"
check_contents "$wheel"

venv="$work/venv"
"$PY" -m venv --without-pip "$venv"
"$PY" -m pip --python "$venv/bin/python" install --quiet --no-deps --no-index "$wheel"
own=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$PY" -c 'import sysconfig; p = sysconfig.get_paths(); print(p["purelib"]); print(p["platlib"])' | sort -u \
  >"$own/ci_venv_site_packages.pth"

cd "$work"  # nothing from the checkout on sys.path
want="aivsreal $("$PY" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
  "$OLDPWD/pyproject.toml")"
got=$("$venv/bin/aivsreal" --version)
[ "$got" = "$want" ] || { echo "wheel_check: --version printed '$got', pyproject says '$want'" >&2; exit 1; }
"$venv/bin/python" -c '
import sys, aivsreal
if not aivsreal.__file__.startswith(sys.argv[1]):
    sys.exit(f"wheel_check: aivsreal imported from {aivsreal.__file__}, not the fresh venv {sys.argv[1]}")' "$venv"
"$venv/bin/aivsreal" models >models.txt
for name in cifake wild; do
  grep -q "$name" models.txt || { cat models.txt; echo "wheel_check: 'aivsreal models' does not list $name" >&2; exit 1; }
done
"$venv/bin/python" -c '
import numpy as np
from PIL import Image
Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save("small.png")'
"$venv/bin/aivsreal" predict small.png --json predict.json --workers 1 --quiet 2>predict.err \
  || { cat predict.err >&2; exit 1; }
"$venv/bin/python" -c '
import json, sys
rows = json.load(open("predict.json"))
rows = rows["rows"] if isinstance(rows, dict) else rows
if len(rows) != 1 or rows[0].get("label") not in ("REAL", "FAKE"):
    sys.exit(f"wheel_check: predict wrote {rows!r}")
label = rows[0]["label"]
print(f"wheel_check: installed {sys.argv[1]}: models lists cifake and wild; predict on a 64x48 PNG: {label}")' \
  "$got"
echo "wheel_check: passed in $((SECONDS - start)) s"
