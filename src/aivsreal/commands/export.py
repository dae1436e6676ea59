"""`aivsreal export`: a model file in another format (ONNX for onnxruntime)."""

from __future__ import annotations

from pathlib import Path

from aivsreal.errors import AivsrealError
from aivsreal.predict.onnx import export_onnx

FORMATS = ("onnx",)


def export_model(model_path: str | Path, fmt: str = "onnx", out: str | Path | None = None) -> Path:
    if fmt == "onnx":
        return export_onnx(model_path, out or Path(model_path).with_suffix(".onnx"))
    raise AivsrealError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
