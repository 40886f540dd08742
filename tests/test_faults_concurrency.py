"""Two runs pointed at the same run folder at once: the second refuses in one sentence naming the folder, touches
nothing, and the first finishes intact. The first is paused (SIGSTOP) while it holds the folder's lock, after its
first checkpoint, so the overlap never depends on timing. The first run is forked from test_faults_kill's zygote
(torch imported once); the second is a plain `python -m darkroom`.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from darkroom import checkpoint, runs
from test_faults_kill import TRAINERS, short_args, trainer, wait_for, zygote  # noqa: F401 (fixture)

ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def long_args(name: str, tmp: Path) -> list[str]:
    """The kill suite's tiny run cut to 12 steps, without --deterministic (its import costs seconds a process)."""
    return [arg for arg in short_args(name, tmp, 12) if arg != "--deterministic"]


def snapshot(run: Path) -> dict[str, bytes]:
    return {str(path.relative_to(run)): path.read_bytes() for path in sorted(run.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("name", TRAINERS)
def test_second_run_in_a_live_folder_is_refused(tmp_path, zygote, name):
    run = tmp_path / "run"
    args = [*long_args(name, tmp_path), "--out", str(run)]
    first = zygote.start(args, tmp_path / "first.log")  # a forked CLI process (torch already imported)
    try:
        assert wait_for(first, lambda: (run / "checkpoints" / "last.pt").exists()), first.output()[-2000:]
        signal.pidfd_send_signal(first.pidfd, signal.SIGSTOP)  # alive and holding the lock, but going nowhere
        assert runs.is_live(run), "the first run ended before it could be paused"
        before = snapshot(run)
        seconds = [["--resume"], []] if name == "classifier" else [["--resume"]]
        for extra in seconds:  # with --resume it would restore and truncate the log, without it start afresh
            second = subprocess.run([sys.executable, "-m", "darkroom", *args, *extra], env=ENV, capture_output=True,
                                    text=True, timeout=300)
            assert second.returncode == 2, second.stderr[-2000:]
            assert second.stderr.strip() == (f"darkroom: error: run folder {run} is in use by another darkroom "
                                             "process; pick another --out")
            assert snapshot(run) == before  # not one byte touched
    finally:
        signal.pidfd_send_signal(first.pidfd, signal.SIGCONT)
        code = first.wait()
    assert code == 0, first.output()[-2000:]
    assert f"run folder {run}" in first.log.read_text()
    saved = checkpoint.load(run / "checkpoints" / "last.pt")
    assert saved["state"][trainer(name, tmp_path).step_key] == 12
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(set(lines)) == len(lines) > 0
    assert json.loads((run / "config.json").read_text())["command"].endswith(f"--out {run}")  # the first's
