"""Write benchmarks/results/README.md: every results file, the command that wrote it, its date and machine.

    python benchmarks/render.py          # rewrite the index, and every results table in README and docs/
    python benchmarks/render.py --check  # exit 1 if a committed file differs (the tests run this)

(`python benchmarks/results_index.py` is the same command under its old name.)

The index is rendered from each JSON file's provenance header (aivsreal.report.provenance), so it
cannot drift from the files: a rerun of a benchmark changes its header, and the test that compares
the committed index with a fresh rendering fails until the index is rewritten.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def render(results: Path = RESULTS) -> str:
    lines = ["# Benchmark results", "",
             "Written by `python benchmarks/results_index.py` from each file's provenance header; do not edit by "
             "hand. Each JSON file has a Markdown twin (and some a plot) of the same name; a file whose rows carry "
             "their own headers (one row per run) gets a line per row. Headers marked "
             "*retrofitted* were added from git history to files written before run-time headers existed: their "
             "commit is the one that committed the figures.", "",
             "| file | written by | date | machine | code |", "|---|---|---|---|---|"]
    for path in sorted(results.glob("*.json")):
        data = json.loads(path.read_text())
        twins = [t.name for t in sorted(results.glob(f"{path.stem}.*")) if t.suffix != ".json"]
        name = f"[{path.name}]({path.name})" + "".join(f", [{t.rsplit('.', 1)[1]}]({t})" for t in twins)
        rows = data.get("rows")
        if isinstance(rows, list) and rows and all(isinstance(r, dict) and "provenance" in r for r in rows):
            # a file of runs, one row each with its own header (cifake_ensembles.json): a line per row
            lines += [_line(f"{name}, row `{r['name']}`", r["provenance"]) for r in rows]
        else:
            lines.append(_line(name, data["provenance"]))
    notes = sorted(t.name for t in results.glob("*.md") if not (results / f"{t.stem}.json").exists()
                   and t.name != "README.md")
    if notes:
        lines += ["", "Notes without a results file of their own: "
                  + ", ".join(f"[{n}]({n})" for n in notes) + "."]
    return "\n".join(lines) + "\n"


def _line(name: str, p: dict) -> str:
    cpu = p.get("cpu") or "not recorded"
    threads = f", {p['threads']} threads" if p.get("threads") else ""
    if "retrofitted" in p:
        code = f"committed in {p['committed_in'][:7]} (*retrofitted*)"
    else:
        commit = p["git_commit"][:7] if p["git_commit"] else "not a git checkout"
        code = f"{commit}{' (uncommitted changes)' if p['git_dirty'] else ''}, torch {p['versions']['torch']}"
    command = p["command"].replace("|", "\\|")
    return f"| {name} | `{command}` | {str(p['date'])[:10]} | {cpu}{threads} | {code} |"


def main(argv: list[str] | None = None) -> int:
    """The index is one of the files benchmarks/render.py writes; this command renders them all."""
    sys.path.insert(0, str(Path(__file__).parent))
    import render

    return render.main(argv)


if __name__ == "__main__":
    sys.exit(main())
