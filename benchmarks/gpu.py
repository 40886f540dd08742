"""GPU benchmark (`make bench-gpu`): correctness first, then timed side-by-side comparisons, in at most 8 minutes.

    python3 -m benchmarks.gpu           # a bare H100/H200 box: torch, torchvision, triton; no network, no install
    python3 -m benchmarks.gpu --smoke   # the same code paths on CPU at tiny sizes (< 60 s), run by the tests
Run `make bench-gpu-prepare` on a networked machine first: it fills .data/ (Fashion-MNIST) and .whl/ (airbench and
any pure-Python package darkroom imports that the box may lack). One JSON per comparison goes to $OUT or
benchmarks/results/; the last thing printed is the table. Under $OUT the whole log (tracebacks, C++ and CUDA
messages included) also goes to $OUT/bench-gpu.log.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # no darkroom install on the GPU box: import it from this checkout
    sys.path.insert(0, str(REPO))

from benchmarks import common  # noqa: E402  (stdlib + torch only)

PROCESS_START = time.monotonic()
WHEELS = REPO / ".whl"
DATA = REPO / ".data"
TOTAL_SECONDS = 450  # the whole command must stay under 8 minutes; 30 s margin for start-up and the table
HARD_STOP_SECONDS = 465  # a section still running then is interrupted (recorded as failed) and the table printed


class OutOfTime(BaseException):
    """Raised by the alarm inside a section that overran the command's budget (a BaseException, so that no
    section's own `except Exception` swallows it)."""


def _alarm(signum, frame) -> None:
    raise OutOfTime(f"interrupted after {HARD_STOP_SECONDS} s to keep the command under 8 minutes")
LOG_NAME = "bench-gpu.log"  # in $OUT
LOGGED = "DARKROOM_BENCH_GPU_LOGGED"  # set in the child whose output the parent copies into the log
# caps, not shares: a section gets min(its cap, what is left of TOTAL_SECONDS); last measured on an H200 (fastnet-gpu
# era): correctness 12 s, classifier 59 s, gan 28 s, cyclegan 35 s. The classifier section now also warms up (compiles,
# max-autotune) airbench94_muon and runs it 5 times; dawnbench runs last, on what is left
FULL_BUDGETS = {"correctness": 45, "classifier": 270, "gan": 50, "cyclegan": 80, "dawnbench": 60}
SMOKE_BUDGETS = {"correctness": 25, "classifier": 40, "gan": 10, "cyclegan": 10, "dawnbench": 30}


@dataclass
class Context:
    smoke: bool
    device: str  # "cuda" or "cpu"
    data_root: str | None  # folder holding fashion-mnist/, or None for darkroom's own lookup
    work: Path  # scratch folder for run folders and airbench's data
    started: float = field(default_factory=lambda: PROCESS_START)
    written: list[Path] = field(default_factory=list)
    wheel_note: str = ""

    def name(self, base: str) -> str:
        return base + ("-smoke" if self.smoke else "")

    def left(self) -> float:
        return TOTAL_SECONDS - (time.monotonic() - self.started)


# ---------------------------------------------------------------------------------------------- bootstrap
def install_wheels(target: Path) -> str:
    """Make the wheels in .whl/ importable without a network: `pip install --no-index` into `target`, or, where pip
    is missing, unzip them (they are pure Python). Packages the machine already has are left alone."""
    wheels = sorted(WHEELS.glob("*.whl"))
    missing = [wheel for wheel in wheels if not _importable(wheel)]
    if not missing:
        return f"{len(wheels)} wheel(s) in .whl/, none needed" if wheels else "no .whl/ folder (run make bench-gpu-prepare)"
    target.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--disable-pip-version-check", "--find-links", str(WHEELS), "--target", str(target), *map(str, missing)]
    how = "pip install --no-index"
    if subprocess.run(command, capture_output=True, text=True).returncode != 0:
        how = "unzipped (pip failed)"
        for wheel in missing:
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(target)
    sys.path.append(str(target))
    return f"{how}: {', '.join(wheel.name for wheel in missing)}"


def _importable(wheel: Path) -> bool:
    import importlib.util

    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
    modules = {top.removesuffix(".py") for top in tops if "." not in top.removesuffix(".py") and top != "__pycache__"}
    return all(importlib.util.find_spec(module) is not None for module in modules)


def find_data_root(smoke: bool) -> str | None:
    if (DATA / "fashion-mnist" / "train-images-idx3-ubyte.gz").is_file():
        return str(DATA)
    if smoke:
        return None  # CI: darkroom's own lookup (the Debian package)
    raise SystemExit(f"{DATA}/fashion-mnist/ holds no Fashion-MNIST files: run `make bench-gpu-prepare` first")


# ---------------------------------------------------------------------------------------------- the log
def tee(command: list[str], log: Path, env: dict) -> int:
    """Run `command` with its stdout and stderr (one stream, so their order is kept) copied line by line to this
    process's stdout and to `log`; returns its exit status. Output written below Python (CUDA, NCCL, a segfault
    report) reaches the log too, and every line is flushed as it comes, so a crash loses none."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as file:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        for line in iter(child.stdout.readline, b""):
            for stream in (sys.stdout.buffer, file):
                stream.write(line)
                stream.flush()
        return child.wait()


def logged(argv: list[str]) -> int | None:
    """Under $OUT: run this script again as a child and keep its whole output in $OUT/bench-gpu.log (returns the
    child's exit status); None in that child, or where $OUT is unset."""
    out = os.environ.get("OUT")
    if not out or os.environ.get(LOGGED):
        return None
    env = {**os.environ, LOGGED: "1", "PYTHONUNBUFFERED": "1"}
    return tee([sys.executable, "-m", "benchmarks.gpu", *argv], Path(out) / LOG_NAME, env)


# ---------------------------------------------------------------------------------------------- sections
def guarded(ctx: Context, name: str, budget: float, function) -> None:
    """Run one section; a failure is recorded in its JSON and the next section still runs."""
    if ctx.left() < min(budget, 30) and not ctx.smoke:
        print(f"== {name}: skipped, {ctx.left():.0f} s left of the command's budget", flush=True)
        ctx.written.append(common.write_result(ctx.name(f"gpu_{name}"), _settings(ctx), {"error": "skipped: out of time"},
                                               rows=[_failed_row(name, "skipped: out of time")], device=ctx.device))
        return
    print(f"== {name} (budget {budget:.0f} s, {ctx.left():.0f} s left)", flush=True)
    started = time.monotonic()
    try:
        ctx.written.append(function(ctx, common.Budget(min(budget, max(ctx.left(), 1.0)))))
    except (Exception, OutOfTime) as error:  # noqa: BLE001 - a failing section must not stop the others
        message = f"{type(error).__name__}: {error}"
        traceback.print_exc()
        ctx.written.append(common.write_result(ctx.name(f"gpu_{name}"), _settings(ctx), {"error": message},
                                               rows=[_failed_row(name, message)], device=ctx.device))
    finally:
        _free_memory(ctx.device)
    print(f"== {name}: {time.monotonic() - started:.1f} s", flush=True)


def _settings(ctx: Context) -> dict:
    from benchmarks.gpu_sections import with_maths  # imports darkroom and torch: not at the script's start

    return with_maths({"smoke": ctx.smoke})


def _failed_row(name: str, message: str) -> dict:
    return common.comparison_row(f"{name} (GPU)", None, None, "", "-", note=f"FAILED: {message}"[:300])


def _free_memory(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes: the code paths, not the numbers")
    parser.add_argument("--only", action="append", choices=tuple(FULL_BUDGETS), help="run only these sections")
    parser.add_argument("--runs", type=int, default=5, help="training runs per side for time to 94%%")
    args = parser.parse_args(argv)
    code = logged(sys.argv[1:] if argv is None else list(argv))
    if code is not None:
        return code
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    with tempfile.TemporaryDirectory(prefix="darkroom-bench-gpu-") as scratch:
        note = install_wheels(Path(scratch) / "site")
        import torch

        if not args.smoke and not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run `python3 -m benchmarks.gpu --smoke` for the CPU check")
        ctx = Context(smoke=args.smoke, device="cpu" if args.smoke else "cuda", data_root=find_data_root(args.smoke),
                      work=Path(scratch), wheel_note=note)
        env = common.environment(ctx.device)
        print(f"bench-gpu{' --smoke' if args.smoke else ''}: {env['device']}, torch {env['torch']}, "
              f"commit {env['commit']}{' (dirty)' if env['dirty'] else ''}; wheels: {note}", flush=True)
        from benchmarks import gpu_dawnbench, gpu_sections

        budgets = SMOKE_BUDGETS if args.smoke else FULL_BUDGETS
        if not args.smoke and hasattr(signal, "SIGALRM"):
            signal.signal(signal.SIGALRM, _alarm)
            signal.alarm(max(1, int(HARD_STOP_SECONDS - (time.monotonic() - ctx.started))))
        sections = {"correctness": gpu_sections.correctness, "classifier": gpu_sections.classifier_time_to_94,
                    "gan": gpu_sections.gan_throughput, "cyclegan": gpu_sections.cyclegan_throughput,
                    "dawnbench": gpu_dawnbench.dawnbench}
        for name, function in sections.items():
            if not args.only or name in args.only:
                if name == "classifier":
                    function = _with_runs(function, args.runs)
                guarded(ctx, name, budgets[name], function)
        if hasattr(signal, "SIGALRM"):
            signal.alarm(0)
        print(f"bench-gpu: {TOTAL_SECONDS - ctx.left():.0f} s in all", flush=True)
        print_table(ctx.written)
    return 0


def _with_runs(function, runs: int):
    def section(ctx: Context, budget: common.Budget) -> Path:
        return function(ctx, budget, runs)
    return section


def print_table(paths: list[Path]) -> None:
    """The short table: one line per comparison row of the JSON files this run wrote."""
    from benchmarks.table import format_value, load_rows

    rows = load_rows(paths)
    header = ("comparison", "darkroom", "baseline", "ratio", "target", "met")
    lines = [(r.get("comparison", "?"), format_value(r.get("darkroom"), r.get("unit", "")),
              format_value(r.get("baseline"), r.get("unit", "")),
              format_value(r["ratio"], "x", r.get("ratio_bound", "")), r.get("target") or "",
              {True: "yes", False: "NO", None: ""}[r.get("met")]) for r in rows]
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]
    print()
    for line in [header, tuple("-" * w for w in widths), *lines]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip())
    for r in rows:
        if r.get("note"):
            print(f"  * {r['comparison']}: {r['note']}")


if __name__ == "__main__":
    sys.exit(main())
