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


def slug(heading: str) -> str:
    """A heading's anchor as MkDocs (Python-Markdown's toc) makes it."""
    return re.sub(r"[\s-]+", "-", re.sub(r"[^\w\s-]", "", heading).strip().lower())


def test_the_readme_links_to_files_and_headings_that_exist():
    """MkDocs checks docs/; the README is not part of the site, so its relative links (and their anchors
    into docs pages) are checked here."""
    text = (ROOT / "README.md").read_text()
    links = [(path, anchor) for path, anchor in re.findall(r"\]\(([^)\s#]+)(?:#([^)\s]*))?\)", text)
             if not path.startswith(("http", "mailto"))]
    assert links, "the README links into the docs"
    assert [path for path, _ in links if not (ROOT / path).exists()] == []
    for path, anchor in links:
        if anchor:
            headings = re.findall(r"^#+ (.+)$", (ROOT / path).read_text(), re.M)
            assert anchor in {slug(h) for h in headings}, f"{path} has no heading #{anchor}"
