"""Write benchmarks/results/README.md: every results file, the command that wrote it, its date and machine.

    python benchmarks/results_index.py          # rewrite the index
    python benchmarks/results_index.py --check  # exit 1 if the committed index differs (the tests run this)

The index is rendered from each JSON file's provenance header (aivsreal.report.provenance), so it
cannot drift from the files: a rerun of a benchmark changes its header, and the test that compares
the committed index with a fresh rendering fails until the index is rewritten.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def render(results: Path = RESULTS) -> str:
    lines = ["# Benchmark results", "",
             "Written by `python benchmarks/results_index.py` from each file's provenance header; do not edit by "
             "hand. Each JSON file has a Markdown twin (and some a plot) of the same name. Headers marked "
             "*retrofitted* were added from git history to files written before run-time headers existed: their "
             "commit is the one that committed the figures.", "",
             "| file | written by | date | machine | code |", "|---|---|---|---|---|"]
    for path in sorted(results.glob("*.json")):
        p = json.loads(path.read_text())["provenance"]
        twins = [t.name for t in sorted(results.glob(f"{path.stem}.*")) if t.suffix != ".json"]
        name = f"[{path.name}]({path.name})" + "".join(f", [{t.rsplit('.', 1)[1]}]({t})" for t in twins)
        cpu = p.get("cpu") or "not recorded"
        threads = f", {p['threads']} threads" if p.get("threads") else ""
        if "retrofitted" in p:
            code = f"committed in {p['committed_in'][:7]} (*retrofitted*)"
        else:
            commit = p["git_commit"][:7] if p["git_commit"] else "not a git checkout"
            code = f"{commit}{' (uncommitted changes)' if p['git_dirty'] else ''}, torch {p['versions']['torch']}"
        command = p["command"].replace("|", "\\|")
        lines.append(f"| {name} | `{command}` | {str(p['date'])[:10]} | {cpu}{threads} | {code} |")
    notes = sorted(t.name for t in results.glob("*.md") if not (results / f"{t.stem}.json").exists()
                   and t.name != "README.md")
    if notes:
        lines += ["", "Notes without a results file of their own: "
                  + ", ".join(f"[{n}]({n})" for n in notes) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed index instead of writing it")
    args = ap.parse_args(argv)
    index = RESULTS / "README.md"
    text = render()
    if args.check:
        if not index.exists() or index.read_text() != text:
            print(f"{index} is out of date: run python benchmarks/results_index.py", file=sys.stderr)
            return 1
        return 0
    index.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
