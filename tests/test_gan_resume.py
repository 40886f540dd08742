"""SIGKILL in the middle of a GAN run, then --resume: the final weights equal an uninterrupted run's exactly."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, needs_fashion, run_cli

ARGS = ["train", "gan", "--data", "fashion-mnist", "--sample", "0.01", "--image-size", "16", "--nz", "8", "--ngf", "4",
        "--ndf", "4", "--batch-size", "8", "--n-samples", "4", "--log-every", "2", "--sample-every", "5",
        "--checkpoint-every", "3", "--deterministic", "--quiet", "--seed", "3"]
ENV = {"OMP_NUM_THREADS": "1"}


def final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)


def kill_after_first_checkpoint(args: list[str], run_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), **ENV}
    process = subprocess.Popen([sys.executable, "-m", "darkroom", *args], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (run_dir / "checkpoints" / "last.pt").exists():
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert json.loads((run_dir / "status.json").read_text())["status"] == "running"  # it died mid-run


@pytest.mark.slow
@needs_fashion
@pytest.mark.parametrize("loss, extra", [
    ("wgan-gp", []), ("wgan", []), ("wgan-gp", ["--lr-decay", "linear"]),
    # the EMA (ramped, BatchNorm generator: standing statistics at each checkpoint), DiffAugment's stream, spectral
    # norm's power-iteration vectors, TTUR and packing (the penalty's weights per packed input)
    ("hinge", ["--spectral-norm", "--lr-d", "3e-4", "--ema", "0.9", "--ema-rampup", "0.05", "--diffaugment",
               "color,translation,cutout"]),
    ("wgan-gp", ["--packing", "2", "--diffaugment", "translation,cutout", "--ema", "0.95"]),
], ids=["wgan-gp", "wgan", "wgan-gp-decay", "hinge-sn-ema-diffaugment", "wgan-gp-packing-diffaugment-ema"])
def test_sigkill_then_resume_matches_uninterrupted(tmp_path, loss, extra):
    args = ARGS + ["--loss", loss, "--iterations", "12", "--warmup-critic", "off", *extra]
    straight = run_cli(args + ["--out", str(tmp_path / "straight")], env=ENV)
    assert straight.returncode == 0, straight.stderr[-2000:]

    killed = tmp_path / "killed"
    kill_after_first_checkpoint(args + ["--out", str(killed)], killed)
    interrupted_at = final_state(killed)["state"]["iteration"]
    resumed = run_cli(args + ["--out", str(killed), "--resume"], env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed {killed} at generator iteration {interrupted_at}" in resumed.stdout + resumed.stderr

    a, b = final_state(tmp_path / "straight"), final_state(killed)
    assert a["state"]["iteration"] == b["state"]["iteration"]
    nets = ("generator", "critic", "generator_ema") if "--ema" in extra else ("generator", "critic")
    for net in nets:
        for name, tensor in a[net].items():
            assert torch.equal(tensor, b[net][name]), f"{net}.{name} differs after resume"
    assert ("augment" in a and a["augment"] is not None) == ("--diffaugment" in extra)
    if "--diffaugment" in extra:
        assert torch.equal(a["augment"], b["augment"])  # the same draws consumed
    for name, tensor in a["opt_d"]["state"][0].items():
        assert torch.equal(tensor, b["opt_d"]["state"][0][name])
    iterations = lambda run: [json.loads(line)["iteration"] for line in (run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert iterations(tmp_path / "straight") == iterations(killed)
    losses = lambda run: [json.loads(line)["critic_loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert losses(tmp_path / "straight") == losses(killed)
    if loss == "wgan-gp":  # a changed setting, or a second run into the same folder, is refused in one sentence
        changed = run_cli(args + ["--out", str(killed), "--resume", "--lr", "0.001"], env=ENV)
        assert changed.returncode == 2 and "--lr differs from the run being resumed" in changed.stderr
        again = run_cli(args + ["--out", str(killed)], env=ENV)
        assert again.returncode == 2 and "already holds a run" in again.stderr
