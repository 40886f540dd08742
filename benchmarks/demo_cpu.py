"""The README's main job, timed: `make demo` on a clean clone (set-up, then the demo) and `darkroom demo --quick`.

    python -m benchmarks.demo_cpu            # clone HEAD to a temp folder; make install; make demo; demo --quick
    python -m benchmarks.demo_cpu --only-quick   # time only `darkroom demo --quick`, in this environment
    python -m benchmarks.demo_cpu --quick    # the same, as a code-path check (its result is never tabled)
Targets (issue 6): `make demo` <= 15 minutes including set-up, `darkroom demo --quick` <= 3 minutes, on 2 cores.
The set-up installs from the registry (pip's cache on this machine may hold the wheels; a machine without it
downloads them). The demo's printed summary (accuracy, modes, translation accuracy, phase times) is recorded as
figures. Writes demo_cpu.json (demo_cpu-quick.json) to $OUT or benchmarks/results/.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"make_demo_seconds": 15 * 60.0, "demo_quick_seconds": 3 * 60.0}
SUMMARY_LINE = re.compile(r"^(classifier|GAN|CycleGAN|time:)(.*?)\s{2,}(\S.*)$")


def timed(command: list[str], cwd: Path, log: Path) -> tuple[float, str]:
    """Run `command` in `cwd`, its output to `log`; (seconds, stdout). A failure ends the benchmark."""
    started = time.monotonic()
    with open(log, "w") as handle:
        result = subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, stderr=handle, text=True)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed in {cwd} (exit {result.returncode}); see {log}")
    print(f"{' '.join(command)}: {seconds:.0f} s", flush=True)
    return seconds, result.stdout


def summary(stdout: str) -> dict[str, str]:
    """The demo's printed summary table, name -> value."""
    found = {}
    for line in stdout.splitlines():
        if match := SUMMARY_LINE.match(line.rstrip()):
            found[(match.group(1) + match.group(2)).strip()] = match.group(3).strip()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only darkroom demo --quick in this environment")
    parser.add_argument("--only-quick", action="store_true", help="time only darkroom demo --quick (a real result)")
    args = parser.parse_args(argv)
    quick_only = args.quick or args.only_quick
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="darkroom-demo-") as tmp:
        tmp = Path(tmp)
        if quick_only:
            seconds, out = timed([sys.executable, "-m", "darkroom", "demo", "--quick", "--out", str(tmp / "quick")],
                                 REPO, tmp / "quick.log")
            figures["demo_quick_seconds"], figures["demo_quick"] = seconds, summary(out)
        else:
            clone = tmp / "clone"
            subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
            figures["setup_seconds"], _ = timed(["make", "install"], clone, tmp / "install.log")
            figures["demo_seconds"], out = timed(["make", "demo"], clone, tmp / "demo.log")
            figures["make_demo_seconds"] = figures["setup_seconds"] + figures["demo_seconds"]
            figures["demo"] = summary(out)
            seconds, out = timed([str(clone / ".venv" / "bin" / "darkroom"), "demo", "--quick", "--out",
                                  str(tmp / "quick")], clone, tmp / "quick.log")
            figures["demo_quick_seconds"], figures["demo_quick"] = seconds, summary(out)
    figures["targets_met"] = {name: figures[name] <= limit for name, limit in TARGETS.items() if name in figures}
    for name, value in figures.items():
        print(f"{name:20s} {value}")
    rows = [common.comparison_row(f"{label}: wall time", figures[name], TARGETS[name], "s", "the issue's limit",
                                  target=1.0, higher_is_better=False)
            for name, label in (("make_demo_seconds", "make demo on a clean clone (set-up included)"),
                                ("demo_quick_seconds", "darkroom demo --quick")) if name in figures]
    settings = {"targets_seconds": TARGETS, "clean_clone": not quick_only}
    name = "demo_cpu-quick" if args.quick else "demo_cpu_quick" if args.only_quick else "demo_cpu"
    path = common.write_result(name, settings, figures, rows=rows,
                               device="cpu")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
