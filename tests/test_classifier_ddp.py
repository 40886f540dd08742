"""torchrun on CPU (gloo): two ranks average to the one-process gradient, and a 2-rank run trains end to end."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO, needs_fashion


def torchrun(args, nproc=2, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                           *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_two_ranks_average_to_the_union_batch_gradient(tmp_path):
    script = str(REPO / "tests" / "scripts" / "classifier_grads.py")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    single = subprocess.run([sys.executable, script, str(tmp_path / "one.pt")], capture_output=True, text=True, env=env)
    assert single.returncode == 0, single.stderr
    double = torchrun([script, str(tmp_path / "two.pt")])
    assert double.returncode == 0, double.stderr
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert one.keys() == two.keys()
    for name in one:
        assert torch.allclose(one[name], two[name], atol=1e-5, rtol=1e-4), name
    assert any(g.abs().sum() > 0 for g in one.values())


@needs_fashion
@pytest.mark.slow
def test_two_rank_training_end_to_end(tmp_path):
    out = tmp_path / "ddp"
    result = torchrun(["-m", "darkroom", "train", "classifier", "--preset", "fashion-mnist-cpu", "--sample", "0.03",
                       "--test-sample", "0.1", "--epochs", "2", "--batch-size", "100", "--quiet", "--out", str(out)])
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and lines[-1]["test_acc"] > 0.5
    assert result.stdout.count("done: test accuracy") == 1  # rank 0 alone prints
