"""WGAN-GP vs a plain GAN on the 2-D toys (8 Gaussians on a ring, 25 on a grid): modes captured and the
high-quality fraction (VEEGAN's counts: a sample within 3 std of its nearest mode; a mode captured when it holds
any), and the wall time of each run, trained through the CLI (`darkroom train gan --preset toy`).

    python -m benchmarks.toy_cpu                  # 2 sets x 2 losses x 2 seeds (4 minutes on 2 AVX-512 cores)
    python -m benchmarks.toy_cpu --quick          # tiny settings: checks the code paths, numbers mean nothing
Both losses get the preset's generator iterations (1,200; WGAN-GP's toy experiments compare at equal generator
iterations) and nets; the plain GAN is the non-saturating BCE loss (`--loss dcgan`) with its paper's Adam betas
(0.5, 0.999), one discriminator step per generator step. Each run's counts are those it logged at its last
iteration (1,000 samples from fixed noise). Writes toy_cpu.json (toy_cpu-quick.json) to $OUT or benchmarks/results/.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common

SETS = ("ring8", "grid25")
LOSSES = {"wgan-gp": [], "dcgan": ["--beta2", "0.999"]}  # the preset is WGAN-GP's; the plain GAN's betas per DCGAN
TARGET_SECONDS = 120.0


def train(data: str, loss: str, seed: int, out: Path, iterations: int | None) -> dict:
    command = [sys.executable, "-m", "darkroom", "train", "gan", "--preset", "toy", "--data", f"toy:{data}",
               "--loss", loss, *LOSSES[loss], "--seed", str(seed), "--out", str(out), "--quiet"]
    if iterations:
        command += ["--iterations", str(iterations), "--sample-every", str(iterations), "--log-every",
                    str(max(1, iterations // 4))]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"toy run failed ({' '.join(command[2:])}):\n{result.stderr[-2000:]}")
    counts = [line for line in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
              if "toy_modes_captured" in line]
    last = counts[-1]
    return {"seconds": seconds, "iteration": last["iteration"], "modes": last["toy_modes_captured"],
            "n_modes": last["toy_n_modes"], "high_quality": last["toy_high_quality_fraction"],
            "kl_uniform": last["toy_mode_kl_uniform"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny settings for development and tests")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args(argv)
    seeds = 1 if args.quick else args.seeds
    iterations = 20 if args.quick else None
    runs: dict[str, dict[str, list[dict]]] = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="darkroom-toy-") as tmp:
        for data in SETS:
            runs[data] = {}
            for loss in LOSSES:
                runs[data][loss] = [train(data, loss, seed, Path(tmp) / f"{data}-{loss}-{seed}", iterations)
                                    for seed in range(seeds)]
                for seed, run in enumerate(runs[data][loss]):
                    print(f"{data:7s} {loss:8s} seed {seed}: {run['modes']:.0f}/{run['n_modes']:.0f} modes, "
                          f"high quality {run['high_quality']:.3f}, {run['seconds']:.0f} s", flush=True)
            summary = {loss: {"modes_mean": sum(r["modes"] for r in rs) / len(rs),
                              "modes_min": min(r["modes"] for r in rs),
                              "high_quality_mean": sum(r["high_quality"] for r in rs) / len(rs),
                              "seconds_max": max(r["seconds"] for r in rs)} for loss, rs in runs[data].items()}
            runs[data]["summary"] = summary
            n_modes = runs[data]["wgan-gp"][0]["n_modes"]
            rows.append(common.comparison_row(
                f"toy {data}: modes captured of {n_modes:.0f} (mean of {seeds} seeds)",
                summary["wgan-gp"]["modes_mean"], summary["dcgan"]["modes_mean"], "modes",
                "plain GAN (non-saturating BCE), same nets and generator iterations",
                note=f"high-quality fraction {summary['wgan-gp']['high_quality_mean']:.3f} (WGAN-GP) vs "
                     f"{summary['dcgan']['high_quality_mean']:.3f}; slowest run "
                     f"{max(s['seconds_max'] for s in summary.values()):.0f} s (target < {TARGET_SECONDS:.0f} s)"))
    settings = {"preset": "toy", "sets": list(SETS), "losses": {k: v or "preset" for k, v in LOSSES.items()},
                "seeds": seeds, "iterations": iterations or "preset (1200)", "target_seconds_per_run": TARGET_SECONDS}
    path = common.write_result("toy_cpu-quick" if args.quick else "toy_cpu", settings, runs, rows=rows, device="cpu")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
