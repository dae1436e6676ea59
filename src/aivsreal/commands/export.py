"""`aivsreal export`: a model in another format: ONNX for onnxruntime, or a Hugging Face-style folder."""

from __future__ import annotations

from pathlib import Path

from aivsreal.errors import AivsrealError
from aivsreal.models.hub import resolve_model
from aivsreal.predict.onnx import export_onnx

FORMATS = ("onnx", "hf")


def export_model(model_path: str | Path, fmt: str = "onnx", out: str | Path | None = None, half: bool = False) -> Path:
    if half and fmt != "hf":
        raise AivsrealError(f"--half stores fp16 weights for --format hf; the {fmt} export has no such option")
    source = resolve_model(model_path)
    default = source.run_dir / source.name if source.kind != "file" else source.path.with_suffix("")
    if fmt == "onnx":
        return export_onnx(source, out or default.with_name(default.name + ".onnx"))
    if fmt == "hf":
        from aivsreal.predict.detector import Detector

        return Detector.load(source, device="cpu").save_pretrained(out or default.with_name(default.name + "-hf"),
                                                                       half=half)
    raise AivsrealError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
