"""A classifier run killed with SIGKILL mid-epoch and resumed ends with the uninterrupted run's exact weights."""
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, needs_fashion, run_cli
from darkroom import checkpoint

# the CPU speed preset: its first 2 of these 3 epochs train at 20 px, so a kill may fall on either side of the switch
ARGS = ["train", "classifier", "--preset", "fashion-mnist-cpu", "--data", "fashion-mnist", "--sample", "0.04",
        "--test-sample", "0.05", "--epochs", "3", "--batch-size", "100", "--checkpoint-every", "3",
        "--deterministic", "--quiet", "--ema", "0.9"]


def final_weights(out):
    return checkpoint.load(out / "checkpoints" / "last.pt")


@needs_fashion
@pytest.mark.slow
@pytest.mark.parametrize("processes", ["1", "2"])
def test_sigkill_mid_epoch_then_resume_is_exact(tmp_path, processes):
    """processes 2: the parent launcher is killed; its ranks must die with it (else the resume finds the run live)."""
    args = [*ARGS, "--processes", processes]
    reference = tmp_path / "reference"
    assert run_cli([*args, "--out", str(reference)]).returncode == 0

    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    process = subprocess.Popen([sys.executable, "-m", "darkroom", *args, "--out", str(killed)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(random.Random(os.getpid()).uniform(0.0, 0.2))  # a random point after the first checkpoint (the whole
    # run takes about 1 s after it on an AVX-512 CPU, so a longer wait may find it finished)
    process.send_signal(signal.SIGKILL)
    process.wait()
    state = final_weights(killed)["state"]
    assert state["step"] < 36, "the run finished before it was killed; the test proves nothing"

    resumed = run_cli([*args, "--out", str(killed), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout
    a, b = final_weights(reference), final_weights(killed)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["ema"]:
        assert torch.equal(a["ema"][key], b["ema"][key]), key
    metrics = (killed / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 3  # one line per epoch, none duplicated by the resume
    assert metrics == (reference / "metrics.jsonl").read_text().splitlines() or all(
        '"epoch": %d' % (i + 1) in line for i, line in enumerate(metrics))


@needs_fashion
def test_resume_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "run"
    short = [*ARGS, "--epochs", "0.2", "--progressive", ""]  # the preset's 20 px stage outlasts 0.2 epochs
    assert run_cli([*short, "--out", str(out)]).returncode == 0
    result = run_cli([*short, "--lr", "0.01", "--out", str(out), "--resume"])
    assert result.returncode == 2 and "--lr" in result.stderr
