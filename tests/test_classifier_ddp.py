"""torchrun on CPU (gloo): two ranks average to the one-process gradient, and a 2-rank run trains end to end."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO, needs_fashion, run_cli
from darkroom import checkpoint, launch


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
    result = torchrun(["-m", "darkroom", "train", "classifier", "--preset", "fashion-mnist-cpunet", "--sample", "0.03",
                       "--test-sample", "0.1", "--epochs", "2", "--batch-size", "100", "--quiet", "--out", str(out)])
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and lines[-1]["test_acc"] > 0.5
    assert result.stdout.count("done: test accuracy") == 1  # rank 0 alone prints


PROCESS_ARGS = ["train", "classifier", "--preset", "fashion-mnist-cpunet", "--sample", "0.03", "--test-sample", "0.1",
                "--epochs", "1", "--batch-size", "100", "--deterministic", "--quiet"]


@needs_fashion
@pytest.mark.slow
def test_processes_flag_runs_the_ranks_torchrun_would(tmp_path):
    """--processes 2 (darkroom spawns the ranks) ends with torchrun --nproc_per_node 2's exact weights."""
    threads = str(max(1, launch.usable_cores() // 2))  # what --processes 2 gives each rank
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": threads}
    via_torchrun = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                                   "-m", "darkroom", *PROCESS_ARGS, "--out", str(tmp_path / "torchrun")],
                                  capture_output=True, text=True, timeout=300, env=env)
    assert via_torchrun.returncode == 0, via_torchrun.stderr
    via_flag = run_cli([*PROCESS_ARGS, "--processes", "2", "--out", str(tmp_path / "flag")])
    assert via_flag.returncode == 0, via_flag.stderr
    assert "on 2 x cpu" in via_flag.stdout and via_flag.stdout.count("done: test accuracy") == 1
    a = checkpoint.load(tmp_path / "torchrun" / "checkpoints" / "last.pt")["model"]
    b = checkpoint.load(tmp_path / "flag" / "checkpoints" / "last.pt")["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@needs_fashion
def test_processes_flag_failing_ranks_say_why_once(tmp_path):
    result = run_cli(["train", "classifier", "--data", str(tmp_path / "missing"), "--processes", "2", "--quiet",
                      "--out", str(tmp_path / "run")])
    assert result.returncode == 2
    assert result.stderr.count("darkroom: error:") == 1 and "missing" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_processes_must_be_positive(tmp_path):
    result = run_cli(["train", "classifier", "--processes", "0", "--out", str(tmp_path / "run")])
    assert result.returncode == 2 and "--processes" in result.stderr


@pytest.mark.slow
def test_a_non_finite_batch_on_one_rank_skips_the_step_on_every_rank(tmp_path):
    result = torchrun([str(REPO / "tests" / "scripts" / "classifier_nan_rank.py"), str(tmp_path / "out")], timeout=120)
    assert result.returncode == 0, result.stderr
    ranks = [json.loads((tmp_path / f"out.rank{rank}.json").read_text()) for rank in (0, 1)]
    for r in ranks:  # only rank 1 saw the NaN, yet neither stepped: weights and BatchNorm statistics as they were
        assert r == {"stepped": False, "same_weights": True, "same_buffers": True}, ranks
