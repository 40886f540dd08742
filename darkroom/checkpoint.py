"""Atomic checkpoint save (temp file, fsync, rename) and safe load (weights_only: no code runs on load).

A checkpoint is a dict of tensors, numbers, strings, lists and dicts: everything a run needs to go on
exactly (nets, optimizers, scaler, counters, RNG states, resolved config).
"""
from __future__ import annotations

import errno
import io
import pickle
import random
import zipfile
from pathlib import Path

import torch

from darkroom import atomic
from darkroom.errors import UserError


def save(state: dict, path: Path) -> None:
    """Write `state` to `path` so that a crash at any moment leaves either the old or the new file."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)  # serialise first, so a failing disk surfaces as a plain OSError below
    try:
        atomic.write_bytes(path, buffer.getbuffer())
    except OSError as error:
        reason = "the disk is full" if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else error.strerror
        raise UserError(f"could not write checkpoint {path}: {reason}; the previous checkpoint is intact") from None


def load(path: Path) -> dict:
    """Load with weights_only=True: a checkpoint that would need to run code to unpickle is refused."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is damaged or foreign
        raise UserError(f"checkpoint {path} is unreadable or truncated, or not a checkpoint at all (not the zip "
                        "archive torch.save writes)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "unsafe content"
        raise UserError(f"refused to load checkpoint {path}: it holds objects that would run code ({first[:120]})") from None
    except (RuntimeError, EOFError, ValueError, OSError) as error:
        raise UserError(f"checkpoint {path} is unreadable or truncated ({type(error).__name__})") from None
    if not isinstance(state, dict):
        raise UserError(f"checkpoint {path} is not a darkroom checkpoint")
    return state


def rng_state() -> dict:
    """Every global RNG darkroom's loops draw from (torch CPU, CUDA, Python's random)."""
    state = {"torch": torch.get_rng_state(), "python": _python_state_to_list(random.getstate())}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_python_state_from_list(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_list(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_state_from_list(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
