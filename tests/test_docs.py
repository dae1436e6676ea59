"""The documentation's checks that run without MkDocs: public docstrings and the README's links.

`mkdocs build --strict` (.ci/run) checks the docs pages' links and runs the same docstring check; these
tests make a missing docstring or a broken README link fail in pytest too.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def docs_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_public_name_has_a_docstring():
    hooks = docs_hooks()
    names = set(hooks.public_objects())
    assert {"aivsreal.Detector", "aivsreal.Prediction", "aivsreal.ModelConfig", "aivsreal.Detector.predict"} <= names
    assert hooks.undocumented() == [], "write a docstring for each (the API reference is generated from them)"


def test_the_docstring_check_names_an_undocumented_method(monkeypatch):
    from aivsreal import Detector

    hooks = docs_hooks()
    monkeypatch.setattr(Detector.predict, "__doc__", None)
    assert hooks.undocumented() == ["aivsreal.Detector.predict"]


def test_the_readme_links_to_files_that_exist():
    """MkDocs checks docs/; the README is not part of the site, so its relative links are checked here."""
    text = (ROOT / "README.md").read_text()
    targets = [t for t in re.findall(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)", text) if not t.startswith(("http", "mailto"))]
    assert targets, "the README links into the docs"
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert missing == []
