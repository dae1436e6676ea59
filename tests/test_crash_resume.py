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
