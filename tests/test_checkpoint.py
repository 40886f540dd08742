"""Checkpoints: atomic writes, a full disk leaves the previous file intact, crafted pickles never run."""
import os
import pickle
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from darkroom import checkpoint
from darkroom.errors import UserError


def test_round_trip_and_rng(tmp_path):
    torch.manual_seed(3)
    state = {"w": torch.randn(3, 3), "n": 7, "nested": {"list": [1, 2.5, "x"]}, "rng": checkpoint.rng_state()}
    expected_next = torch.rand(4)
    checkpoint.save(state, tmp_path / "c.pt")
    loaded = checkpoint.load(tmp_path / "c.pt")
    assert torch.equal(loaded["w"], state["w"]) and loaded["nested"] == state["nested"]
    checkpoint.set_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(4), expected_next)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind


class Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.pt"
    torch.save({"model": Exploit(str(marker))}, bad)
    with pytest.raises(UserError, match="refused"):
        checkpoint.load(bad)
    assert not marker.exists()
    with open(tmp_path / "plain.pkl", "wb") as handle:  # a raw pickle stream, not torch's zip format
        pickle.dump(Exploit(str(marker)), handle)
    with pytest.raises(UserError):
        checkpoint.load(tmp_path / "plain.pkl")
    assert not marker.exists()


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save({"w": torch.randn(100, 100)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="unreadable or truncated"):
        checkpoint.load(path)


def test_random_bytes_are_not_called_unsafe(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(UserError, match="unreadable or truncated, or not a checkpoint at all") as caught:
        checkpoint.load(path)
    assert "run code" not in str(caught.value)


def test_full_disk_keeps_previous_checkpoint(tmp_path):
    """A file-size limit makes the write fail midway, as a full disk would; the old file survives."""
    path = tmp_path / "last.pt"
    checkpoint.save({"version": 1, "w": torch.zeros(10)}, path)
    script = (
        "import resource, sys, torch\n"
        "from darkroom import checkpoint\n"
        "from darkroom.errors import UserError\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))\n"
        f"try:\n    checkpoint.save({{'version': 2, 'w': torch.zeros(1_000_000)}}, {str(path)!r})\n"
        "except UserError as e:\n    print(e); sys.exit(3)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 3, result.stderr
    assert "previous checkpoint is intact" in result.stdout and len(result.stdout.strip().splitlines()) == 1
    assert checkpoint.load(path)["version"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert resource.getrlimit(resource.RLIMIT_FSIZE)  # the limit applied only to the child


def test_missing_checkpoint(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        checkpoint.load(tmp_path / "nope.pt")
