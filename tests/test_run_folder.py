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
