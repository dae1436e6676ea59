"""Run by torchrun in test_distributed.py: train a few steps under DDP, save this rank's weights.

Arguments: data folder, output folder, optionally the `fast` stem (conv or whiten)."""

import sys
from pathlib import Path

import torch

from aivsreal.data.splits import SplitRecipe, prepare
from aivsreal.models import build_model, default_config
from aivsreal.train import distributed
from aivsreal.train.loop import TrainConfig, train

data, out, stem = Path(sys.argv[1]), Path(sys.argv[2]), (sys.argv[3:] or ["conv"])[0]
device = distributed.init(torch.device("cpu"))
rd = prepare(data, 32, None, SplitRecipe(val_fraction=0.25, seed=0))
model = build_model(default_config("fast", options={"widths": [32, 64, 128], "stem": stem}))
train(model, rd.train, rd.val, TrainConfig(epochs=2, batch_size=16, lr=0.05), out, device)
torch.save(model.state_dict(), out / f"rank{distributed.rank()}.pt")
distributed.finish()
