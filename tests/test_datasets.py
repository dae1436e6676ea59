import numpy as np
import pytest
from conftest import make_dataset, zip_folder

from aivsreal.data.sources import balanced_limit, find_splits, stratified_split
from aivsreal.errors import AivsrealError


def test_folder_layout(tiny_data):
    splits = find_splits(tiny_data)
    assert set(splits) == {"train", "test"}
    assert len(splits["train"]) == 192 and splits["train"].labels.sum() == 96
    train = splits["train"]
    assert all(("/REAL/" in "/" + r.name) == (y == 0) for r, y in zip(train.refs, train.labels, strict=True))


def test_single_zip_with_top_folder_and_zips_beside_each_other(tiny_data, tmp_path):
    single = zip_folder(tiny_data, tmp_path / "archive.zip")
    assert {k: len(v) for k, v in find_splits(single).items()} == {"train": 192, "test": 64}
    split_zips = tmp_path / "zips"
    split_zips.mkdir()
    for split in ("train", "test"):  # like shared/data/cifake: train.zip holds train/REAL/...
        zip_folder_with_prefix(tiny_data / split, split_zips / f"{split}.zip", split)
    assert {k: len(v) for k, v in find_splits(split_zips).items()} == {"train": 192, "test": 64}


def zip_folder_with_prefix(folder, zip_path, prefix):
    import zipfile

    with zipfile.ZipFile(zip_path, "w") as zf:
        for p in sorted(folder.rglob("*.jpg")):
            zf.write(p, f"{prefix}/{p.relative_to(folder).as_posix()}")


def test_loose_real_fake_folders_are_one_split(tmp_path):
    root = make_dataset(tmp_path / "mine", {"x": 4})
    for cls in ("REAL", "FAKE"):
        (root / "x" / cls).rename(root / cls)
    assert list(find_splits(root)) == ["all"]


def test_missing_path_wrong_layout_and_empty_class(tmp_path, tiny_data):
    with pytest.raises(AivsrealError, match="not found"):
        find_splits(tmp_path / "nope")
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "a.jpg").write_bytes(b"x")
    with pytest.raises(AivsrealError, match="no REAL/ and FAKE/"):
        find_splits(tmp_path / "cats")
    for f in (tiny_data / "train" / "FAKE").iterdir():
        f.unlink()
    with pytest.raises(AivsrealError, match="train/FAKE has no images"):
        find_splits(tiny_data)


def test_not_a_zip_file(tmp_path):
    f = tmp_path / "data.zip"
    f.write_bytes(b"garbage")
    with pytest.raises(AivsrealError, match="not a folder or a zip"):
        find_splits(f)


def test_stratified_split_is_reproducible_disjoint_and_balanced():
    labels = np.array([0] * 100 + [1] * 60)
    keep, held = stratified_split(labels, 0.25, seed=3)
    keep2, held2 = stratified_split(labels, 0.25, seed=3)
    assert np.array_equal(held, held2) and np.array_equal(keep, keep2)
    assert not set(keep) & set(held) and len(keep) + len(held) == 160
    assert (labels[held] == 0).sum() == 25 and (labels[held] == 1).sum() == 15
    assert not np.array_equal(held, stratified_split(labels, 0.25, seed=4)[1])


def test_balanced_limit(tiny_data):
    split = find_splits(tiny_data)["train"]
    small = balanced_limit(split, 20, seed=0)
    assert len(small) == 20 and small.labels.sum() == 10
    assert balanced_limit(split, None, 0) is split


def test_a_zip_under_any_name_is_read_as_a_zip(tiny_data, tmp_path):
    from aivsreal.data.cache import load_split

    oddly_named = zip_folder(tiny_data, tmp_path / "cifake.download")
    split = find_splits(oddly_named)["test"]
    assert len(load_split(split, 32, None, workers=1)) == 64
