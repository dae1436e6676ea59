"""`aivsreal download` and where data is looked for without --data ($AIVSREAL_DATA, then an earlier
download, then a download), all offline: kagglehub is absent or replaced by a stand-in."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from aivsreal.cli import main
from aivsreal.data.download import KAGGLE_DATASET
from aivsreal.models.file import load_model_file


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty user cache, no $AIVSREAL_DATA, and no kagglehub unless a test puts one in."""
    folder = tmp_path / "user-cache"
    monkeypatch.setenv("AIVSREAL_CACHE_DIR", str(folder))
    monkeypatch.delenv("AIVSREAL_DATA", raising=False)
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # import kagglehub raises ImportError
    return folder


def fake_kagglehub(monkeypatch, answer) -> list[str]:
    """A kagglehub whose dataset_download returns `answer` (a path) or raises it (an exception)."""
    calls: list[str] = []

    def dataset_download(name: str) -> str:
        calls.append(name)
        if isinstance(answer, BaseException):
            raise answer
        return str(answer)

    monkeypatch.setitem(sys.modules, "kagglehub", types.SimpleNamespace(dataset_download=dataset_download))
    return calls


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("aivsreal: error:") and "Traceback" not in err[0], err
    return err[0]


def earlier_download(cache: Path, data: Path) -> Path:
    marker = cache / "cifake-path.txt"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(data))
    return marker


def test_download_without_kagglehub_is_one_line_and_keeps_the_earlier_download(cache, tiny_data, capsys):
    marker = earlier_download(cache, tiny_data)
    assert main(["download"]) == 2
    line = error_line(capsys)
    assert "pip install 'aivsreal[download]'" in line and "--data PATH" in line
    assert marker.read_text() == str(tiny_data)  # nothing lost


def test_download_offline_is_one_line_and_keeps_the_earlier_download(cache, tiny_data, capsys, monkeypatch):
    marker = earlier_download(cache, tiny_data)
    calls = fake_kagglehub(monkeypatch, OSError("[Errno 101] Network is unreachable\nmore detail"))
    assert main(["download"]) == 2
    assert calls == [KAGGLE_DATASET]
    line = error_line(capsys)
    assert f"could not download {KAGGLE_DATASET}" in line and "OSError: [Errno 101] Network is unreachable" in line
    assert "more detail" not in line  # the exception's first line only
    assert marker.read_text() == str(tiny_data)


def test_download_records_where_the_data_went(cache, tmp_path, capsys, monkeypatch):
    where = tmp_path / "kaggle" / "cifake"
    fake_kagglehub(monkeypatch, where)
    assert main(["download"]) == 0
    assert capsys.readouterr().out.strip() == str(where)
    assert (cache / "cifake-path.txt").read_text() == str(where)


def train_without_data(out: Path) -> int:
    return main(["train", "--out", str(out), "--no-cache", "--epochs", "1", "--batch-size", "32", "--no-eval"])


def trained_on(out: Path) -> str:
    return load_model_file(out / "model.pt")[1].summary["data"]["path"]


def test_aivsreal_data_is_where_data_is_looked_for(cache, tiny_data, tmp_path, monkeypatch, capsys):
    other = tmp_path / "other"
    tiny_data.rename(other)
    earlier_download(cache, tmp_path / "nowhere")  # a stale marker (its folder is gone) is not used
    monkeypatch.setenv("AIVSREAL_DATA", str(other))
    assert train_without_data(tmp_path / "run") == 0
    assert trained_on(tmp_path / "run") == str(other)
    # $AIVSREAL_DATA wins over an earlier download, and a wrong one is an error, not a download
    earlier_download(cache, other)
    monkeypatch.setenv("AIVSREAL_DATA", str(tmp_path / "missing"))
    calls = fake_kagglehub(monkeypatch, tmp_path)
    assert train_without_data(tmp_path / "run2") == 2
    assert "not found" in error_line(capsys) and calls == []
    assert not (tmp_path / "run2" / "model.pt").exists()


def test_without_aivsreal_data_an_earlier_download_is_used_then_a_download_is_tried(cache, tiny_data, tmp_path,
                                                                                    monkeypatch, capsys):
    earlier_download(cache, tiny_data)
    assert train_without_data(tmp_path / "run") == 0  # kagglehub is absent: no download was needed
    assert trained_on(tmp_path / "run") == str(tiny_data)
    (cache / "cifake-path.txt").unlink()
    assert train_without_data(tmp_path / "run2") == 2  # nothing local: the download's own one-line error
    assert "pip install 'aivsreal[download]'" in error_line(capsys)
