"""Two gloo processes on CPU: DistributedDataParallel keeps both ranks' weights identical."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch


def torchrun(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *map(str, args)], capture_output=True, text=True, timeout=600, cwd=cwd)


# whiten: each rank fits the stem on its own first batch; this shows the ranks still end equal under
# torchrun (DDP also broadcasts buffers, so it cannot single out the covariance all-reduce).
@pytest.mark.parametrize("stem", ["conv", "whiten"])
def test_two_ranks_end_with_identical_weights(tiny_data, tmp_path, stem):
    r = torchrun(Path(__file__).parent / "ddp_worker.py", tiny_data, tmp_path, stem)
    assert r.returncode == 0, r.stderr[-3000:]
    w0, w1 = (torch.load(tmp_path / f"rank{i}.pt", weights_only=True) for i in (0, 1))
    assert w0.keys() == w1.keys()
    # Each rank trained on its own half of every epoch: only DDP's gradient sync keeps them equal.
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert (tmp_path / "checkpoint.pt").exists()  # written by rank 0


def test_cli_under_torchrun_writes_one_model(tiny_data, tmp_path):
    out = tmp_path / "run"
    r = torchrun("-m", "aivsreal", "train", "--data", tiny_data, "--out", out, "--epochs", "2",
                 "--batch-size", "16", "--no-eval", "--device", "cpu", "--no-cache")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "model.pt").exists() and (out / "history.csv").exists()
    assert r.stderr.count("epoch 2/2") == 1  # rank 0 alone logs
    assert r.stdout.count("model: ") == 1  # and alone prints the summary


def test_ranks_probing_one_output_folder_at_once_do_not_collide(tmp_path):
    # torchrun starts every rank at the same moment, and each checks --out before training.
    from concurrent.futures import ThreadPoolExecutor

    from aivsreal.safe_io import writable_dir

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: writable_dir(tmp_path / "run"), range(2000)))
    assert list((tmp_path / "run").iterdir()) == []  # no probe left behind
