"""SIGKILL a real training run, then --resume: it finishes from the last complete checkpoint."""

import signal
import subprocess
import sys
import time

import torch

from aivsreal.predict.detector import Detector
from aivsreal.safe_io import safe_load

EPOCHS = 40


def test_sigkill_mid_run_then_resume(tiny_data, tmp_path, cache_dir):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "aivsreal", "train", "--data", str(tiny_data), "--out", str(out),
           "--cache-dir", str(cache_dir), "--epochs", str(EPOCHS), "--batch-size", "16", "--no-eval",
           "--patience", str(EPOCHS)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = out / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.05)  # well inside a later epoch (or mid-write of its checkpoint)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"

    done = safe_load(ckpt, "training checkpoint")["state"]["epoch"]  # must load: never half-written
    assert 1 <= done < EPOCHS
    assert not (out / "model.pt").exists()

    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {ckpt} after epoch {done}" in resumed.stderr
    assert safe_load(ckpt, "training checkpoint")["state"]["epoch"] == EPOCHS
    det = Detector.load(out / "model.pt", device="cpu")
    assert all(torch.isfinite(p).all() for p in det.scorer.model.parameters())
    preds = det.predict(sorted((tiny_data / "test" / "FAKE").glob("*.jpg"))[:5])
    assert all(p.label in ("REAL", "FAKE") for p in preds)

    # Same seed, same model: an uninterrupted run ends with exactly the weights of the killed-and-resumed one.
    straight = tmp_path / "straight"
    cmd_straight = [straight if part == str(out) else part for part in cmd]
    ran = subprocess.run([str(c) for c in cmd_straight], capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr
    a = safe_load(out / "model.pt")["state_dict"]
    b = safe_load(straight / "model.pt")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_weights(tiny_data, tmp_path, cache_dir):
    """Two CPU runs with one seed give identical weights (users cannot trust numbers they cannot rerun)."""
    from aivsreal.cli import main

    weights = []
    for name in ("a", "b"):
        assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / name), "--cache-dir",
                     str(cache_dir), "--epochs", "2", "--batch-size", "16", "--no-eval", "--seed", "5",
                     "--degrade", "0.5"]) == 0
        weights.append(safe_load(tmp_path / name / "model.pt")["state_dict"])
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "c"), "--cache-dir", str(cache_dir),
                 "--epochs", "2", "--batch-size", "16", "--no-eval", "--seed", "6"]) == 0
    other = safe_load(tmp_path / "c" / "model.pt")["state_dict"]
    assert not all(torch.equal(weights[0][k], other[k]) for k in other)  # the seed does matter
