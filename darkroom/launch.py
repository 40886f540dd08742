"""--processes N on CPU: one training run as N local data-parallel ranks (gloo), each with its share of the cores.

Why: on a small CPU, one process per core can beat one process whose ops split over the cores: each op of a
small net is short, so intra-op threads spend part of a step waiting at barriers. Measured on 2 cores
(benchmarks/results/): darknet-small trains at 1.33x the plain loop's images/s as 2 ranks against 1.12x in one
process; cpunet gained nothing end to end, so its preset stays in one process. torchrun does the same on a
cluster; this is its one-machine form without a second command. The parent only spawns, watches and returns the
run folder's final metrics: the children are ordinary torchrun-style ranks (RANK, WORLD_SIZE, MASTER_ADDR/PORT), so
dist.setup needs no case.

    darkroom train classifier --preset darknet-small            # the preset sets --processes 2
    darkroom train classifier --preset fashion-mnist-cpu --processes 2
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from darkroom import runs
from darkroom.config import from_dict, to_dict
from darkroom.dist import pick_device
from darkroom.errors import RanksFailed, UserError


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def wanted(processes: int, device: str) -> bool:
    """Spawn local ranks: more than one asked for, not already a rank (torchrun), and training on the CPU."""
    if processes < 1:
        raise UserError(f"--processes must be at least 1, not {processes}")
    return processes > 1 and "WORLD_SIZE" not in os.environ and pick_device(device).type == "cpu"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL when the parent dies (a killed run leaves no orphaned ranks behind)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (AttributeError, OSError):
        pass


def local_ranks(trainer: str, task: str, cfg) -> dict:
    """Run the trainer module `trainer` (its CONFIG and run) with `cfg` as cfg.processes ranks on this machine;
    return the run folder's status and last metrics line. `task` names the default run folder."""
    n = cfg.processes
    cfg = replace(cfg, out=str(cfg.out or runs.default_run_dir(task)))
    threads = max(1, usable_cores() // n)
    if not cfg.quiet:
        print(f"training as {n} local ranks (gloo), {threads} thread(s) each", flush=True)
    with tempfile.TemporaryDirectory(prefix="darkroom-ranks-") as folder:
        spec = Path(folder) / "run.json"
        spec.write_text(json.dumps({"trainer": trainer, "config": to_dict(cfg), "threads": threads}))
        env = {**os.environ, "WORLD_SIZE": str(n), "LOCAL_WORLD_SIZE": str(n), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": str(threads)}
        children, error_logs = [], []
        for rank in range(n):
            log = open(Path(folder) / f"rank{rank}.err", "w+")  # ranks > 0: shown only if rank 0 said nothing
            error_logs.append(log)
            children.append(subprocess.Popen(
                [sys.executable, "-m", "darkroom.launch", str(spec)],
                env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                stdout=None if rank == 0 else subprocess.DEVNULL, stderr=None if rank == 0 else log,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None))
        try:
            codes = watch(children)
        except KeyboardInterrupt:
            stop(children)
            raise
        finally:
            for log in error_logs:
                log.close()
        if any(codes):
            raise RanksFailed(report_failure(codes, Path(folder)))
    lines = runs.read_metrics(Path(cfg.out))
    return {**runs.read_status(cfg.out), **(lines[-1] if lines else {}), "run_dir": cfg.out}


def report_failure(codes: list[int], folder: Path) -> int:
    """The exit code for a failed launch. Rank 0 has said why when it exited with a code of its own; otherwise
    (it was stopped, or it succeeded) the first failing rank's own words are shown."""
    if codes[0] > 0:
        return codes[0]
    rank, code = next(((r, c) for r, c in enumerate(codes) if c > 0), (0, codes[0]))
    log = folder / f"rank{rank}.err"
    text = log.read_text().strip() if rank and log.exists() else ""
    print(text or f"darkroom: error: training rank {rank} stopped with code {code}", file=sys.stderr)
    return code if code > 0 else 1


def watch(children: list[subprocess.Popen]) -> list[int]:
    """Wait for every rank; the first non-zero exit stops the others (they would wait for it forever)."""
    while True:
        codes = [child.poll() for child in children]
        if all(code is not None for code in codes):
            return codes
        if any(code not in (None, 0) for code in codes):
            stop(children)
            return [child.wait() for child in children]
        time.sleep(0.1)


def stop(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.time() + 10
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def child_main(spec_path: str) -> int:
    """One rank: rebuild the config from the parent's JSON and run the trainer, reporting errors as the CLI does."""
    import importlib

    import torch

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    module = importlib.import_module(spec["trainer"])
    cfg = from_dict(module.CONFIG, spec["config"])
    try:
        module.run(cfg)
    except UserError as error:
        print(f"darkroom: error: {error}", file=sys.stderr)
        return leave(2)
    except KeyboardInterrupt:  # the parent says it once
        return leave(130)
    return 0


def leave(code: int) -> int:
    """Exit a rank that stopped mid-run at once: its process group, still open (the other ranks may be inside a
    collective), would abort the interpreter's normal exit ("terminate called without an active exception")."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
