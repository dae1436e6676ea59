"""Packaging: `aivsreal --version`, the version in one place, the licence and changelog files, and the
wheel contents check of `.ci/wheel_check.sh` (run here on hand-made wheels; CI builds the real one)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

import aivsreal
from aivsreal.cli import main

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]


def test_version_flag_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"aivsreal {version('aivsreal')}\n"


def test_version_flag_from_the_console_script():
    script = Path(sys.executable).with_name("aivsreal")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "aivsreal"]
    done = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"aivsreal {VERSION}\n", "")


def test_one_version_everywhere():
    assert version("aivsreal") == aivsreal.__version__ == VERSION


def test_licence_files_match_pyproject():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert set(project["license-files"]) == {"LICENSE", "THIRD_PARTY_NOTICES.md"}
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License\n")
    assert re.search(r"^Copyright \(c\) \d{4} the aivsreal authors$", licence, re.M)
    assert {"name": "the aivsreal authors"} in project["authors"]
    notices = (ROOT / "THIRD_PARTY_NOTICES.md").read_text()
    for bundled in sorted((ROOT / "src/aivsreal/bundled").iterdir()):
        if bundled.is_dir() and not bundled.name.startswith(("_", ".")):
            assert f"`{bundled.name}`" in notices, f"THIRD_PARTY_NOTICES.md says nothing of bundled/{bundled.name}"


def test_changelog_has_unreleased_and_every_version_in_order():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", changelog, re.M)
    assert headings[0] == ("Unreleased", "")
    versions = [v for v, _ in headings[1:]]
    assert versions[0] == VERSION and versions[-1] == "0.1.0"
    assert all(date for _, date in headings[1:])
    assert [d for _, d in headings[1:]] == sorted((d for _, d in headings[1:]), reverse=True)


# --- the wheel contents check, on hand-made wheels --------------------------------------------------------

def wheel_names() -> list[str]:
    """What a good wheel holds, as far as the check looks."""
    names = [str(p.relative_to(ROOT / "src")) for p in (ROOT / "src/aivsreal").rglob("*")
             if p.is_file() and "__pycache__" not in p.parts]
    dist = f"aivsreal-{VERSION}.dist-info"
    return names + [f"{dist}/METADATA", f"{dist}/RECORD", f"{dist}/entry_points.txt",
                    f"{dist}/licenses/LICENSE", f"{dist}/licenses/THIRD_PARTY_NOTICES.md"]


def make_wheel(path: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name in names:
            text = "[console_scripts]\naivsreal = aivsreal.cli:main\n" if name.endswith("entry_points.txt") else ""
            z.writestr(name, text)
    return path


def contents_check(wheel: Path) -> subprocess.CompletedProcess:
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    return subprocess.run(["bash", str(ROOT / ".ci/wheel_check.sh"), "--contents-only", str(wheel)],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHON": sys.executable})


def test_contents_check_passes_a_complete_wheel(tmp_path):
    done = contents_check(make_wheel(tmp_path / "good.whl", wheel_names()))
    assert done.returncode == 0, done.stderr
    assert "no tests/ or benchmarks/" in done.stdout


@pytest.mark.parametrize("missing", ["aivsreal/bundled/wild/model.safetensors", "aivsreal/bundled/cifake/README.md",
                                     "aivsreal/serve/web/index.html", "licenses/LICENSE"])
def test_contents_check_fails_on_a_missing_file(tmp_path, missing):
    names = [n for n in wheel_names() if not n.endswith(missing)]
    assert len(names) == len(wheel_names()) - 1
    done = contents_check(make_wheel(tmp_path / "missing.whl", names))
    assert done.returncode == 1
    assert f"missing from the wheel: {'*.dist-info/' if missing.startswith('licenses') else ''}{missing}" \
        in done.stderr


@pytest.mark.parametrize("extra", ["tests/test_cli.py", "benchmarks/wild.py", "aivsreal/tests/helpers.py",
                                   "conftest.py"])
def test_contents_check_fails_on_a_test_or_benchmark_file(tmp_path, extra):
    done = contents_check(make_wheel(tmp_path / "extra.whl", [*wheel_names(), extra]))
    assert done.returncode == 1
    assert f"test or benchmark file in the wheel: {extra}" in done.stderr


def test_package_data_covers_the_bundled_files():
    """The patterns in pyproject match every bundled file CI expects in the wheel (no build needed)."""
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]
    package_root = ROOT / "src/aivsreal"
    matched = {p for pattern in patterns["aivsreal"] for p in package_root.glob(pattern)}
    expected = [d / f for d in package_root.glob("bundled/*/") if d.is_dir() and not d.name.startswith(("_", "."))
                for f in ("config.json", "model.safetensors", "README.md")]
    assert expected and all(p in matched for p in expected)
    assert list((package_root / "serve/web").glob(patterns["aivsreal.serve.web"][0]))
