"""`aivsreal export`: a model file to ONNX, with its preprocessing in the file's metadata.

The graph takes float32 pixels in [0, 255], NCHW, at the model's image size, with a dynamic
batch axis, and returns P(FAKE) per image (test-time flip averaging included when the model
uses it, and the temperature from `--calibrate`), so onnxruntime users need only decode,
resize and transpose.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from aivsreal.errors import AivsrealError
from aivsreal.models import Detector as Network
from aivsreal.models.file import load_model

OPSET = 17


class ProbabilityHead(nn.Module):
    """The network plus what inference adds on top: flip averaging, temperature and the sigmoid."""

    def __init__(self, network: Network, tta: bool, temperature: float = 1.0):
        super().__init__()
        self.network, self.tta, self.temperature = network, tta, temperature

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        logit = self.network(pixels)
        if self.tta:
            logit = (logit + self.network(pixels.flip(3))) / 2
        return torch.sigmoid(logit / self.temperature)


def onnx_metadata(network: Network, meta: dict) -> dict[str, str]:
    cfg = network.config
    return {
        "aivsreal": json.dumps({
            "name": cfg.name, "config": cfg.to_dict(), "threshold": meta.get("threshold", 0.5),
            "tta": bool(meta.get("tta")), "temperature": float(meta.get("temperature", 1.0)),
            "class_names": meta.get("class_names", ["REAL", "FAKE"]),
            "aivsreal_version": meta.get("aivsreal_version"),
        }),
        "preprocessing": (f"decode to RGB (EXIF-rotated, alpha over white), bicubic resize to "
                          f"{cfg.image_size}x{cfg.image_size}, float32 NCHW pixels in [0, 255]; "
                          "normalisation is inside the graph"),
        "output": "p_fake: P(FAKE) per image; FAKE when p_fake >= threshold",
    }


def export_onnx(model_path: str | Path, out_path: str | Path) -> Path:
    import onnx

    network, meta = load_model(model_path)
    head = ProbabilityHead(network.float().eval(), bool(meta.get("tta")),
                           float(meta.get("temperature", 1.0))).eval()
    size = network.config.image_size
    example = torch.rand(2, 3, size, size) * 255
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about constant shapes: expected here
            torch.onnx.export(head, (example,), str(out_path), input_names=["pixels"], output_names=["p_fake"],
                              dynamic_axes={"pixels": {0: "batch"}, "p_fake": {0: "batch"}},
                              opset_version=OPSET, dynamo=False)
    except Exception as e:
        raise AivsrealError(f"ONNX export of {model_path} failed ({type(e).__name__}: {e})") from None
    model = onnx.load(str(out_path))
    for key, value in onnx_metadata(network, meta).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(out_path))
    return out_path
