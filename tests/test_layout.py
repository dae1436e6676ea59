"""The package's shape: data flows one way through the stage folders, and modules stay small.

data -> models -> train -> predict -> evaluate / explain -> report -> serve -> commands -> cli.
A module may import from its own stage or from stages before it, never from one after it;
`errors`, `device` and `safe_io` are shared by all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import aivsreal

PACKAGE = Path(aivsreal.__file__).parent
RANK = {"errors": 0, "device": 0, "safe_io": 0, "data": 1, "models": 2, "train": 3, "predict": 4,
        "evaluate": 5, "explain": 5, "report": 6, "serve": 7, "commands": 8, "cli": 9, "__main__": 10}
MAX_LINES = 300


def stage(module: str) -> str | None:
    """`aivsreal.data.images` -> `data`; the package root itself (only __version__) has none."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "aivsreal" else None


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aivsreal"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if node.module == "aivsreal")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("aivsreal"))
    return found


def modules() -> list[tuple[str, Path]]:
    return [(".".join(("aivsreal", *p.relative_to(PACKAGE).with_suffix("").parts)), p)
            for p in sorted(PACKAGE.rglob("*.py"))]


def test_every_module_has_a_stage():
    for name, _ in modules():
        assert name == "aivsreal.__init__" or stage(name) in RANK, f"{name} is in no stage folder"


def test_data_flows_one_way():
    upward = []
    for name, path in modules():
        here = stage(name)
        if here is None or here == "__init__":
            continue
        for imported in imports(path):
            there = stage(imported)
            if there in RANK and there != here and (RANK[there] > RANK[here] or RANK[there] == RANK[here] > 0):
                upward.append(f"{name} imports {imported}")
    assert not upward, "imports against the flow:\n" + "\n".join(upward)


def test_modules_stay_small():
    big = [f"{name}: {n} lines" for name, path in modules() if (n := len(path.read_text().splitlines())) > MAX_LINES]
    assert not big, big


def test_the_public_face_imports_no_training_or_evaluation():
    import subprocess
    import sys

    code = ("import sys; from aivsreal import Detector; "
            "print(' '.join(m for m in ('sklearn', 'aivsreal.train.loop', 'aivsreal.train.distributed', "
            "'matplotlib', 'fastapi', 'aivsreal.evaluate') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
