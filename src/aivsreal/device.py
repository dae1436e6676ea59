"""Pick the device and the mixed-precision mode once, so training and inference agree.

On CPU, bf16 autocast with channels_last trains `fast` 1.9x faster than fp32 and runs inference
1.6-3.3x faster (a 2-core AMX Xeon, benchmarks/results/precision.md) -- but only where the CPU does
bf16 natively (AVX512-BF16 or AMX), and not for every network: there it trained the depthwise-conv
Lite0 at 0.54x, so the Lite recipes keep CPU training in fp32 (TrainConfig.cpu_amp). On a plain
AVX2 CPU oneDNN emulates it, 8-18x slower than fp32 on 2026-11-29's AVX2-only AMD EPYC
(benchmarks/precision.py times both on any machine), so there autocast stays off and `--precision
bf16` quietly runs fp32. On CUDA, bf16 where the GPU has it, else fp16.
"""

from __future__ import annotations

import contextlib
import functools

import torch

from aivsreal.errors import AivsrealError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AivsrealError(f"--device {name}: no CUDA GPU is available here (use --device cpu)")
    if name != "cpu" and not name.startswith("cuda"):
        raise AivsrealError(f"--device {name}: expected auto, cpu or cuda[:N]")
    return torch.device(name)


@functools.cache  # asked once per batch; the CPU does not change under a running process
def cpu_bf16_native() -> bool:
    """Whether oneDNN runs bf16 on this CPU's own instructions rather than emulating it 8-18x slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN: assume no native bf16
        return False


def amp_enabled(device: torch.device) -> bool:
    """Whether mixed precision pays on `device`: every CUDA GPU, a CPU only with native bf16."""
    return device.type == "cuda" or cpu_bf16_native()


def train_amp(device: torch.device, cpu_amp: bool = True) -> bool:
    """Whether training steps run in mixed precision: wherever it pays, except on CPUs for recipes whose
    bf16 backward oneDNN runs slower than fp32 (Lite0's depthwise convs: 0.54x on an AMX Xeon)."""
    return amp_enabled(device) and (device.type == "cuda" or cpu_amp)


def amp_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=amp_dtype(device), enabled=enabled and amp_enabled(device))
