"""The parts of the native-resolution path: source folds, native crops and tiles, the codec chain."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import timm
from conftest import benchmark_script
from PIL import Image
from safetensors.torch import save_file
from sklearn.metrics import roc_auc_score

from aivsreal.data.crops import centre_crop, random_crop, tile_origins, tiles
from aivsreal.data.images import decode_native
from aivsreal.evaluate.folds import source_folds
from aivsreal.train.augment import CodecChain


def test_folds_never_share_a_source_and_hold_out_both_classes():
    rng = np.random.default_rng(0)
    sources, labels = [], []
    for i, (cls, n) in enumerate([(0, 300), (0, 80), (0, 40), (0, 12), (1, 500), (1, 200), (1, 30), (1, 20),
                                  (1, 7), (1, 3)]):
        sources += [f"s{i}"] * n
        labels += [cls] * n
    sources += ["mixed"] * 10  # a source with both classes stays whole
    labels += list(rng.integers(0, 2, 10))
    labels = np.array(labels)
    folds = source_folds(sources, labels, k=4)
    names = np.array(sources)
    for f in range(4):
        test, train = folds == f, folds != f
        assert set(names[test]).isdisjoint(set(names[train]))
        assert set(labels[test]) == {0, 1}
    assert (folds >= 0).all()
    with pytest.raises(ValueError, match="need at least 7"):  # at most 5 mostly-REAL sources here
        source_folds(sources, labels, k=7)


def checkerboard(h, w):
    return np.repeat(((np.indices((h, w)).sum(0) % 2) * 255).astype(np.uint8)[..., None], 3, axis=2)


def test_crops_are_native_a_checkerboard_survives():
    board = checkerboard(600, 400)
    rng = np.random.default_rng(0)
    for crop in (random_crop(board, 224, rng), centre_crop(board, 224), *tiles(board, 224)):
        assert crop.shape == (224, 224, 3)
        diffs = np.abs(np.diff(crop[..., 0].astype(int), axis=1))
        assert (diffs == 255).all()  # every neighbour differs by full contrast: nothing was resampled


def test_small_images_are_padded_not_scaled():
    small = checkerboard(100, 150)
    crop = centre_crop(small, 224)
    assert crop.shape == (224, 224, 3) and np.array_equal(crop[:100, :150], small)
    assert np.array_equal(crop[100, :150], small[98])  # the first padded row mirrors the image


@pytest.mark.parametrize("h, w", [(224, 224), (300, 500), (1000, 700), (4000, 3000)])
def test_tiles_cover_the_image_up_to_the_cap(h, w):
    origins = tile_origins(h, w, 224, max_tiles=9)
    assert 1 <= len(origins) <= 9
    assert all(0 <= y <= h - 224 and 0 <= x <= w - 224 for y, x in origins)
    covered = np.zeros((h, w), bool)
    for y, x in origins:
        covered[y : y + 224, x : x + 224] = True
    if max(h, w) <= 3 * 224:
        assert covered.all()
    else:  # past the cap the crops are spread from edge to edge
        assert covered[0, 0] and covered[-1, -1]


def test_codec_chain_is_the_same_random_process_for_every_image():
    chain = CodecChain(p_scale=0.0)
    image = np.random.default_rng(1).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    a = chain.view(image, 224, np.random.default_rng(7))
    assert np.array_equal(a, chain.view(image, 224, np.random.default_rng(7))) and a.shape == (224, 224, 3)
    # the chain never sees a label: REAL and FAKE views come from the same random process
    assert "label" not in CodecChain.view.__code__.co_varnames
    # every view is re-encoded (JPEG last): the crop it started from is not what comes out
    assert not np.array_equal(a, random_crop(image, 224, np.random.default_rng(7)))
    jpegs = {tuple(chain.view(image, 224, np.random.default_rng(s))[0, 0]) for s in range(8)}
    assert len(jpegs) > 1  # qualities and crops vary between draws


def test_decode_native_keeps_the_resolution():
    buf = io.BytesIO()
    Image.fromarray(checkerboard(321, 123)).save(buf, "PNG")
    px = decode_native(buf.getvalue())
    assert px.shape == (321, 123, 3) and np.array_equal(px, checkerboard(321, 123))


def test_source_weights_balance_classes_and_temper_big_sources():
    wild = benchmark_script("wild")
    sources = np.array(["big"] * 400 + ["small"] * 4 + ["fake_a"] * 100 + ["fake_b"] * 25)
    labels = np.array([0] * 404 + [1] * 125)
    w = wild.source_weights(sources, labels)
    assert w[labels == 0].sum() == pytest.approx(len(labels) / 2) == w[labels == 1].sum()
    # one image of a source 100x smaller weighs 10x more; the source as a whole 10x less
    assert w[sources == "small"][0] / w[sources == "big"][0] == pytest.approx(10)
    assert w[sources == "big"].sum() / w[sources == "small"].sum() == pytest.approx(10)
    plain = wild.compute_sample_weight("balanced", labels)  # what probe() weighs by without sources
    assert plain[labels == 0].sum() == pytest.approx(plain[labels == 1].sum())
    assert len(set(plain[labels == 0])) == 1  # unweighted within a class


def test_feature_cache_grows_and_keeps_each_images_views(tmp_path, monkeypatch):
    """Adding images computes only those; the others keep their features (views seeded per image)."""
    wild = benchmark_script("wild")
    rng = np.random.default_rng(0)
    rows = []
    for i, (h, w) in enumerate([(300, 260), (240, 500), (230, 230)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append({"relpath": f"{i}.png"})
    cache = tmp_path / "features.npz"
    first = wild.features_for(rows[:2], tmp_path, cache, "lite0_probe")
    computed = []
    real = wild.row_features
    monkeypatch.setattr(wild, "row_features", lambda *a, **kw: computed.append(a[3]) or real(*a, **kw))
    grown = wild.features_for(rows[::-1], tmp_path, cache, "lite0_probe")  # any order: the labels' order
    assert computed == ["2.png"]
    assert list(grown["relpaths"]) == ["2.png", "1.png", "0.png"]
    for key in ("chain", "plain", "as_is", "same_codec", "meta_as_is"):
        assert np.array_equal(grown[key][[2, 1]], first[key]), key
    assert np.array_equal(wild.same_codec_blobs(grown)[1], wild.same_codec_blobs(first)[1])
    assert not np.array_equal(grown["chain"][0], grown["chain"][1])
    computed.clear()
    assert np.array_equal(wild.features_for(rows[1:2], tmp_path, cache, "lite0_probe")["as_is"], first["as_is"][1:])
    assert computed == []
    np.savez(cache, relpaths=np.array(["0.png"]), feature_seconds=np.array(1.0))  # a cache from before view seeds
    with pytest.raises(SystemExit) as e:
        wild.features_for(rows, tmp_path, cache, "lite0_probe")
    assert e.value.code == 2


def test_a_vit_probe_s_features_come_from_the_weights_file_it_is_given(tmp_path, monkeypatch):
    """--vit-probe with --vit-weights: offline, a tiny random ViT stands in for CLIP's ViT-L/14."""

    wild = benchmark_script("wild")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (240, 300, 3), dtype=np.uint8)).save(tmp_path / "0.png")
    source = timm.create_model("vit_tiny_patch16_224")
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "tiny.safetensors"))
    real_config = wild.default_config

    def tiny(name):
        config = real_config(name)
        config.options = {**config.options, "arch": "vit_tiny_patch16_224"}
        return config

    monkeypatch.setattr(wild, "default_config", tiny)
    f = wild.features_for([{"relpath": "0.png"}], tmp_path, tmp_path / "clip.npz", "clip_probe",
                          weights=str(tmp_path / "tiny.safetensors"))
    assert f["chain"].shape == (1, wild.VIEWS, 192) and f["as_is"].shape == (1, 192)
    loaded = wild.build_model(tiny("clip_probe"), weights=str(tmp_path / "tiny.safetensors")).eval()
    px = wild.decode_native((tmp_path / "0.png").read_bytes())
    expected = wild.embed(loaded, wild.tiles(px, wild.CROP, wild.TILES)).mean(0)
    np.testing.assert_allclose(f["as_is"][0], expected, rtol=1e-5, atol=1e-5)


LABEL_COLUMNS = "relpath,source,cls,family,format,width,height,sha1"


def test_labels_files_join_and_refuse_an_image_listed_twice(tmp_path, capsys):
    wild = benchmark_script("wild")
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    a.write_text(f"{LABEL_COLUMNS}\nx/1.jpg,x,REAL,real,JPEG,9,9,11\nx/2.jpg,x,REAL,real,JPEG,9,9,22\n")
    b.write_text(f"{LABEL_COLUMNS},content\ny/1.jpg,y,FAKE,SDXL,PNG,9,9,33,animal\n")  # additions carry content
    c.write_text(f"{LABEL_COLUMNS}\ny/9.jpg,y,FAKE,SDXL,PNG,9,9,22\n")  # other path, same bytes as x/2.jpg
    assert [r["relpath"] for r in wild.read_labels([str(a), str(b)])] == ["x/1.jpg", "x/2.jpg", "y/1.jpg"]
    with pytest.raises(SystemExit) as e:
        wild.read_labels([str(a), str(c)])
    assert e.value.code == 2 and "listed twice" in capsys.readouterr().err
    tags = {"x/1.jpg": "urban", "x/2.jpg": "food", "y/1.jpg": "people"}
    assert [r["content"] for r in wild.read_labels([str(a), str(b)], tags)] == ["urban", "food", "animal"]
    with pytest.raises(SystemExit) as e:
        wild.read_labels([str(a)], {"x/1.jpg": "urban"})
    assert e.value.code == 2 and "x/2.jpg has no content tag" in capsys.readouterr().err
    (tmp_path / "d.csv").write_text("relpath,source,sha1\nz/1.jpg,z,44\n")
    with pytest.raises(SystemExit) as e:
        wild.read_labels([str(tmp_path / "d.csv")])
    assert e.value.code == 2 and "no cls, family, format, width, height column(s)" in capsys.readouterr().err


def test_per_content_auc_sees_through_a_content_shortcut():
    """A score that only knows what is pictured looks good pooled and is at chance within a content tag;
    the photoreal mask and the conditions that left an image out (NaN) are not counted."""
    wild = benchmark_script("wild")
    rng = np.random.default_rng(0)
    rows, scores = [], []
    for cls, content, n in (("REAL", "animal", 300), ("REAL", "urban", 60), ("FAKE", "animal", 60),
                            ("FAKE", "urban", 300), ("FAKE", "art", 200)):
        rows += [{"cls": cls, "format": "JPEG", "source": f"{cls}_{content}", "family": "x", "content": content}] * n
        scores += list((content == "urban") * 0.5 + rng.uniform(0, 0.5, n) + (content == "art") * 0.5)
    labels = np.array([int(r["cls"] == "FAKE") for r in rows])
    p = np.array(scores)
    p[:10] = np.nan  # e.g. images the native crop left out
    out = wild.summarise(p, labels, rows, wild.photoreal_mask(rows))
    assert (out["n_real"], out["n_fake"]) == (350, 360) and "art" not in out["per_content"]
    assert out["pooled_auc"] > 0.75
    for tag, n in (("animal", (290, 60)), ("urban", (60, 300))):
        assert (out["per_content"][tag]["n_real"], out["per_content"][tag]["n_fake"]) == n
        assert abs(out["per_content"][tag]["auc"] - 0.5) < 0.1


def test_the_content_baseline_reads_only_the_thumbnail_and_the_shortcut_skips_left_out_images():
    wild = benchmark_script("wild")
    rng = np.random.default_rng(1)
    feats = {c: rng.normal(size=(6, 4)) for c in wild.CONDITIONS}
    feats["thumb"] = rng.normal(size=(6, 4))
    feats["native_512"][[1, 4]] = np.nan
    only = wild.content_only(feats)
    assert np.array_equal(only["thumb_views"][:, 0], feats["thumb"]) and only["thumb_views"].shape == (6, 1, 4)
    for cond in wild.CONDITIONS:
        expected = feats["thumb"].copy()
        if cond == "native_512":
            expected[[1, 4]] = np.nan
        np.testing.assert_array_equal(only[cond], expected)
    labels = np.array([0, 1] * 100)
    meta = {f"meta_{c}": np.c_[labels * 2.0 + rng.normal(0, 0.1, 200), np.ones(200)] for c in wild.CONDITIONS}
    meta["meta_native_512"][[0, 3]] = np.nan
    p = wild.shortcut(meta, labels, np.repeat(np.arange(4), 50))
    assert np.isnan(p["native_512"][[0, 3]]).all() and not np.isnan(np.delete(p["native_512"], [0, 3])).any()
    assert ((p["same_size"] > 0.5) == labels).all()  # it does find a shortcut where there is one


def test_row_features_score_the_reductions_and_the_thumbnail_with_the_same_backbone(tmp_path):
    wild = benchmark_script("wild")
    from aivsreal.evaluate.conditions import native_crop, same_size, thumbnail

    model = wild.build_model(wild.default_config("lite0_probe"), pretrained=True).eval()
    rng = np.random.default_rng(2)
    store = tmp_path / "reduced"
    for name, (h, w) in (("big.png", (600, 700)), ("small.png", (300, 400))):
        px = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(px).save(buf, "PNG")
        f = wild.row_features(model, CodecChain(), buf.getvalue(), name, store)
        small = same_size(px)
        assert (store / "same_size" / f"{name}.jpg").read_bytes() == small
        np.testing.assert_allclose(f["same_size"], wild.embed(model, tiles(wild.decode_jpeg(small), 224, 4)).mean(0),
                                   rtol=1e-4, atol=1e-4)
        up = np.asarray(Image.fromarray(thumbnail(px)).resize((224, 224), Image.Resampling.BICUBIC))[None]
        np.testing.assert_allclose(f["thumb"], wild.embed(model, up)[0], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(f["meta_same_size"], [512, 512, np.log(len(small)), 1, 0, 0, 0, 0, 0])
        if native_crop(px) is None:
            assert np.isnan(f["native_512"]).all() and np.isnan(f["meta_native_512"]).all()
            assert (store / "native_512" / f"{name}.none").exists()
        else:
            assert not np.isnan(f["native_512"]).any()


def test_lean_row_features_are_the_reduced_conditions_of_the_full_ones_and_nan_elsewhere(tmp_path):
    """A costly backbone (wild.LEAN) computes only the headline's reductions: the same features there as a
    full pass, and nothing it could be mistaken to have scored elsewhere."""
    wild = benchmark_script("wild")
    model = wild.build_model(wild.default_config("lite0_probe"), pretrained=True).eval()
    px = np.random.default_rng(3).integers(0, 256, (600, 700, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, "PNG")
    full = wild.row_features(model, CodecChain(), buf.getvalue(), "a.png", tmp_path)
    lean = wild.row_features(model, CodecChain(), buf.getvalue(), "a.png", tmp_path, lean=True)
    assert set(lean) == set(full)
    for key in ("same_size", "native_512"):
        np.testing.assert_allclose(lean[key], full[key], rtol=1e-4, atol=1e-4)
    for key in ("chain", "plain", "thumb", "as_is", "same_codec"):
        assert np.isnan(lean[key]).all() and lean[key].shape == full[key].shape
    for key in (k for k in full if k.startswith("meta_") or k == "same_codec_bytes"):
        np.testing.assert_array_equal(lean[key], full[key])


def test_cross_validation_leaves_a_condition_without_features_unscored():
    """A LEAN backbone has no features for the stored-file conditions: those stay NaN, the rest is scored."""
    wild = benchmark_script("wild")
    rng = np.random.default_rng(0)
    labels = np.tile([0, 1], 40)
    sources = np.array([f"s{i % 8}{y}" for i, y in enumerate(labels)])
    feats = {"same_size": rng.normal(labels[:, None], 1.0, (80, 6)), "as_is": np.full((80, 6), np.nan)}
    feats["same_size_view"] = feats["same_size"][:, None]
    folds = wild.source_folds(list(sources), labels)
    p, _ = wild.cross_validate(feats, labels, folds, "same_size_view", sources, conditions=("same_size", "as_is"))
    assert np.isnan(p["as_is"]).all() and not np.isnan(p["same_size"]).any()


def test_a_contender_scored_under_none_of_a_table_s_conditions_has_no_row_there():
    wild = benchmark_script("wild")
    rows = [{"cls": c, "source": f"s{i % 8}{c}", "family": "x", "format": "JPEG", "content": "urban"}
            for i, c in enumerate(["REAL", "FAKE"] * 20)]
    labels = np.array([int(r["cls"] == "FAKE") for r in rows])
    scored = {"same_codec": labels * 0.5 + 0.25, "as_is": labels * 0.5 + 0.25}
    ev = wild.Evaluation(rows, wild.source_folds([r["source"] for r in rows], labels),
                         {"full": scored, "lean": {c: np.full(40, np.nan) for c in scored}}, {}, {})
    assert list(wild.summary(ev, ("same_codec", "as_is"))["contenders"]) == ["full"]


def test_trained_cache_is_used_only_for_its_own_images_and_folds(tmp_path, capsys):
    """A per-fold training cache replays its scores for the same images and folds, and is refused
    (exit 2) for any other set: its scores would otherwise sit on rows they were never computed for."""
    wild = benchmark_script("wild")
    spec = wild.Trained("fast", 96, 6, 0.0125)
    rows = [{"relpath": f"{i}.png"} for i in range(12)]
    labels, folds = np.tile([0, 1], 6), np.repeat([0, 1], 6)
    scores = {c: np.linspace(0, 1, 12) ** (i + 1) for i, c in enumerate(wild.CONDITIONS)}
    cache = tmp_path / "trained.npz"
    record = np.array('{"minutes_per_fold": [1, 1], "epochs_run": [6, 5]}')
    np.savez(cache, **scores, record=record, relpaths=np.array([r["relpath"] for r in rows]), folds=folds)
    p, got = wild.trained_scores(spec, rows, tmp_path, labels, folds, [], cache, tmp_path)
    assert all(np.array_equal(p[c], scores[c]) for c in wild.CONDITIONS)
    assert got["epochs_run"] == [6, 5] and len(got["pflops_per_fold"]) == 2
    for other_rows, other_folds in ((rows[::-1], folds), (rows, folds[::-1])):
        with pytest.raises(SystemExit) as e:
            wild.trained_scores(spec, other_rows, tmp_path, labels, other_folds, [], cache, tmp_path)
        assert e.value.code == 2 and "delete it to retrain" in capsys.readouterr().err
    old = {c: scores[c] for c in ("as_is", "same_codec")}  # a cache from before the photoreal conditions
    np.savez(cache, **old, record=record, relpaths=np.array([r["relpath"] for r in rows]), folds=folds)
    with pytest.raises(SystemExit) as e:
        wild.trained_scores(spec, rows, tmp_path, labels, folds, [], cache, tmp_path)
    assert e.value.code == 2 and "conditions" in capsys.readouterr().err


def test_within_format_auc_sees_through_a_format_shortcut():
    """A score that only knows the file format looks good pooled and is at chance within a format."""
    wild = benchmark_script("wild")
    rng = np.random.default_rng(0)
    rows, scores = [], []
    for cls, fmt, n in (("REAL", "JPEG", 300), ("REAL", "PNG", 60), ("FAKE", "JPEG", 60), ("FAKE", "PNG", 300)):
        rows += [{"cls": cls, "format": fmt, "source": f"{cls}_{fmt}", "family": "x"}] * n
        scores += list((fmt == "PNG") * 0.5 + rng.uniform(0, 0.5, n))
    labels = np.array([int(r["cls"] == "FAKE") for r in rows])
    out = wild.summarise(np.array(scores), labels, rows)
    assert out["pooled_auc"] > 0.75
    assert out["within_format"]["JPEG"]["n_real"] == 300 and out["within_format"]["JPEG"]["n_fake"] == 60
    for fmt in ("JPEG", "PNG"):
        assert abs(out["within_format"][fmt]["auc"] - 0.5) < 0.1


def test_feature_part_splits_stages_from_the_head():
    wild = benchmark_script("wild")
    feats = {k: np.arange(2 * 2136, dtype=float).reshape(1, 2, 2136) for k in ("chain", *wild.CONDITIONS)}
    stages, head = wild.feature_part(feats, "lite2_probe", "stages"), wild.feature_part(feats, "lite2_probe", "head")
    assert stages["chain"].shape == (1, 2, 856) and head["same_codec"].shape == (1, 2, 1280)
    together = np.concatenate([stages["as_is"], head["as_is"]], -1)
    assert np.array_equal(together, feats["as_is"])  # nothing lost, nothing twice


def test_the_xception_probe_contends_with_the_bundled_recipe_in_a_headline_only_run():
    wild = benchmark_script("wild")
    rng = np.random.default_rng(0)
    feats = {short: {"chain": rng.normal(size=(3, 2, n)), "plain": rng.normal(size=(3, 2, n)),
                     "thumb": rng.normal(size=(3, n)), **{c: rng.normal(size=(3, n)) for c in wild.CONDITIONS}}
             for short, n in (("lite2", 5), ("xception", 7))}
    headline = wild.probe_contenders(feats, {}, headline_only=True)
    assert set(headline) == {wild.CHAIN_RECIPE, wild.BUNDLED_RECIPE, wild.XCEPTION_RECIPE,
                             wild.CONTENT_BASELINE}
    x, view, weighted = headline[wild.XCEPTION_RECIPE]
    assert view == "same_size_view" and not weighted and np.array_equal(x[view][:, 0], feats["xception"]["same_size"])
    assert "xception probe (codec chain)" not in wild.probe_contenders(feats, {})  # LEAN: no chain views
    assert "xception" in wild.PROBES and "xception" in wild.OPT_IN  # run only when asked: weights made by hand


def test_a_limited_run_keeps_other_rows_of_tables_with_the_same_images_and_says_whose_they_are(tmp_path):
    wild = benchmark_script("wild")
    same = {"images": 10, "folds": {"0": ["a"], "1": ["b"]}}
    earlier = {"date": "2026-11-27", "command": "python benchmarks/wild.py --old", **same,
               "contenders": {"lite2 probe (codec chain)": {"old": 1}, "lite0 probe (codec chain)": {"old": 2}},
               "probe_c_per_fold": {"lite2 probe (codec chain)": [0.3], "lite0 probe (codec chain)": [0.003]},
               "trained": {"fast fine-tuned": {"epochs": 6}},
               "photoreal": {**same, "contenders": {"npr": {"old": 3}, "lite2 probe (codec chain)": {"old": 4}},
                             "content_matched": {"npr": {"old": 5}}, "trained": {"npr": {"epochs": 12}}}}
    (tmp_path / "wild.json").write_text(json.dumps(earlier))

    def run(photoreal_images: int) -> dict:
        return {**same, "contenders": {"lite2 probe (codec chain)": {"new": 1}},
                "probe_c_per_fold": {"lite2 probe (codec chain)": [0.001]}, "trained": {},
                "photoreal": {"images": photoreal_images, "folds": same["folds"],
                              "contenders": {"lite2 probe (codec chain)": {"new": 4}}, "content_matched": {},
                              "trained": {}}}

    result = run(10)
    wild.keep_earlier(result, tmp_path / "wild.json")
    assert result["contenders"] == {"lite2 probe (codec chain)": {"new": 1}, "lite0 probe (codec chain)": {"old": 2}}
    assert result["probe_c_per_fold"] == {"lite0 probe (codec chain)": [0.003], "lite2 probe (codec chain)": [0.001]}
    assert result["from_earlier_run"] == {"lite0 probe (codec chain)": {"date": "2026-11-27",
                                                                        "command": "python benchmarks/wild.py --old"}}
    photoreal = result["photoreal"]
    assert photoreal["contenders"] == {"lite2 probe (codec chain)": {"new": 4}, "npr": {"old": 3}}
    assert photoreal["content_matched"] == {"npr": {"old": 5}} and photoreal["trained"] == {"npr": {"epochs": 12}}
    assert list(photoreal["from_earlier_run"]) == ["npr"]
    grown = run(11)  # the photoreal images changed: none of its earlier rows are comparable
    wild.keep_earlier(grown, tmp_path / "wild.json")
    assert grown["photoreal"]["contenders"] == {"lite2 probe (codec chain)": {"new": 4}}
    assert "from_earlier_run" not in grown["photoreal"] and "lite0 probe (codec chain)" in grown["contenders"]
    (tmp_path / "wild.json").write_text(json.dumps({**result, "date": "2026-12-07", "command": "python second"}))
    again = run(10)
    wild.keep_earlier(again, tmp_path / "wild.json")
    assert again["from_earlier_run"]["lite0 probe (codec chain)"]["date"] == "2026-11-27"  # not the second run's
    assert again["photoreal"]["from_earlier_run"]["npr"]["date"] == "2026-11-27"


def test_matching_on_the_content_score_leaves_the_content_baseline_at_chance():
    """A content score that separates the classes well is near 0.5 on the matched images, which hold as
    many REAL as FAKE per score bin and only images of the mask."""
    wild = benchmark_script("wild")
    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(600, int), np.ones(400, int)]
    p = np.clip(rng.normal(0.35 + 0.3 * labels, 0.15), 0, 1)
    mask = np.ones(1000, bool)
    mask[:50] = False
    assert roc_auc_score(labels[mask], p[mask]) > 0.85
    keep = wild.matched(p, labels, mask)
    assert not keep[:50].any() and keep.sum() > 200
    assert labels[keep].sum() * 2 == keep.sum()
    assert abs(roc_auc_score(labels[keep], p[keep]) - 0.5) < 0.06
    assert np.array_equal(keep, wild.matched(p, labels, mask))  # seeded


def test_ensembles_pair_each_trace_model_with_each_lite2_probe_and_the_two_backbones():
    """The names are the rows of wild.md; each pair's P(fake) is the mean of its members' logits."""
    wild = benchmark_script("wild")
    rng = np.random.default_rng(1)
    p = {name: {c: rng.uniform(0.05, 0.95, 6) for c in wild.CONDITIONS}
         for name in (wild.CHAIN_RECIPE, wild.BUNDLED_RECIPE, wild.XCEPTION_RECIPE)}
    trace = {"npr": {c: rng.uniform(0.05, 0.95, 6) for c in wild.CONDITIONS}}
    out = wild.ensembles(p, trace)
    assert set(out) == {f"npr + {wild.CHAIN_RECIPE}, mean logit", f"npr + {wild.BUNDLED_RECIPE}, mean logit",
                        f"{wild.CHAIN_RECIPE} + {wild.XCEPTION_RECIPE}, mean logit"}
    logit = lambda q: np.log(q / (1 - q))  # noqa: E731
    pair = out[f"{wild.CHAIN_RECIPE} + {wild.XCEPTION_RECIPE}, mean logit"]["same_size"]
    expected = (logit(p[wild.CHAIN_RECIPE]["same_size"]) + logit(p[wild.XCEPTION_RECIPE]["same_size"])) / 2
    assert pair == pytest.approx(1 / (1 + np.exp(-expected)), abs=1e-6)
    without_xception = {k: v for k, v in p.items() if k != wild.XCEPTION_RECIPE}
    assert all(wild.XCEPTION_RECIPE not in name for name in wild.ensembles(without_xception, {}))


def test_the_source_capped_slice_keeps_no_source_above_its_share_and_small_sources_whole():
    wild = benchmark_script("wild")
    sizes = {"REAL": {"big": 90, **{f"r{i}": 10 for i in range(7)}, "tiny": 3},
             "FAKE": {"huge": 200, **{f"f{i}": 12 for i in range(9)}}}
    sources = np.array([s for cls in sizes for s, n in sizes[cls].items() for _ in range(n)])
    labels = np.array([int(cls == "FAKE") for cls in sizes for n in sizes[cls].values() for _ in range(n)])
    mask = np.ones(len(labels), bool)
    mask[sources == "r0"] = False  # outside the slice: never kept
    keep = wild.source_capped(sources, labels, mask)
    assert not keep[sources == "r0"].any()
    for cls in (0, 1):
        kept = sources[keep & (labels == cls)]
        names, counts = np.unique(kept, return_counts=True)
        assert counts.max() <= 0.15 * len(kept)  # the rule holds
    kept = {name: int((keep & (sources == name)).sum()) for name in np.unique(sources)}
    assert kept["tiny"] == 3 and all(kept[f"r{i}"] == 10 for i in range(1, 7))  # under the level: whole
    assert all(kept[f"f{i}"] == 12 for i in range(9))
    assert kept["big"] == 11 and kept["huge"] == 19  # the highest counts the rule allows: 11 of 74, 19 of 127
    assert np.array_equal(keep, wild.source_capped(sources, labels, mask))  # seeded
    few = np.array(["a"] * 5 + ["b"] * 3)
    capped = wild.source_capped(few, np.zeros(8, int), np.ones(8, bool))
    assert (capped & (few == "a")).sum() == (capped & (few == "b")).sum() == 3  # too few sources: equal shares
