"""One run's life, shared by the three trainers (nanoGPT's one checkpoint dict and one resume branch):

    run = lifecycle.open_run("gan", cfg, info, may_change=RESUME_MAY_CHANGE)  # reads; writes nothing
    if run.saved: state = lifecycle.restore(run, {"generator": G, ...})       # weights, optimizers, RNG states
    if <nothing left to train>: return lifecycle.already_finished(run, message, numbers)
    lifecycle.start(run, "resumed ... at step N")                          # rank 0: the folder, config, status
    ... the loop calls lifecycle.save(run, state, {"generator": G, ...}) ...
    lifecycle.finish(run, numbers)                                          # status, report.html, lock released

Plain functions over one small dataclass: no base class, no callbacks. Every rank calls each function (save
gathers each rank's RNG states to rank 0, which alone writes).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist
from tqdm import tqdm

from darkroom import checkpoint, dist, precision, runs
from darkroom.config import command_line, differences, from_dict, to_dict
from darkroom.errors import UserError

ALWAYS_MAY_CHANGE = ("resume", "out", "quiet", "device")


@dataclass
class Run:
    task: str
    cfg: Any  # the task's frozen config, --out filled in
    info: dist.DistInfo
    saved: dict | None  # the checkpoint being resumed (None: a fresh start)
    status: dict  # status.json as the run was opened ({} on a fresh start)
    folder: runs.RunFolder | None = None  # rank 0, from start() on

    @property
    def dir(self) -> str:
        return self.cfg.out

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.cfg.out) / "checkpoints" / "last.pt"

    @property
    def ended_before(self) -> bool:
        """The resumed run had written its end (finished, or stopped at a --stop-after) before this process."""
        return self.saved is not None and self.status.get("status") in ("finished", "stopped")

    def say(self, message: str) -> None:
        if self.info.is_main:
            tqdm.write(message)


def setup_runtime(device: str, seed: int, deterministic: bool, batch_size: int,
                  precision_flag: str) -> tuple[dist.DistInfo, str]:
    """Process group, seed, determinism and precision, the same for every task; (DistInfo, precision name).

    --deterministic on CUDA: cuBLAS needs CUBLAS_WORKSPACE_CONFIG set before its first call, and some backward
    kernels (adaptive pooling, reflection padding) have no deterministic CUDA version, so there they warn instead
    of raising (the run still differs from run to run only through those kernels)."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    info = dist.setup(device)
    torch.manual_seed(seed)  # the same initial nets on every rank (DDP also broadcasts rank 0's)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=info.device.type == "cuda")
        torch.backends.cudnn.benchmark = False
    elif info.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if batch_size % info.world_size:
        raise UserError(f"--batch-size {batch_size} must be divisible by the {info.world_size} ranks")
    return info, precision.resolve(precision_flag, info.device)


def open_run(task: str, cfg: Any, info: dist.DistInfo, may_change: tuple[str, ...] = ()) -> Run:
    """The run folder (--out, or a new runs/TASK-TIME) and, with --resume, its checkpoint checked against `cfg`:
    a folder in use, a run of another task, a finished run without --resume, a changed setting or another device
    type are each refused in one sentence. Nothing is written."""
    run_dir = dist.broadcast_object(str(cfg.out or runs.default_run_dir(task)))
    cfg = replace(cfg, out=run_dir)
    if info.is_main and runs.is_live(run_dir):  # before reading anything of it (start() takes the lock)
        raise UserError(f"run folder {run_dir} is in use by another darkroom process; pick another --out")
    path = Path(run_dir) / "checkpoints" / "last.pt"
    saved, status = None, {}
    if path.exists():
        if not cfg.resume:
            raise UserError(f"run folder {run_dir} already holds a run; pass --resume to continue it or pick another --out")
        saved = checkpoint.load(path)
        check_resumable(saved, task, cfg, info, may_change)
        status = dist.broadcast_object(runs.read_status(run_dir) if info.is_main else None)
    return Run(task, cfg, info, saved, status)


def check_resumable(saved: dict, task: str, cfg: Any, info: dist.DistInfo, may_change: tuple[str, ...]) -> None:
    run_dir = cfg.out
    if saved.get("task") != task:
        raise UserError(f"{run_dir} holds a {saved.get('task', 'non-darkroom')} run, not a {task} run; pick another --out")
    changed = differences(from_dict(type(cfg), saved["config"]), cfg, ignore=ALWAYS_MAY_CHANGE + tuple(may_change))
    if changed:
        raise UserError(f"--{changed[0].replace('_', '-')} differs from the run being resumed in {run_dir}; "
                        "resume with the same settings")
    written_on = saved.get("device_type", "cpu")
    if written_on != info.device.type:  # a CUDA generator's state does not fit a CPU generator, nor the reverse
        raise UserError(f"the run in {run_dir} was trained on {written_on} and cannot go on on {info.device.type}: its "
                        f"random streams live on the device; resume it on {written_on} (--device {written_on})")
    ranks = len(saved.get("ranks", [None]))
    if info.rank >= ranks:
        raise UserError(f"the run in {run_dir} was trained on {ranks} rank(s) and holds no random state for rank "
                        f"{info.rank}; resume it on at most {ranks}")


def start(run: Run, resumed_message: str, environment: dict | None = None) -> None:
    """Rank 0 takes the folder. Fresh: config.json (with the command that rebuilds the config), an empty log, status
    running. Resumed: metric lines written after the checkpoint are dropped (they are redone), resumes + 1."""
    info = run.info
    if info.is_main:
        run.folder = runs.RunFolder(Path(run.dir), run.task)
        if run.saved is not None:
            run.folder.truncate_log(run.saved["state"]["log_lines"])
            run.folder.set_status("running", resumes=run.status.get("resumes", 0) + 1)
        else:
            run.folder.write_config(to_dict(run.cfg), command_line(run.task, run.cfg), environment)
            run.folder.truncate_log(0)  # lines of an earlier life that died before its first checkpoint
            run.folder.set_status("running", resumes=0)
    if run.saved is not None:
        run.say(resumed_message)
    elif run.cfg.resume:  # a rerun job passes --resume every time; say which it did
        run.say(f"no checkpoint in {run.dir} yet: --resume starts a fresh run")


def state_of(thing: Any) -> Any:
    if thing is None:
        return None
    if isinstance(thing, torch.Generator):
        return thing.get_state()
    return thing.state_dict()


def save(run: Run, state: dict, parts: dict[str, Any], extra: dict | None = None, per_rank: dict | None = None) -> None:
    """One checkpoint dict: task, config, device type, the trainer's `state` (counters; its log_lines set here so a
    resume drops exactly the lines written after this point), each part's state_dict (nets, optimizers, scalers,
    generators), `extra` values, and every rank's RNG states plus `per_rank` (gathered to rank 0, which writes)."""
    mine = {"rng": checkpoint.rng_state(), **(per_rank or {})}
    every_rank = gather_to_main(mine, run.info)
    if run.folder is None:
        return
    state["log_lines"] = run.folder.log_length()
    checkpoint.save({"task": run.task, "config": to_dict(run.cfg), "device_type": run.info.device.type,
                     **{name: state_of(part) for name, part in parts.items()}, **(extra or {}),
                     "ranks": every_rank, "state": dict(state)}, run.checkpoint_path)


def restore(run: Run, parts: dict[str, Any]) -> dict:
    """Load each part from the checkpoint open_run read and this rank's RNG states; returns (a copy of) its state
    and this rank's saved extras under "rank"."""
    saved = run.saved
    for name, part in parts.items():
        if part is None or saved.get(name) is None:
            continue
        if isinstance(part, torch.Generator):
            part.set_state(saved[name])
        else:
            part.load_state_dict(saved[name])
    mine = saved["ranks"][run.info.rank]
    checkpoint.set_rng_state(mine["rng"])
    return {**saved["state"], "rank": mine}


def gather_to_main(obj: dict, info: dist.DistInfo) -> list[dict]:
    """[rank 0's obj, rank 1's obj, ...] on rank 0 (ranks' RNG states and pools differ)."""
    if not info.distributed:
        return [obj]
    gathered = [None] * info.world_size if info.is_main else None
    torch_dist.gather_object(obj, gathered, dst=0)
    return gathered


def already_finished(run: Run, message: str, numbers: dict) -> dict:
    """--resume of a run with nothing left to train: say so; no file is touched (not even the lock)."""
    run.say(message)
    dist.cleanup()
    return {**numbers, "run_dir": run.dir}


def fail(run: Run, error: UserError, **where: Any) -> None:
    """A stop the user must act on (a non-finite loss, a bad file): status.json says why; the checkpoint stays."""
    if run.folder:
        run.folder.set_status("failed", error=str(error), **where)


def finish(run: Run, numbers: dict, status: str = "finished") -> Path | None:
    """status.json (the final numbers), report.html, the lock released; returns the report's path (rank 0)."""
    if run.folder is None:
        return None
    run.folder.set_status(status, **{key: value for key, value in numbers.items() if isinstance(value, (int, float))})
    report = build_report(run)
    run.folder.close()
    return report


def build_report(run: Run) -> Path | None:
    from darkroom.report.html import build_report as build

    try:
        return build(Path(run.dir))
    except Exception as error:  # a report must never cost a finished run: say so and go on
        print(f"darkroom: could not write {Path(run.dir) / 'report.html'}: {error}", file=sys.stderr)
        return None
