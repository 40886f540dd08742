"""The run folder: config.json, metrics.jsonl, status.json, checkpoints/, samples/, report.html.

Only rank 0 creates one; a lock file keeps two live runs out of the same folder.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
import weakref
from datetime import datetime
from pathlib import Path

from darkroom import atomic
from darkroom.errors import UserError


def default_run_dir(task: str, root: str = "runs") -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{task}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(root) / f"{task}-{stamp}-{suffix}"
    return path


class RunFolder:
    """Writer for one run. Holds an exclusive lock on `<dir>/.lock` until closed or the process dies."""

    def __init__(self, path: Path, task: str) -> None:
        self.path = Path(path)
        self.task = task
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / "checkpoints").mkdir(exist_ok=True)
            (self.path / "samples").mkdir(exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot create run folder {self.path}: {error.strerror}") from None
        self._lock = open(self.path / ".lock", "a+")
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise UserError(f"run folder {self.path} is in use by another darkroom process; pick another --out") from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(str(os.getpid()))
        self._lock.flush()
        _LOCKED.add(self)
        self.started = time.time()
        self._remove_dead_writers_temp_files()

    def _remove_dead_writers_temp_files(self) -> None:
        """Delete `.NAME.tmp-PID` files (an atomic write cut short by a kill) of writers no longer alive: holding
        the lock, this process is the folder's only writer, and such a file can be as big as a checkpoint."""
        for folder in (self.path, self.path / "checkpoints"):
            for tmp in folder.glob(".*.tmp-*"):
                pid = tmp.name.rpartition(".tmp-")[2]
                if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                    tmp.unlink(missing_ok=True)

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    def write_config(self, config: dict, command: str, environment: dict | None = None) -> None:
        """config.json: the resolved config, the command that reproduces it (built from the config), the environment."""
        record = {"task": self.task, "config": config, "command": command,
                  "environment": {**describe_environment(), **(environment or {})}}
        atomic.write_json(self.path / "config.json", record)

    def log(self, record: dict) -> None:
        """Append one JSON line; opened per write so a kill never loses earlier lines. Mirrored to TensorBoard."""
        with open(self.path / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        self._tensorboard(record)

    def _tensorboard(self, record: dict) -> None:
        """Scalars of `record` and any new sample grids as TensorBoard events, when tensorboard is installed."""
        if not hasattr(self, "_board"):
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._board = SummaryWriter(str(self.path / "tensorboard"))
            except ImportError:  # optional extra: darkroom[tensorboard]
                self._board = None
            self._grids_seen: set[str] = set()
        if self._board is None:
            return
        step = int(next((record[k] for k in ("step", "iteration", "epoch") if isinstance(record.get(k), (int, float))), 0))
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._board.add_scalar(key, value, step)
        for grid in sorted(self.samples_dir.glob("*.png")):
            if grid.name not in self._grids_seen:
                import numpy as np
                from PIL import Image
                self._grids_seen.add(grid.name)
                self._board.add_image(f"samples/{grid.stem}", np.asarray(Image.open(grid).convert("RGB")), step,
                                      dataformats="HWC")
        self._board.flush()

    def truncate_log(self, keep: int) -> None:
        """On resume, drop metric lines written after the checkpoint being resumed (they will be redone)."""
        log = self.path / "metrics.jsonl"
        if not log.exists():
            return
        lines = log.read_text().splitlines()[:keep]
        atomic.write_text(log, "".join(line + "\n" for line in lines))

    def log_length(self) -> int:
        log = self.path / "metrics.jsonl"
        return len(log.read_text().splitlines()) if log.exists() else 0

    def set_status(self, status: str, **extra: object) -> None:
        record = {"status": status, "updated": time.time(), **extra}
        previous = read_status(self.path)
        record.setdefault("resumes", previous.get("resumes", 0))
        record.setdefault("started", previous.get("started", self.started))
        atomic.write_json(self.path / "status.json", record)

    def close(self) -> None:
        """Release the lock (and TensorBoard's writer). The report is the life-cycle's to build (lifecycle.finish)."""
        if getattr(self, "_board", None) is not None:
            self._board.close()
        if not self._lock.closed:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()


def describe_environment() -> dict:
    import platform

    import torch

    environment = {"torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
                   "world_size": int(os.environ.get("WORLD_SIZE", "1")), "cpu_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        environment["gpu"] = torch.cuda.get_device_name()
    return environment


def is_live(path: Path) -> bool:
    """True while some process holds the run folder's lock (a run in progress)."""
    lock = Path(path) / ".lock"
    if not lock.exists():
        return False
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


def read_status(path: Path) -> dict:
    try:
        return json.loads((Path(path) / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def read_metrics(path: Path) -> list[dict]:
    log = Path(path) / "metrics.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def read_config(path: Path) -> dict:
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise UserError(f"{path} is not a darkroom run folder (no config.json)")
    return json.loads(config_file.read_text())


_LOCKED: "weakref.WeakSet[RunFolder]" = weakref.WeakSet()


def _drop_inherited_locks() -> None:
    """In a forked child (DataLoader workers), close the copies of the run folders' lock files: a worker that
    outlives its killed parent for a few seconds must not keep the folder locked against the restart."""
    for folder in list(_LOCKED):
        if not folder._lock.closed:
            folder._lock.close()  # closes this process's descriptor only; flock stays with the parent's


os.register_at_fork(after_in_child=_drop_inherited_locks)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
