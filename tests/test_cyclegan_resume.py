"""Exact resume: a CycleGAN run killed with SIGKILL and resumed ends bit for bit where an uninterrupted one does,
nets, optimizers, both history pools and the logged losses included (CPU, deterministic mode)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, assert_same, run_cli
from test_cyclegan_train import TINY, unpaired_layout

pytestmark = pytest.mark.slow

ENV = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
TIMING = ("images_per_s", "train_time")


def args_for(data, out):
    # 12 images per domain, batch 2: 6 iterations per epoch, 3 + 3 epochs; a pool of 3 is full after two
    # iterations, so most of the run swaps pooled fakes
    return ["train", "cyclegan", "--data", str(data), *TINY, "--val-images", "0", "--load-size", "20", "--crop-size", "16",
            "--batch-size", "2", "--epochs", "3", "--epochs-decay", "3", "--pool-size", "3", "--deterministic",
            "--checkpoint-every", "2", "--log-every", "1", "--sample-every", "0", "--padding", "zero", "--out", str(out)]


def losses(out):
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{key: value for key, value in line.items() if key not in TIMING} for line in lines]


def kill_after_first_checkpoint(args, checkpoint_file):
    process = subprocess.Popen([sys.executable, "-m", "darkroom", *args], env={**os.environ, **ENV},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not checkpoint_file.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return process.returncode


def test_resume_after_sigkill_is_exact(tmp_path):
    data = unpaired_layout(tmp_path / "set", "L", count=12)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    result = run_cli(args_for(data, whole), env=ENV)
    assert result.returncode == 0, result.stderr

    code = kill_after_first_checkpoint(args_for(data, killed), killed / "checkpoints" / "last.pt")
    assert code == -signal.SIGKILL
    step_at_kill = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)["state"]["step"]
    assert 2 <= step_at_kill < 36  # killed part-way: the resume has work to redo
    result = run_cli([*args_for(data, killed), "--resume", "--workers", "1"], env=ENV)
    assert result.returncode == 0, result.stderr
    assert f"resumed {killed} at step {step_at_kill} of 36" in result.stdout

    expected = torch.load(whole / "checkpoints" / "last.pt", weights_only=True)
    actual = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)
    assert actual["state"]["step"] == 36
    for key in ("g_ab", "g_ba", "d_a", "d_b", "opt_g", "opt_d", "scaler", "ranks"):
        assert_same(expected[key], actual[key], key)
    pools = actual["ranks"][0]["pools"]
    assert pools[0]["images"].shape[0] == pools[1]["images"].shape[0] == 3
    assert losses(killed) == losses(whole)
    assert json.loads((killed / "status.json").read_text())["resumes"] == 1
