"""Shared test fixtures: Fashion-MNIST presence, a subprocess runner for the CLI, small planted image sets."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")


def have_fashion_mnist() -> bool:
    return (FASHION / "train-images-idx3-ubyte.gz").is_file() or bool(os.environ.get("DARKROOM_DATA"))


needs_fashion = pytest.mark.skipif(not have_fashion_mnist(), reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")


def run_cli(args: list[str], cwd: Path | None = None, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m darkroom ARGS` in a fresh process; returns the completed process (text output)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "darkroom", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def assert_same(left, right, where: str = "checkpoint") -> None:
    """Two checkpoint trees (dicts, lists, tensors, numbers) equal bit for bit; `where` names the first difference."""
    if isinstance(left, torch.Tensor):
        assert isinstance(right, torch.Tensor) and left.dtype == right.dtype and torch.equal(left, right), where
    elif isinstance(left, dict):
        assert left.keys() == right.keys(), where
        for key in left:
            assert_same(left[key], right[key], f"{where}.{key}")
    elif isinstance(left, (list, tuple)):
        assert len(left) == len(right), where
        for index, (a, b) in enumerate(zip(left, right)):
            assert_same(a, b, f"{where}[{index}]")
    else:
        assert left == right, where


@pytest.fixture
def one_thread():
    """One torch thread for the test (small nets: threads cost more than they give), restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
