"""Multi-process training with PyTorch's own engine: `torchrun --nproc_per_node N -m aivsreal train`.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; we join the process group (NCCL on GPUs, gloo
on CPU), give each rank its own slice of every epoch's permutation (what DistributedSampler
does) and let rank 0 alone log, checkpoint, evaluate and write files.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> torch.device:
    """Join the process group if torchrun started us; returns this rank's device."""
    if not launched_by_torchrun() or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def sync_from_main(model: torch.nn.Module) -> None:
    """Copy rank 0's buffers to every rank.

    DDP keeps parameters equal, but each rank's last forward updates its BatchNorm running
    statistics from its own batch; without this the ranks' validation losses, and so their
    early-stopping decisions, could differ and leave one rank waiting for the others forever.
    """
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def finish() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
