"""`make bench`: the CPU benchmarks one after another (each its own process), then the table in benchmarks/README.md.

    python -m benchmarks.run_cpu                         # classifier_cpu, gan_cpu, cyclegan_cpu, eval_cpu, toy_cpu, demo_cpu
    python -m benchmarks.run_cpu --only gan_cpu          # one of them (each also runs alone: python -m benchmarks.gan_cpu)
    python -m benchmarks.run_cpu --quick                 # pass --quick on (code paths only; the README is left alone)
The whole set is held to --minutes (180: the classifier pareto part alone takes about 75); a script still running when that runs out is stopped and reported.
fastai needs torchvision, which has no build beside darkroom's torch: `make fastai-env` makes `.fastai-env/`
(torch 2.14.1 + torchvision + fastai + darkroom), and when that (or --fastai-python) exists, classifier_cpu's fastai
part runs in it, darkroom's side of that comparison too; without it the part records "not run".
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ("classifier_cpu", "gan_cpu", "cyclegan_cpu", "eval_cpu", "toy_cpu", "demo_cpu")
FASTAI_ENV = HERE.parent / ".fastai-env" / "bin" / "python"


def run_script(name: str, extra: list[str], seconds_left: float, python: str = sys.executable) -> tuple[str, float]:
    """Run `<python> -m benchmarks.<name>` from the checkout; (outcome, seconds)."""
    started = time.monotonic()
    command = [python, "-m", f"benchmarks.{name}", *extra]
    print(f"\n=== {' '.join(command[1:])} ({seconds_left / 60:.0f} min left)", flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))}
    try:
        code = subprocess.run(command, cwd=HERE.parent, env=env, timeout=max(1.0, seconds_left)).returncode
        outcome = "ok" if code == 0 else f"exit {code}"
    except subprocess.TimeoutExpired:
        outcome = "stopped: out of time"
    return outcome, time.monotonic() - started


def planned_runs(args: argparse.Namespace) -> list[tuple[str, str, list[str]]]:
    """(script, python, extra arguments) in order: classifier_cpu's parts with a fastai side (fastai, pareto) go to the
    fastai Python when one exists, the rest of that script to this one."""
    from benchmarks.classifier_cpu import FASTAI_PARTS, PARTS

    runs = []
    fastai = Path(args.fastai_python)
    for name in args.only or SCRIPTS:
        if name == "classifier_cpu" and fastai.is_file():
            runs += [(name, sys.executable, [w for part in PARTS if part not in FASTAI_PARTS for w in ("--only", part)]),
                     (name, str(fastai), [w for part in FASTAI_PARTS for w in ("--only", part)])]
        else:
            runs.append((name, sys.executable, []))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=SCRIPTS, help="run only these (repeatable)")
    parser.add_argument("--quick", action="store_true", help="pass --quick to each script; print the table only")
    parser.add_argument("--minutes", type=float, default=180.0, help="time allowed for the whole set")
    parser.add_argument("--fastai-python", default=os.environ.get("DARKROOM_FASTAI_PYTHON") or str(FASTAI_ENV),
                        help="a Python with fastai and darkroom for classifier_cpu's fastai part (`make fastai-env`)")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.minutes * 60
    outcomes = []
    for name, python, extra in planned_runs(args):
        if not (HERE / f"{name}.py").is_file():
            outcomes.append((name, "absent", 0.0))
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            outcomes.append((name, "skipped: out of time", 0.0))
            continue
        outcome, seconds = run_script(name, extra + (["--quick"] if args.quick else []), left, python)
        outcomes.append((name + (" (fastai)" if python != sys.executable else ""), outcome, seconds))
    print("\n=== summary")
    for name, outcome, seconds in outcomes:
        print(f"  {name:25s} {outcome:22s} {seconds / 60:5.1f} min")
    from benchmarks import common, table

    results = common.results_dir()
    table.main(["--results", str(results), "--print", "--include-trials"] if args.quick else ["--results", str(results)])
    return 0 if all(outcome in ("ok", "absent") for _, outcome, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
