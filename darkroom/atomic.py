"""One atomic write for every file darkroom keeps (checkpoints, config/status JSON, logs rewritten on resume, reports).

A crash or SIGKILL at any moment leaves the old file or the new one, never half of either: write a temp file
`.NAME.tmp-PID` beside the target, fsync it, rename it over the target, fsync the folder. A temp file left by a
killed writer carries that writer's pid, so the next owner of the folder can tell it is dead and remove it
(runs.RunFolder does).
"""
from __future__ import annotations

import json
import os
from pathlib import Path


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_bytes(path: Path, data: bytes | memoryview) -> None:
    """Replace `path` by `data` atomically and durably; on an OSError the temp file is removed and the error raised."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_folder(path.parent)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, record: dict) -> None:
    write_text(path, json.dumps(record, indent=2) + "\n")


def fsync_folder(folder: Path) -> None:
    """Make a rename inside `folder` durable (the folder's entry is what a power cut would lose)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
