"""RunFolder: the lock, and the clean-up of temp files left by writers that were killed mid-write."""
import os
import subprocess
import sys

import pytest

from darkroom.errors import UserError
from darkroom.runs import RunFolder


def test_taking_the_lock_removes_dead_writers_temp_files_only(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        checkpoints = tmp_path / "checkpoints"
        checkpoints.mkdir()
        dead = checkpoints / f".last.pt.tmp-{2**22 + 1}"  # above pid_max: no such writer can be alive
        dead_status = tmp_path / f".status.json.tmp-{2**22 + 3}"
        alive = checkpoints / f".last.pt.tmp-{sleeper.pid}"
        unrelated = checkpoints / "last.pt"
        for path in (dead, dead_status, alive, unrelated):
            path.write_bytes(b"x")
        folder = RunFolder(tmp_path, "classifier")
        assert not dead.exists() and not dead_status.exists()
        assert alive.exists() and unrelated.exists()
        with pytest.raises(UserError, match="in use by another darkroom process"):
            RunFolder(tmp_path, "classifier")
        folder.close()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_forked_child_does_not_keep_the_lock_after_its_parent_is_killed(tmp_path):
    """DataLoader workers are forked after the lock is taken and outlive a SIGKILLed trainer for a moment."""
    script = (
        "import multiprocessing, os, sys, time\n"
        "from darkroom.runs import RunFolder\n"
        "def hold(running):\n"
        "    running.set()  # the fork hooks have run by now\n"
        "    time.sleep(60)\n"
        "folder = RunFolder(sys.argv[1], 'gan')\n"
        "fork = multiprocessing.get_context('fork')\n"
        "running = fork.Event()\n"
        "child = fork.Process(target=hold, args=(running,))\n"
        "child.start()\n"
        "running.wait(30)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    try:
        parent.kill()
        parent.wait()
        os.kill(child_pid, 0)  # the forked child is still alive ...
        RunFolder(tmp_path, "gan").close()  # ... and the folder can be taken at once
    finally:
        try:
            os.kill(child_pid, 9)
        except ProcessLookupError:
            pass
