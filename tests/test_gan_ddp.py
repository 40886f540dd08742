"""A 2-process torchrun WGAN-GP critic step (CPU, gloo) gives the gradients of one process on the union batch."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "scripts" / "gan_ddp_step.py"


def run(args: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_two_ranks_match_one_process_on_the_union_batch(tmp_path):
    run([str(SCRIPT), str(tmp_path / "single.pt")], tmp_path)
    run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT), str(tmp_path / "ddp.pt")],
        tmp_path)
    single = torch.load(tmp_path / "single.pt")
    ddp = torch.load(tmp_path / "ddp.pt")
    assert single["world_size"] == 1 and ddp["world_size"] == 2
    for name in ("critic", "generator"):
        assert len(single[name]) == len(ddp[name])
        assert sum(one.abs().sum().item() for one in single[name]) > 0
        for one, two in zip(single[name], ddp[name]):
            scale = one.abs().max().item()
            # to 1e-5 of the gradient's own size: penalty gradients at init reach ~1e3, where fp32 sums in a
            # different order (two halves then an all-reduce) already differ by ~1e-4 absolute
            assert (two - one).abs().max().item() <= 1e-5 * max(1.0, scale), name


@pytest.mark.slow
def test_trainer_runs_under_torchrun(tmp_path):
    # the whole loop on 2 ranks: BatchNorm critic (wgan) called three ways, stats all-reduced, rank 0 writes
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image
    for i in range(8):
        Image.new("L", (16, 16), 30 * i).save(images / f"{i}.png")
    run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "darkroom", "train", "gan",
         "--data", str(images), "--image-size", "16", "--nz", "8", "--ngf", "4", "--ndf", "4", "--batch-size", "4",
         "--iterations", "2", "--n-critic", "2", "--loss", "wgan", "--warmup-critic", "off", "--log-every", "1",
         "--quiet", "--out", str(tmp_path / "run")], tmp_path)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


@pytest.mark.slow
def test_trainer_options_under_torchrun(tmp_path):
    # spectral norm's power iterations and the EMA on each rank, DiffAugment and the penalty's weights drawn for the
    # global batch (each rank its rows), packs of 2 within each rank's half; packs that cannot fit are refused
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image
    for i in range(8):
        Image.new("L", (16, 16), 30 * i).save(images / f"{i}.png")
    args = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "darkroom", "train", "gan",
            "--data", str(images), "--image-size", "16", "--nz", "8", "--ngf", "4", "--ndf", "4", "--batch-size", "4",
            "--iterations", "2", "--n-critic", "2", "--warmup-critic", "off", "--log-every", "1", "--quiet",
            "--spectral-norm", "--ema", "0.9", "--diffaugment", "color,translation,cutout"]
    for loss in ("wgan-gp", "hinge"):
        run(args + ["--loss", loss, "--packing", "2", "--out", str(tmp_path / loss)], tmp_path)
        saved = torch.load(tmp_path / loss / "checkpoints" / "last.pt", weights_only=True)
        assert saved["state"]["iteration"] == 2 and saved["generator_ema"] is not None
        assert len(saved["ranks"]) == 2
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    refused = subprocess.run([sys.executable, *args, "--packing", "4", "--out", str(tmp_path / "refused")],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert refused.returncode != 0
    assert "--batch-size 4 must be divisible by --packing 4 times the 2 ranks (8)" in refused.stderr
