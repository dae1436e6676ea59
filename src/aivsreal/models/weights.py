"""Load weight files that come from elsewhere without ever running code from them."""

from __future__ import annotations

from pathlib import Path

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
