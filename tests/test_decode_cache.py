import logging

import numpy as np
import pytest

from aivsreal.data import cache as decode_cache
from aivsreal.data.cache import load_split
from aivsreal.data.sources import find_splits
from aivsreal.errors import AivsrealError


def test_cache_is_written_and_reused(tiny_data, cache_dir, monkeypatch):
    split = find_splits(tiny_data)["train"]
    first = load_split(split, 32, cache_dir)
    assert first.images.shape == (192, 32, 32, 3) and len(list(cache_dir.glob("*.npz"))) == 1

    def boom(*a, **k):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(decode_cache, "_decode_all", boom)
    second = load_split(split, 32, cache_dir)
    assert np.array_equal(first.images, second.images) and second.names == first.names


def test_parallel_decode_matches_serial(tiny_data, monkeypatch):
    split = find_splits(tiny_data)["train"]
    serial = load_split(split, 32, None, workers=1)
    monkeypatch.setattr(decode_cache, "CHUNK", 50)
    parallel = load_split(split, 32, None, workers=2)
    assert np.array_equal(serial.images, parallel.images)
    assert np.array_equal(serial.labels, parallel.labels)


def test_new_size_or_changed_file_gives_new_key(tiny_data):
    split = find_splits(tiny_data)["train"]
    key = decode_cache.cache_key(split, 32)
    assert decode_cache.cache_key(split, 64) != key
    (tiny_data / "train" / "REAL" / "0.jpg").write_bytes(b"changed")
    assert decode_cache.cache_key(find_splits(tiny_data)["train"], 32) != key


def test_truncated_cache_is_detected_and_rebuilt(tiny_data, cache_dir, caplog):
    split = find_splits(tiny_data)["train"]
    good = load_split(split, 32, cache_dir)
    cache_file = next(cache_dir.glob("*.npz"))
    cache_file.write_bytes(cache_file.read_bytes()[: cache_file.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        again = load_split(split, 32, cache_dir)
    assert "damaged" in caplog.text
    assert np.array_equal(good.images, again.images)
    assert load_split(split, 32, cache_dir).images.shape == good.images.shape  # rewritten whole


def test_no_temp_files_left_behind(tiny_data, cache_dir):
    load_split(find_splits(tiny_data)["test"], 32, cache_dir)
    assert [p.suffix for p in cache_dir.iterdir()] == [".npz"]


def test_corrupt_images_are_skipped_with_a_count_or_fail_in_strict_mode(tiny_data, caplog):
    (tiny_data / "train" / "FAKE" / "3.jpg").write_bytes(b"\x00garbage")
    (tiny_data / "train" / "REAL" / "notes.png").write_text("text, not a png")
    split = find_splits(tiny_data)["train"]
    with caplog.at_level(logging.WARNING):
        d = load_split(split, 32, None)
    assert len(d) == 191 and len(d.skipped) == 2 and "skipped 2" in caplog.text
    assert d.labels.sum() == 95  # the bad FAKE image is gone, labels still line up
    with pytest.raises(AivsrealError, match="2 unreadable"):
        load_split(split, 32, None, strict=True)


def _cache_file(cache_dir):
    files = sorted(cache_dir.glob("*.npz"))
    assert len(files) == 1
    return files[0]


def test_a_cache_of_another_split_renamed_to_this_key_is_rebuilt(tiny_data, tmp_path):
    from aivsreal.data.cache import load_split
    from aivsreal.data.sources import find_splits

    splits = find_splits(tiny_data)
    a, b = tmp_path / "a", tmp_path / "b"
    good = load_split(splits["train"], 32, a)
    load_split(splits["test"], 32, b)
    _cache_file(b).replace(_cache_file(a))  # the test split's cache under the train split's key
    again = load_split(splits["train"], 32, a)
    assert len(again) == len(good) and np.array_equal(again.images, good.images)


def test_a_cache_with_flipped_labels_is_rebuilt(tiny_data, tmp_path):
    from aivsreal.data.cache import load_split
    from aivsreal.data.sources import find_splits

    split = find_splits(tiny_data)["train"]
    good = load_split(split, 32, tmp_path)
    path = _cache_file(tmp_path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["labels"] = 1 - arrays["labels"]
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    assert np.array_equal(load_split(split, 32, tmp_path).labels, good.labels)


def test_a_folder_in_place_of_the_cache_file_or_an_unwritable_cache_costs_only_speed(tiny_data, tmp_path):
    from aivsreal.data.cache import cache_key, load_split
    from aivsreal.data.sources import find_splits

    split = find_splits(tiny_data)["train"]
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / f"{cache_key(split, 32)}.npz").mkdir()
    assert len(load_split(split, 32, tmp_path / "c")) == len(split)
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    assert len(load_split(split, 32, blocker / "cache")) == len(split)
