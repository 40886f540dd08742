"""`make bench`: the CPU benchmarks one after another (each its own process), then the table in benchmarks/README.md.

    python -m benchmarks.run_cpu                         # classifier_cpu, gan_cpu, cyclegan_cpu, eval_cpu, toy_cpu, demo_cpu
    python -m benchmarks.run_cpu --only gan_cpu          # one of them (each also runs alone: python -m benchmarks.gan_cpu)
    python -m benchmarks.run_cpu --quick                 # pass --quick on (code paths only; the README is left alone)
The whole set is held to --minutes (180; about 2.5 hours on 2 quiet cores); a script still running when that runs out is stopped and reported.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ("classifier_cpu", "gan_cpu", "cyclegan_cpu", "eval_cpu", "toy_cpu", "demo_cpu")


def run_script(name: str, extra: list[str], seconds_left: float) -> tuple[str, float]:
    """Run `python -m benchmarks.<name>`; (outcome, seconds)."""
    started = time.monotonic()
    command = [sys.executable, "-m", f"benchmarks.{name}", *extra]
    print(f"\n=== {' '.join(command[1:])} ({seconds_left / 60:.0f} min left)", flush=True)
    try:
        code = subprocess.run(command, cwd=HERE.parent, timeout=max(1.0, seconds_left)).returncode
        outcome = "ok" if code == 0 else f"exit {code}"
    except subprocess.TimeoutExpired:
        outcome = "stopped: out of time"
    return outcome, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=SCRIPTS, help="run only these (repeatable)")
    parser.add_argument("--quick", action="store_true", help="pass --quick to each script; print the table only")
    parser.add_argument("--minutes", type=float, default=180.0, help="time allowed for the whole set")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.minutes * 60
    outcomes = []
    for name in args.only or SCRIPTS:
        if not (HERE / f"{name}.py").is_file():
            outcomes.append((name, "absent", 0.0))
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            outcomes.append((name, "skipped: out of time", 0.0))
            continue
        outcome, seconds = run_script(name, ["--quick"] if args.quick else [], left)
        outcomes.append((name, outcome, seconds))
    print("\n=== summary")
    for name, outcome, seconds in outcomes:
        print(f"  {name:14s} {outcome:22s} {seconds / 60:5.1f} min")
    from benchmarks import common, table

    results = common.results_dir()
    table.main(["--results", str(results), "--print", "--include-trials"] if args.quick else ["--results", str(results)])
    return 0 if all(outcome in ("ok", "absent") for _, outcome, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
