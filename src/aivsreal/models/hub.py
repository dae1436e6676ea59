"""Where a model comes from: a model.pt file, a Hugging Face-style folder, a bundled detector, the Hub.

A Hugging Face-style folder is what `Detector.save_pretrained` writes and the Hub hosts:
`model.safetensors` (weights only: no code can hide in it), `config.json` (the model config and
everything `ModelMeta` holds, the domain check included) and `README.md` (the model card).
Bundled detectors are such folders shipped inside the package (`aivsreal models` lists them).
A model reference is resolved in this order: an existing file, an existing folder, a bundled
name, then a Hub repo id ("owner/name", downloaded once into the Hugging Face cache).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aivsreal.errors import AivsrealError
from aivsreal.models._registry import build_model
from aivsreal.models.file import (
    CLASS_NAMES,
    FORMAT,
    FORMAT_VERSION,
    ModelMeta,
    check_weights,
    load_model_file,
    read_config,
)
from aivsreal.models.network import DetectorNet
from aivsreal.safe_io import atomic_write

BUNDLED = Path(__file__).resolve().parent.parent / "bundled"
DEFAULT_MODEL = "cifake"
WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MODEL_SUFFIXES = (".pt", ".pth", ".onnx")


@dataclass(frozen=True)
class ModelSource:
    path: Path  # a model file, or a folder holding WEIGHTS and CONFIG
    kind: str  # "file", "folder", "bundled" or "hub"
    name: str

    @property
    def run_dir(self) -> Path:
        """Where verbs write their outputs by default: beside a user's model, never inside the package."""
        if self.kind == "file":
            return self.path.parent
        return self.path if self.kind == "folder" else Path("runs") / self.name

    @property
    def card(self) -> str | None:
        card = self.path / CARD if self.path.is_dir() else None
        return card.read_text() if card and card.is_file() else None


def bundled_names() -> list[str]:
    return sorted(p.name for p in BUNDLED.iterdir() if (p / CONFIG).is_file()) if BUNDLED.is_dir() else []


ModelRef = str | Path | ModelSource | None


def resolve_model(ref: ModelRef) -> ModelSource:
    """The model a user means; None is the default bundled detector. A ModelSource is already resolved:
    callers that need its folder and its weights resolve once (a Hub id is not looked up twice)."""
    if isinstance(ref, ModelSource):
        return ref
    ref = DEFAULT_MODEL if ref is None else ref
    path = Path(ref)
    if path.is_file():
        return ModelSource(path, "file", path.stem if path.stem != "model" else path.parent.name or "model")
    if path.is_dir():
        if not (path / CONFIG).is_file():
            raise AivsrealError(f"{path} is a folder without {CONFIG}: give a model file, or a folder written by "
                                "Detector.save_pretrained / `aivsreal export --format hf`")
        return ModelSource(path, "folder", path.name)
    if str(ref) in bundled_names():
        return ModelSource(BUNDLED / str(ref), "bundled", str(ref))
    if (path.suffix in MODEL_SUFFIXES or path.is_absolute() or str(ref).startswith(".")
            or Path(path.parts[0]).is_dir()):  # runs/fast: a local path that is not there, not a Hub id
        raise AivsrealError(f"model file {ref} not found")
    if REPO_ID.match(str(ref)):
        return ModelSource(_download(str(ref)), "hub", str(ref).replace("/", "--"))
    raise AivsrealError(f"no model {str(ref)!r}: not a file, a folder, a bundled detector "
                        f"({', '.join(bundled_names()) or 'none installed'}) or a Hub repo id (owner/name)")


def _download(repo_id: str) -> Path:
    """A Hub repo's files (only the three we read), cached by huggingface_hub; needs the network once."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=[WEIGHTS, CONFIG, CARD]))
    except Exception as e:  # noqa: BLE001 - offline, missing repo, auth: all one line for the user
        raise AivsrealError(f"cannot fetch {repo_id!r} from the Hugging Face Hub ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}); check the id and the network, or "
                            "download the folder and pass its path") from None


def load_model(ref: ModelRef) -> tuple[DetectorNet, ModelMeta]:
    """Any model reference -> the network in eval mode and its metadata."""
    source = resolve_model(ref)
    return load_model_file(source.path) if source.kind == "file" else load_pretrained(source.path)


def load_pretrained(folder: Path) -> tuple[DetectorNet, ModelMeta]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    where = str(folder)
    try:
        stored = json.loads((folder / CONFIG).read_text())
        state = load_file(folder / WEIGHTS)
    except (OSError, ValueError, SafetensorError) as e:
        raise AivsrealError(f"{where}: unreadable {CONFIG} or {WEIGHTS} ({type(e).__name__}); the folder is "
                            "damaged or incomplete") from None
    if not isinstance(stored, dict) or stored.get("format") != FORMAT or not isinstance(stored.get("config"), dict):
        raise AivsrealError(f"{where}: {CONFIG} is not an aivsreal model config")
    if not isinstance(stored.get("format_version"), int) or stored["format_version"] > FORMAT_VERSION:
        raise AivsrealError(f"{where}: model format v{stored.get('format_version')} is not one this aivsreal "
                            f"reads (up to v{FORMAT_VERSION}); upgrade aivsreal")
    config = read_config(stored["config"], where)
    check_weights(state, where)
    network = build_model(config)
    try:
        network.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as e:
        raise AivsrealError(f"{where}: weights do not fit model {config.name!r} ({str(e).splitlines()[0]})") \
            from None
    return network.eval(), ModelMeta.from_dict(stored.get("meta", {}), where)


def save_pretrained(folder: str | Path, network: DetectorNet, meta: ModelMeta, card: str,
                    half: bool = False) -> Path:
    """Write WEIGHTS, CONFIG and CARD; `half` stores float weights as fp16 (loaded back as fp32)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    config: dict[str, Any] = {
        "format": FORMAT, "format_version": 1, "library": "aivsreal", "config": network.config.to_dict(),
        "class_names": list(CLASS_NAMES), "output": "logit of P(FAKE)", "weights_dtype": "float16" if half
        else "float32", "meta": meta.to_dict(),
    }
    tmp = folder / (WEIGHTS + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(folder / WEIGHTS)
    atomic_write(folder / CONFIG, lambda f: f.write(json.dumps(config, indent=1).encode()))
    atomic_write(folder / CARD, lambda f: f.write(card.encode()))
    return folder

