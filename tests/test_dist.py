"""darkroom.dist helpers that must agree across ranks (2 processes under torchrun, gloo)."""
import os
import subprocess
import sys
from pathlib import Path

import torch

from darkroom import dist

REPO = Path(__file__).resolve().parents[1]
SCRIPT = """
import sys, torch
from darkroom import dist
info = dist.setup("cpu")
mine = torch.tensor([1.0, float("nan") if info.rank == 1 else 2.0])  # only rank 1 sees a NaN
clean = torch.ones(3)
norm = torch.nn.BatchNorm1d(2)
norm.running_mean.fill_(info.rank + 5)  # each rank its own statistics; broadcast_buffers gives all rank 0's
dist.broadcast_buffers(norm)
with open(f"rank-{info.rank}.txt", "w") as out:
    out.write(f"{dist.finite_on_every_rank(mine)} {dist.finite_on_every_rank(clean)} {norm.running_mean.tolist()}")
dist.cleanup()
"""


def test_finite_on_every_rank_is_one_decision_and_buffers_are_rank_0s(tmp_path):
    script = tmp_path / "finite.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script)], env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [(tmp_path / f"rank-{rank}.txt").read_text() for rank in range(2)] == ["False True [5.0, 5.0]"] * 2


def test_finite_on_one_process():
    assert dist.finite_on_every_rank(torch.tensor([1.0, 2.0]))
    assert not dist.finite_on_every_rank(torch.tensor([1.0, float("inf")]))
