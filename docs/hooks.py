"""MkDocs hooks (mkdocs.yml `hooks:`): repository files outside docs/ as site pages, and a docstring check.

Docs pages link to repository files the way GitHub resolves them (`../benchmarks/results/wild.md`), so
they read the same on GitHub and on the site. MkDocs only knows files under docs/, so those files are
added to the site under `_repo/` and the links rewritten to them: a link to a file that does not exist
stays a broken link, and `mkdocs build --strict` fails on it.

The API reference is generated from docstrings, and mkdocstrings renders a name without one as an empty
entry without complaint; `undocumented()` names every public name without a docstring, and the build
fails while there is one (tests/test_docs.py runs the same check without MkDocs).
"""

from __future__ import annotations

import importlib
import inspect
import posixpath
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# what docs pages may link to outside docs/ (globs relative to the repository root)
REPO_FILES = ("CHANGELOG.md", "LICENSE", "THIRD_PARTY_NOTICES.md", "benchmarks/results/*",
              "benchmarks/photoreal/README.md", "benchmarks/wild_extra/README.md", "src/aivsreal/bundled/*/README.md")
PREFIX = "_repo"
LINK = re.compile(r"\]\(((?:\.\./)+)([^)#\s]+)(#[^)\s]*)?\)")


def public_objects() -> dict[str, object]:
    """`aivsreal.__all__`, each class with its public methods and properties."""
    aivsreal = importlib.import_module("aivsreal")
    found = {f"aivsreal.{name}": getattr(aivsreal, name) for name in aivsreal.__all__ if name != "__version__"}
    for qualname, obj in list(found.items()):
        if inspect.isclass(obj):
            for name, member in vars(obj).items():
                if not name.startswith("_") and (callable(member) or isinstance(member, property | classmethod)):
                    found[f"{qualname}.{name}"] = member
    return found


def undocumented() -> list[str]:
    """The public names without a docstring of their own (an inherited or empty one does not count)."""
    missing = []
    for qualname, obj in public_objects().items():
        target = obj.__func__ if isinstance(obj, classmethod | staticmethod) else obj
        doc = target.__doc__ if not inspect.isclass(target) else vars(target).get("__doc__")
        if not (doc or "").strip() or (inspect.isclass(target) and _dataclass_default_doc(target, doc)):
            missing.append(qualname)
    return missing


def _dataclass_default_doc(cls: type, doc: str) -> bool:
    """@dataclass writes `Name(field: type, ...)` as the docstring of a class that has none."""
    return doc.startswith(f"{cls.__name__}(")


def on_config(config, **kwargs):
    from mkdocs.exceptions import PluginError

    if missing := undocumented():
        raise PluginError("public names without a docstring: " + ", ".join(missing))
    return config


def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File

    for pattern in REPO_FILES:
        for path in sorted(REPO.glob(pattern)):
            if path.is_file():
                rel = path.relative_to(REPO).as_posix()
                files.append(File.generated(config, f"{PREFIX}/{rel}", abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    """Links that climb out of docs/ point at the `_repo/` copy of their target."""
    depth = page.file.src_uri.count("/")  # folders between docs/ and this page

    def repoint(m: re.Match) -> str:
        ups, target, anchor = len(m.group(1)) // 3, m.group(2), m.group(3) or ""
        if ups != depth + 1:
            return m.group(0)
        inside = posixpath.join("../" * depth + PREFIX, target)
        return f"]({inside}{anchor})"

    return LINK.sub(repoint, markdown)
