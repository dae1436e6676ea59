"""ONNX: `aivsreal export` writes a model file as ONNX, `OnnxScorer` runs one with onnxruntime.

The graph takes float32 pixels in [0, 255], NCHW, at the model's view size, with a dynamic
batch axis, and returns P(FAKE) per view (test-time flip averaging included when the model
uses it, and the temperature from `--calibrate`). A whole-image model has one view per image
(the image resized), so onnxruntime users need only decode, resize and transpose. A native-crop
model (`train --crop N`) has up to 9 views per image: N px tiles cut at native resolution (or, for a
model with `rescale` S, from the image resized to a shorter side of S px), whose logits are averaged
outside the graph. The metadata says which, in words (`preprocessing`)
and as data (`views`), so that onnxruntime alone reproduces `predict` (docs: the export recipe).
A second output, `features`, feeds the domain check stored in the file's metadata (the geometry
half needs the image's size before decoding, which the graph never sees).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from aivsreal.errors import AivsrealError
from aivsreal.models import DetectorNet, ModelConfig
from aivsreal.models.file import CLASS_NAMES, ModelMeta, read_config
from aivsreal.models.hub import ModelRef, load_model, resolve_model
from aivsreal.models.network import forward_with_features

OPSET = 17


class ProbabilityHead(nn.Module):
    """The network plus what inference adds on top: flip averaging, temperature and the sigmoid."""

    def __init__(self, network: DetectorNet, tta: bool, temperature: float = 1.0):
        super().__init__()
        self.network, self.tta, self.temperature = network, tta, temperature

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit, features = forward_with_features(self.network, pixels, self.tta)
        return torch.sigmoid(logit / self.temperature), features


def onnx_metadata(network: DetectorNet, meta: ModelMeta) -> dict[str, str]:
    cfg = network.config
    return {
        "aivsreal": json.dumps({
            "name": cfg.name, "config": cfg.to_dict(), "threshold": meta.threshold, "tta": meta.tta,
            "temperature": meta.temperature, "class_names": list(CLASS_NAMES),
            "aivsreal_version": meta.aivsreal_version,
            "domain": meta.domain.to_dict() if meta.domain else None, "experimental": meta.experimental,
        }),
        "preprocessing": preprocessing(cfg),
        "views": json.dumps(views(cfg)),
        "output": ("p_fake: P(FAKE) per view; FAKE when the image's P(FAKE) >= threshold. features: the penultimate "
                   "features the domain check in the aivsreal metadata reads (models/domain.py), averaged over "
                   "an image's views"),
    }


def views(cfg: ModelConfig) -> dict[str, object]:
    """What the graph's batch holds per image, as data a non-Python runtime can follow."""
    if cfg.crop is None:
        return {"kind": "resize", "size": cfg.image_size, "resample": "bicubic", "per_image": 1}
    rescale = {} if cfg.rescale is None else {
        "rescale": cfg.rescale, "draft": cfg.draft,
        "rescale_rule": "before tiling, an image whose shorter side is over rescale px is resized (Pillow bicubic) "
                        "to shorter side rescale, longer side round(L*rescale/shorter), never scaled up; with draft, "
                        "a JPEG whose shorter side is >= 2*rescale is first decoded at the DCT scale Pillow's "
                        "draft('RGB', (rescale, rescale)) picks",
        **({} if cfg.reencode is None else {
            "reencode": cfg.reencode, "reencode_rule": "after the resize (or none), every image is saved as JPEG at "
                                                       "quality reencode (Pillow, 4:2:0) and decoded again"})}
    return {"kind": "native_tiles", "size": cfg.crop, "max_tiles": cfg.max_tiles, **rescale,
            "grid": "per axis ceil(L/size) tiles capped at floor(sqrt(max_tiles)), origins round(i*(L-size)/(n-1)); "
            "a side under size is reflect-padded", "aggregate": "sigmoid(mean of logit(p_fake)) over the image's tiles"}


def preprocessing(cfg: ModelConfig) -> str:
    decode = "decode to RGB (EXIF-rotated, alpha over white)"
    tail = "float32 NCHW pixels in [0, 255]; normalisation is inside the graph"
    if cfg.crop is None:
        return f"{decode}, bicubic resize to {cfg.image_size}x{cfg.image_size}, {tail}"
    n = cfg.crop
    if cfg.rescale:
        draft = " (a JPEG whose shorter side is at least twice that decoded at a reduced DCT scale first)" \
            if cfg.draft else ""
        decode = (f"{decode}, an image whose shorter side is over {cfg.rescale} px resized (bicubic, antialiased) "
                  f"to shorter side {cfg.rescale}{draft}, a smaller one kept as it is, never scaled up;"
                  + (f" then saved as JPEG q{cfg.reencode} and decoded again;" if cfg.reencode else ""))
    else:
        decode = f"{decode} at native resolution, never resized;"
    return (f"{decode} cut up to {cfg.max_tiles} {n}x{n} tiles spread evenly over the image (per axis "
            f"ceil(side/{n}) tiles, at most {int(cfg.max_tiles ** 0.5)}, the first at 0 and the last at side-{n}; "
            f"a side under {n} px is reflect-padded); {tail}; run every tile, then the image's "
            "P(FAKE) = sigmoid(mean over its tiles of log(p/(1-p)))")


def export_onnx(model_path: ModelRef, out_path: str | Path) -> Path:
    import onnx

    source = resolve_model(model_path)
    network, meta = load_model(source)
    head = ProbabilityHead(network.float().eval(), meta.tta, meta.temperature).eval()
    size = network.config.crop or network.config.image_size
    example = torch.rand(2, 3, size, size) * 255
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about constant shapes: expected here
            torch.onnx.export(head, (example,), str(out_path), input_names=["pixels"],
                              output_names=["p_fake", "features"],
                              dynamic_axes={"pixels": {0: "batch"}, "p_fake": {0: "batch"}, "features": {0: "batch"}},
                              opset_version=OPSET, dynamo=False)
    except Exception as e:
        raise AivsrealError(f"ONNX export of {source.path} failed ({type(e).__name__}: {e})") from None
    model = onnx.load(str(out_path))
    for key, value in onnx_metadata(network, meta).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(out_path))
    return out_path


class OnnxScorer:
    """onnxruntime on a file from `aivsreal export` (the graph includes TTA and the sigmoid)."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as e:
            raise AivsrealError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None
        props = self.session.get_modelmeta().custom_metadata_map
        if "aivsreal" not in props:
            raise AivsrealError(f"{path}: not an ONNX file made by `aivsreal export`")
        try:
            stored = json.loads(props["aivsreal"])
            self.config = read_config(stored["config"], str(path))
        except (ValueError, KeyError, TypeError) as e:
            raise AivsrealError(f"{path}: damaged aivsreal metadata in the ONNX file ({type(e).__name__})") from None
        self.meta = ModelMeta.from_dict(stored, str(path))
        # exports before 0.2 have only p_fake
        self.outputs = [o.name for o in self.session.get_outputs() if o.name in ("p_fake", "features")]

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """P(FAKE), and the features where the file has them."""
        x = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32)
        out = dict(zip(self.outputs, self.session.run(self.outputs, {"pixels": x}), strict=True))
        return out["p_fake"].astype(np.float64), out.get("features")
