"""Every results file says which code, libraries, machine, date and command made it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from aivsreal.report.provenance import KEYS, LIBRARIES, provenance

RESULTS = Path(__file__).parents[1] / "benchmarks" / "results"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_the_header_names_the_commit_and_sees_uncommitted_changes(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("one")
    git(tmp_path, "add", "a.txt")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    clean = provenance(["python", "benchmarks/x.py", "--fast"], repo=tmp_path)
    assert clean.git_commit == head and clean.git_dirty is False
    assert clean.command == "python benchmarks/x.py --fast"
    (tmp_path / "a.txt").write_text("two")
    assert provenance([], repo=tmp_path).git_dirty is True
    (tmp_path / "new.txt").write_text("untracked files do not change what ran")
    git(tmp_path, "checkout", "-q", "a.txt")
    assert provenance([], repo=tmp_path).git_dirty is False


def test_outside_a_checkout_the_commit_is_unknown_not_invented(tmp_path):
    p = provenance([], repo=tmp_path)
    assert p.git_commit is None and p.git_dirty is None


def test_the_header_carries_versions_machine_and_date():
    d = provenance().to_dict()
    assert tuple(d) == KEYS
    import onnxruntime
    import timm
    import torch

    assert d["versions"]["torch"] == torch.__version__.split("+")[0]
    assert d["versions"]["timm"] == timm.__version__ and d["versions"]["onnxruntime"] == onnxruntime.__version__
    assert set(d["versions"]) == set(LIBRARIES) and d["threads"] == torch.get_num_threads()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", d["date"]) and d["cpu"]


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_every_committed_results_file_has_the_header(path):
    header = json.loads(path.read_text()).get("provenance")
    assert isinstance(header, dict), f"{path.name}: no provenance header (see aivsreal.report.provenance)"
    assert set(KEYS) <= set(header) and header["date"] and header["command"]
    if "retrofitted" in header:  # written before run-time headers existed: the commit that holds the figures
        assert re.fullmatch(r"[0-9a-f]{40}", header["committed_in"])
    else:
        assert re.fullmatch(r"[0-9a-f]{40}", header["git_commit"]) and isinstance(header["git_dirty"], bool)
        assert all(header["versions"][name] for name in ("aivsreal", "torch", "timm", "onnxruntime"))


def test_the_results_index_is_rendered_from_the_headers_and_is_current(tmp_path):
    """benchmarks/results/README.md lists every results file from its header; a stale index fails here."""
    from conftest import benchmark_script

    index = benchmark_script("results_index")
    assert index.main(["--check"]) == 0, "run python benchmarks/results_index.py"
    header = provenance(["python", "benchmarks/x.py", "--n", "1"]).to_dict()
    (tmp_path / "x.json").write_text(json.dumps({"provenance": header, "rows": []}))
    (tmp_path / "x.md").write_text("x")
    (tmp_path / "notes.md").write_text("y")
    text = index.render(tmp_path)
    assert "| [x.json](x.json), [md](x.md) | `python benchmarks/x.py --n 1` |" in text
    assert str(header["git_commit"] or "not a git checkout")[:7] in text and "[notes.md](notes.md)" in text
    header["command"] = "python benchmarks/x.py --n 2"  # a rerun: the rendering changes with the header
    (tmp_path / "x.json").write_text(json.dumps({"provenance": header, "rows": []}))
    assert index.render(tmp_path) != text
