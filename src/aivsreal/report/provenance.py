"""Where a results file came from: code version, libraries, machine, date and command.

A figure is only comparable with another when both were made by known code on a known machine:
this machine's speed drifts up to 2x between days, and a rerun after a code change must be told
from the original. Every results file the benchmarks and `aivsreal robustness` write carries this
header as its `provenance` key.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

LIBRARIES = ("aivsreal", "torch", "timm", "onnxruntime", "numpy", "pillow")
KEYS = ("git_commit", "git_dirty", "versions", "python", "cpu", "threads", "date", "command")


@dataclass
class Provenance:
    git_commit: str | None  # None: not run from a git checkout
    git_dirty: bool | None  # uncommitted changes to tracked files when it ran
    versions: dict[str, str | None]
    python: str
    cpu: str
    threads: int
    date: str  # UTC, ISO 8601
    command: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's marketing name where Linux says it (platform.processor() is often empty there)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _threads() -> int:
    try:
        import torch

        return torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a dependency
        return os.cpu_count() or 1


def _argv() -> list[str]:
    """This process's command as a user would retype it: `python benchmarks/x.py ...` or `aivsreal ...`."""
    first = sys.argv[0] if sys.argv and sys.argv[0] else "python"
    head = ["python", first] if first.endswith(".py") else [Path(first).name]
    return [*head, *sys.argv[1:]]


def provenance(command: list[str] | None = None, repo: str | Path | None = None) -> Provenance:
    """The header for a results file written now, by `command` (default: this process's argv),
    from the git checkout at `repo` (default: the one holding this package, if any)."""
    root = Path(repo) if repo else Path(__file__).resolve().parent
    commit = _git(["rev-parse", "HEAD"], root)
    status = _git(["status", "--porcelain", "--untracked-files=no"], root) if commit else None
    argv = command if command is not None else _argv()
    return Provenance(
        git_commit=commit, git_dirty=None if status is None else bool(status),
        versions={name: _version(name) for name in LIBRARIES},
        python=platform.python_version(), cpu=cpu_model(), threads=_threads(),
        date=datetime.now(UTC).isoformat(timespec="seconds"), command=" ".join(argv),
    )
