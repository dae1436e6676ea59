"""The committed results: merged files keep every figure, and the tables in README and docs are rendered
from them (benchmarks/render.py), so a figure cannot drift from its results file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BEFORE_MERGE = "baa3e43"  # the last commit holding the nine cifake_ensemble*.json files merged into one


def git_show(path: str) -> str | None:
    done = subprocess.run(["git", "-C", str(ROOT), "show", f"{BEFORE_MERGE}:{path}"], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def test_the_merged_ensemble_rows_are_the_old_files_figure_for_figure():
    """cifake_ensembles.json replaced nine files, one per ensemble: each row must equal its old file, every
    field (figures and provenance), so the merge changed no figure. Git history holds the old files."""
    rows = json.loads((RESULTS / "cifake_ensembles.json").read_text())["rows"]
    old = {r["name"]: git_show(f"benchmarks/results/{r['name']}.json") for r in rows}
    if any(text is None for text in old.values()):
        pytest.skip(f"not a git checkout with commit {BEFORE_MERGE}")
    assert len(rows) == 9 == len(old)
    for row in rows:
        assert {k: v for k, v in row.items() if k != "name"} == json.loads(old[row["name"]]), row["name"]


def render_script():
    from conftest import benchmark_script

    return benchmark_script("render")


def test_every_committed_table_is_what_the_results_files_render():
    """README.md, the docs pages and the results index hold tables rendered from benchmarks/results/*.json;
    a table edited by hand, or a results file rerun without re-rendering, fails here."""
    assert render_script().main(["--check"]) == 0, "run python benchmarks/render.py"


def test_a_figure_edited_by_hand_is_rewritten_from_its_results_file():
    render = render_script()
    page = (ROOT / "docs" / "detectors.md").read_text()
    assert "<!-- render:domain -->" in page and "**1.07%**" in page
    edited = page.replace("**1.07%**", "**0.50%**", 1)
    assert render.render_file(edited, depth=1) == page


@pytest.mark.parametrize("text, message", [("<!-- render:nope -->\n<!-- /render:nope -->\n", "unknown table"),
                                           ("<!-- render:domain -->\n| x |\n", "has no <!-- /render:domain -->")])
def test_a_bad_marker_is_a_one_line_error(text, message, capsys):
    with pytest.raises(SystemExit) as e:
        render_script().render_file(text, depth=0)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_rerun_results_file_makes_its_table_stale(tmp_path, monkeypatch):
    """The check compares with fresh renderings: a changed figure in a results file changes the table."""
    render = render_script()
    for path in RESULTS.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    domain = json.loads((tmp_path / "domain.json").read_text())
    domain["in_domain"]["flagged"] = 0.02
    (tmp_path / "domain.json").write_text(json.dumps(domain))
    page = (ROOT / "docs" / "detectors.md").read_text()
    fresh = render.render_file(page, depth=1, results=tmp_path)
    assert fresh != page and "**2.00%**" in fresh and "**1.07%**" not in fresh


def test_the_headline_shows_the_external_figure_once_it_exists(tmp_path):
    """The locked external set is not scored yet: the headline says so; once bundle_wild.py writes
    wild_external.json, the same rendering shows its AUC and names the file."""
    render = render_script()
    for path in RESULTS.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    readme = (ROOT / "README.md").read_text()
    before = render.render_file(readme, depth=0, results=tmp_path)
    external = {"pooled_auc": 0.6125, "sources": ["s1", "s2", "s3"], "in_domain": 0.5}
    if not (tmp_path / "wild_external.json").exists():
        assert "not yet scored" in before and "wild_external.json" not in before
        (tmp_path / "wild_external.json").write_text(json.dumps(external))
    after = render.render_file(readme, depth=0, results=tmp_path)
    figure = json.loads((tmp_path / "wild_external.json").read_text())["pooled_auc"]
    assert f"| {figure:.3f} (scored once;" in after and "(benchmarks/results/wild_external.json)" in after
