"""Shared benchmark plumbing: the environment record, result JSON, synchronised timers, an alternating A/B runner.

Standard library and torch only (torch imported lazily), so it also runs on a bare GPU box without darkroom
installed. Results go to `$OUT` when that is set, else to benchmarks/results/.
"""
from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "benchmarks" / "results"
SOURCE_RECORD = REPO / ".data" / "source.json"  # written by gpu_prepare for machines that get no .git


def results_dir() -> Path:
    out = os.environ.get("OUT")
    return Path(out) if out else RESULTS_DIR


# ---------------------------------------------------------------------------------------------- environment
def git_state() -> dict:
    """{"commit", "dirty", "source"}: from git when the checkout has it, else what gpu_prepare recorded. Dirty means a
    tracked file outside benchmarks/results/ differs from the commit (a benchmark's own outputs land in that folder)."""
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "--", ".",
                                 ":(exclude)benchmarks/results"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
        return {"commit": commit, "dirty": bool(status.strip()), "source": "git"}
    except (OSError, subprocess.SubprocessError):
        pass
    if SOURCE_RECORD.is_file():
        try:
            recorded = json.loads(SOURCE_RECORD.read_text())
            return {"commit": recorded.get("commit"), "dirty": recorded.get("dirty"),
                    "source": f"recorded by gpu_prepare at {recorded.get('date', '?')} (no git on this machine)"}
        except (OSError, ValueError):
            pass
    return {"commit": None, "dirty": None, "source": "unknown: no git and no .data/source.json"}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


VECTOR_EXTENSIONS = (("amx_tile", "AMX"), ("avx512_bf16", "AVX-512 BF16"), ("avx512f", "AVX-512"), ("avx2", "AVX2"))


def cpu_vector_extension(cpuinfo: str | None = None) -> str:
    """The widest vector unit of this CPU from /proc/cpuinfo's flags ("AVX2", "AVX-512", ...; "" when unknown): the
    same model name covers machines whose convolutions differ 3x in speed, and whether bf16 has hardware support."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return ""
    flags = next((set(line.split(":", 1)[1].split()) for line in cpuinfo.splitlines()
                  if line.lower().startswith("flags")), set())
    return next((name for flag, name in VECTOR_EXTENSIONS if flag in flags), "")


def usable_cores() -> int:
    from darkroom.launch import usable_cores as cores

    return cores()


def gpu_info() -> dict | None:
    """Name, memory, compute capability and driver of CUDA device 0; None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    driver = None
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", "0"],
                                capture_output=True, text=True, timeout=20, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}", "multiprocessors": props.multi_processor_count,
            "driver": driver, "cuda": torch.version.cuda}


def environment(device: str | None = None) -> dict:
    """Everything a reader needs to place a number: machine, CPU, GPU, versions, commit, date.

    `device` is the device the figures were measured on ("cpu", "cuda"); default: cuda when present.
    """
    import torch

    gpu = gpu_info()
    on_gpu = gpu is not None and (device is None or str(device).startswith("cuda"))
    cores = usable_cores()
    git, cpu, extension = git_state(), cpu_model(), cpu_vector_extension()
    return {
        "device": f"{gpu['name']} (driver {gpu['driver']}, CUDA {gpu['cuda']})" if on_gpu
        else f"{cpu} ({', '.join(filter(None, (extension, f'{cores} cores')))}, {torch.get_num_threads()} torch threads)",
        "device_type": "cuda" if on_gpu else "cpu",
        "machine": platform.node(), "arch": platform.machine(), "os": platform.platform(),
        "cpu": cpu, "cpu_vector_extension": extension, "cpu_cores": os.cpu_count(), "cpu_cores_usable": cores,
        "torch_threads": torch.get_num_threads(), "gpu": gpu,
        "torch": torch.__version__, "python": platform.python_version(),
        "commit": git["commit"], "dirty": git["dirty"], "commit_source": git["source"],
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# ---------------------------------------------------------------------------------------------- results
def precision_setting() -> str:
    """The speed benchmarks' precision, in words: fp32 on both sides, and darkroom in bf16 too on a CPU with hardware bf16."""
    from darkroom import precision

    return "fp32 on both sides" + (", and darkroom with bf16 autocast (this CPU multiplies bf16 in hardware)"
                                   if precision.cpu_has_native_bf16() else " (this CPU has no hardware bf16)")


def comparison_row(comparison: str, darkroom: float | None, baseline: float | None, unit: str, baseline_name: str,
                   target: float | None = None, higher_is_better: bool = True, note: str = "",
                   ratio: float | None = None, ratio_bound: str = "") -> dict:
    """One table row. ratio = darkroom / baseline; `met` says whether it meets the target in the right direction.

    `ratio_bound` ("<=" or ">=") marks a ratio that is only a bound (e.g. the baseline never reached the accuracy).
    """
    if ratio is None and _number(darkroom) and _number(baseline) and baseline:
        ratio = darkroom / baseline
    met = None
    if target is not None and _number(ratio):
        met = ratio >= target if higher_is_better else ratio <= target
        if ratio_bound and met is False:
            met = None  # a bound in the wrong direction decides nothing
    return {"comparison": comparison, "darkroom": darkroom, "baseline": baseline, "baseline_name": baseline_name,
            "unit": unit, "ratio": ratio, "ratio_bound": ratio_bound,
            "target": None if target is None else f"{'>=' if higher_is_better else '<='} {target:g}x",
            "met": met, "note": note}


def write_result(name: str, settings: dict, figures: dict, *, rows: list[dict] | None = None, notes: str = "",
                 device: str | None = None) -> Path:
    """Write `<name>.json` (to $OUT when set, else benchmarks/results/) and return its path.

    figures: every number measured; rows: table rows from `comparison_row` (the first row's ratio is copied to
    the top-level "ratio"); device: "cpu" or "cuda", what the figures were measured on.
    """
    env = environment(device)
    rows = rows or []
    record = {"name": name, "device": env["device"], "torch": env["torch"], "commit": env["commit"],
              "dirty": env["dirty"], "date": env["date"], "environment": env, "settings": settings,
              "figures": figures, "rows": rows, "ratio": rows[0]["ratio"] if rows else figures.get("ratio"),
              "notes": notes}
    folder = results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(_clean(record), indent=2, default=str) + "\n")
    os.replace(temporary, path)
    return path


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _clean(value: object) -> object:
    """NaN and infinity become null (strict JSON); tuples become lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    return value


# ---------------------------------------------------------------------------------------------- timing
def synchronize(device: object) -> None:
    """Wait for queued GPU work, so a wall-clock reading covers it (a no-op on CPU)."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


class Stopwatch:
    """`with Stopwatch(device) as watch: ...` then `watch.seconds`; synchronises CUDA on entry and exit."""

    def __init__(self, device: object = "cpu") -> None:
        self.device, self.seconds = device, float("nan")

    def __enter__(self) -> "Stopwatch":
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._start


def time_steps(step: Callable[[], object], steps: int, device: object, warmup: int = 0) -> float:
    """Seconds for `steps` calls of `step` after `warmup` untimed calls (synchronised)."""
    for _ in range(warmup):
        step()
    with Stopwatch(device) as watch:
        for _ in range(steps):
            step()
    return watch.seconds


def timed_rate(step: Callable[[], object], steps: int) -> Callable[[], tuple[float, float]]:
    """A measurement for alternate(): `steps` calls after one untimed one -> (calls/s by wall clock, CPU s per call)."""
    def measure() -> tuple[float, float]:
        step()
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step()
        return steps / (time.perf_counter() - wall), (time.process_time() - cpu) / steps
    return measure


def matmul_gflops(size: int = 1024, repeats: int = 20) -> float:
    """This CPU's practical fp32 peak: the best GFLOP/s of a square `size` matrix product over `repeats`."""
    import torch
    a, b = (torch.randn(size, size) for _ in range(2))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def flops_per_call(step: Callable[[], object]) -> int:
    """Floating-point operations of one call, forward and backward, as torch.utils.flop_counter counts them
    (convolutions and matrix products: the work that cannot be engineered away without changing the model)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def alternate(measurements: dict[str, Callable[[], object]], rounds: int,
              keep_going: Callable[[], bool] | None = None) -> dict[str, list]:
    """Run each measurement up to `rounds` times in one process, order alternating (A B, B A, A B, ...).

    Alternation spreads slow drifts (thermal, other load) evenly over the sides of an A/B comparison.
    `keep_going()` is asked before every round after the first (a time budget); each side then has the
    same number of results.
    """
    names = list(measurements)
    values: dict[str, list] = {name: [] for name in names}
    for round_index in range(rounds):
        if round_index and keep_going is not None and not keep_going():
            break
        for name in names if round_index % 2 == 0 else reversed(names):
            values[name].append(measurements[name]())
    return values


def summary(values: list[float]) -> dict:
    """n, mean, sample std, min, max and the values themselves."""
    finite = [float(value) for value in values if _number(value)]
    if not finite:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None, "values": list(values)}
    return {"n": len(finite), "mean": statistics.fmean(finite),
            "std": statistics.stdev(finite) if len(finite) > 1 else 0.0,
            "min": min(finite), "max": max(finite), "values": finite}


def reset_peak_memory(device: object) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def peak_memory_bytes(device: object) -> tuple[int, str]:
    """(bytes, what was measured): CUDA's peak allocation since the last reset, else the process's peak RSS."""
    import torch

    if str(device).startswith("cuda"):
        return int(torch.cuda.max_memory_allocated()), "cuda max_memory_allocated since reset"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "process peak RSS (never reset)"


def step_peak_rss(step: Callable[[], object], steps: int = 3) -> dict:
    """Peak resident memory of `steps` calls of `step` above the RSS before them (Linux /proc; printed by the
    memory probes, each in a fresh process so one side's allocator state cannot hide the other's)."""
    with open("/proc/self/statm") as handle:
        before = int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)
    for _ in range(steps):
        step()
    peak = next((int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines()
                 if line.startswith("VmHWM:")), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"baseline_rss": before, "peak_rss": peak, "step_peak_bytes": peak - before}


def run_memory_probe(module: str, probe_args: list[str], threads: int) -> dict:
    """`python -m module --memory-probe ...` in a fresh process; its last stdout line parsed, or the error."""
    command = [sys.executable, "-m", module, "--memory-probe", *probe_args, "--threads", str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=900,
                            env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return json.loads(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 else {"error": result.stderr[-500:]}


class Budget:
    """A section's time allowance: `left()` seconds remain, `spent()` seconds used."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self._start = seconds, time.monotonic()

    def spent(self) -> float:
        return time.monotonic() - self._start

    def left(self) -> float:
        return self.seconds - self.spent()


class SpawnedRanks:
    """A benchmark side run as `processes` spawned local ranks (gloo), the way `--processes N` trains: each rank
    builds its step with `factory(*factory_args)` (after the process group exists) and, per request, runs k steps
    between two barriers. Between requests the ranks block on their pipes and use no CPU, so the other side of an
    A/B comparison has the machine to itself. `factory` must be a module-level function (spawn pickles it)."""

    def __init__(self, factory: Callable, factory_args: tuple, processes: int, threads: int) -> None:
        import multiprocessing
        from darkroom.launch import free_port

        port = free_port()
        context = multiprocessing.get_context("spawn")
        self.processes, self.threads, self.pipes, self.workers = processes, threads, [], []
        for rank in range(processes):
            mine, theirs = context.Pipe()
            worker = context.Process(target=_rank_loop, daemon=True,
                                     args=(rank, processes, port, threads, factory, factory_args, theirs))
            worker.start()
            self.pipes.append(mine)
            self.workers.append(worker)
        self.run(0)  # every rank has built its step

    def run(self, steps: int) -> tuple[float, float]:
        """(wall seconds of the slowest rank, CPU seconds of all ranks together) for `steps` steps on every rank."""
        for pipe in self.pipes:
            pipe.send(steps)
        answers = [pipe.recv() for pipe in self.pipes]
        return max(wall for wall, _ in answers), sum(cpu for _, cpu in answers)

    def seconds(self, steps: int) -> float:
        return self.run(steps)[0]

    def timed_rate(self, steps: int) -> Callable[[], tuple[float, float]]:
        """timed_rate() for the ranks: `steps` steps on every rank after one untimed one -> (steps/s, CPU s per step)."""
        def measure() -> tuple[float, float]:
            self.run(1)
            wall, cpu = self.run(steps)
            return steps / wall, cpu / steps
        return measure

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(None)
        for worker in self.workers:
            worker.join(timeout=30)


def _rank_loop(rank: int, world_size: int, port: int, threads: int, factory: Callable, factory_args: tuple,
               pipe) -> None:
    import torch
    import torch.distributed as torch_dist

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS=str(threads))
    torch.set_num_threads(threads)
    torch_dist.init_process_group("gloo", rank=rank, world_size=world_size)
    step = factory(*factory_args)
    while (count := pipe.recv()) is not None:
        torch_dist.barrier()
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            step()
        torch_dist.barrier()
        pipe.send((time.perf_counter() - wall, time.process_time() - cpu))
    torch_dist.destroy_process_group()
