"""The 2-D toys on PacGAN's protocol (fjxmlzn/PacGAN synthetic_data_experiments): 8 Gaussians on the unit circle
(std 0.01) and 25 on the grid -4..4 (std 0.05); 2,500 samples from fixed noise; a sample is high quality within 3 std
of its nearest centre; a mode is captured when it holds a high-quality sample (PacGAN's count; the stricter count
of modes with >= 20 is beside it); reverse KL of the high-quality samples' mode histogram to uniform.

    python -m benchmarks.toy_cpu                  # the toy preset (WGAN-GP), 5 seeds per set; plain GAN, 2 seeds
    python -m benchmarks.toy_cpu --quick          # tiny settings: checks the code paths, numbers mean nothing

darkroom's rows are the `toy` preset through the CLI, unchanged per set (`darkroom train gan --preset toy --data
toy:grid25`). The plain GAN is the non-saturating loss (`--loss dcgan`, one discriminator step, DCGAN's betas) on
the same nets, iterations and schedule. PacGAN's rows are its Table 1 (10 trials, 400 epochs of 100,000 samples at
batch 100, i.e. 400k iterations, on larger nets). Each run's counts are those it logged at its last iteration.
Writes toy_cpu.json (toy_cpu-quick.json) to $OUT or benchmarks/results/.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common

SETS = ("ring8", "grid25")
LOSSES = {"wgan-gp": [], "dcgan": ["--beta1", "0.5", "--beta2", "0.999", "--n-critic", "1"]}
TARGET_SECONDS = 120.0
TARGETS = {"ring8": {"modes": 8.0, "high_quality": 0.95}, "grid25": {"modes": 24.5, "high_quality": 0.90}}
# PacGAN (arXiv:1712.04086) Table 1, mean over 10 trials: (modes, high-quality fraction, reverse KL or None where
# ../shared/REFERENCE.md does not carry it); the rows quoted there, nothing else
PACGAN_TABLE1 = {
    "ring8": {"GAN": (6.3, 0.982, None), "PacGAN2": (7.9, 0.956, 0.07)},
    "grid25": {"GAN": (17.3, 0.948, 0.70), "PacGAN4": (24.8, 0.936, 0.04)},
}
KEYS = {"modes": "toy_modes_captured", "modes_20": "toy_modes_20", "n_modes": "toy_n_modes",
        "high_quality": "toy_high_quality_fraction", "reverse_kl": "toy_reverse_kl"}


def train(data: str, loss: str, seed: int, out: Path, iterations: int | None) -> dict:
    command = [sys.executable, "-m", "darkroom", "train", "gan", "--preset", "toy", "--data", f"toy:{data}",
               "--loss", loss, *LOSSES[loss], "--seed", str(seed), "--out", str(out), "--quiet"]
    if iterations:
        command += ["--iterations", str(iterations), "--sample-every", str(iterations), "--log-every",
                    str(max(1, iterations // 4)), "--checkpoint-every", str(iterations)]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"toy run failed ({' '.join(command[2:])}):\n{result.stderr[-2000:]}")
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = [line for line in lines if KEYS["modes"] in line][-1]
    return {"seconds": seconds, "iteration": last["iteration"], **{name: last[key] for name, key in KEYS.items()}}


def summary(runs: list[dict]) -> dict:
    return {"modes_mean": statistics.fmean(r["modes"] for r in runs), "modes_min": min(r["modes"] for r in runs),
            "modes_20_mean": statistics.fmean(r["modes_20"] for r in runs),
            "high_quality_mean": statistics.fmean(r["high_quality"] for r in runs),
            "high_quality_min": min(r["high_quality"] for r in runs),
            "reverse_kl_mean": statistics.fmean(r["reverse_kl"] for r in runs),
            "seconds_max": max(r["seconds"] for r in runs), "seeds": len(runs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny settings for development and tests")
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the toy preset per set")
    parser.add_argument("--baseline-seeds", type=int, default=2, help="seeds of the plain GAN per set")
    args = parser.parse_args(argv)
    seeds = {"wgan-gp": 1 if args.quick else args.seeds, "dcgan": 1 if args.quick else args.baseline_seeds}
    iterations = 20 if args.quick else None
    figures: dict = {"pacgan_table1": PACGAN_TABLE1, "targets": TARGETS}
    rows = []
    with tempfile.TemporaryDirectory(prefix="darkroom-toy-") as tmp:
        for data in SETS:
            figures[data] = {}
            for loss, n in seeds.items():
                figures[data][loss] = [train(data, loss, seed, Path(tmp) / f"{data}-{loss}-{seed}", iterations)
                                       for seed in range(n)]
                for seed, run in enumerate(figures[data][loss]):
                    print(f"{data:7s} {loss:8s} seed {seed}: {run['modes']:.0f}/{run['n_modes']:.0f} modes "
                          f"({run['modes_20']:.0f} with >= 20), high quality {run['high_quality']:.3f}, reverse KL "
                          f"{run['reverse_kl']:.3f}, {run['seconds']:.0f} s", flush=True)
            figures[data]["summary"] = {loss: summary(figures[data][loss]) for loss in seeds}
            ours, plain = figures[data]["summary"]["wgan-gp"], figures[data]["summary"]["dcgan"]
            best = max(PACGAN_TABLE1[data].items(), key=lambda item: (item[1][0], item[1][1]))
            target = TARGETS[data]
            met = ours["modes_mean"] >= target["modes"] and ours["high_quality_mean"] >= target["high_quality"] \
                and ours["seconds_max"] <= TARGET_SECONDS
            figures[data]["met"] = met
            rows.append(common.comparison_row(
                f"toy {data}: modes captured (mean of {ours['seeds']} seeds, PacGAN protocol)", ours["modes_mean"],
                best[1][0], "modes", f"PacGAN Table 1 best ({best[0]}, 400k iterations)",
                note=f"high quality {ours['high_quality_mean']:.3f} (min {ours['high_quality_min']:.3f}) vs "
                     f"{best[0]} {best[1][1]:.3f}; reverse KL {ours['reverse_kl_mean']:.3f}"
                     f"{'' if best[1][2] is None else f' vs {best[1][2]:.2f}'}; "
                     f"plain GAN here {plain['modes_mean']:.1f} modes, {plain['high_quality_mean']:.3f}; slowest run "
                     f"{ours['seconds_max']:.0f} s (target <= {TARGET_SECONDS:.0f} s); target modes >= "
                     f"{target['modes']:g}, high quality >= {target['high_quality']:g}: {'met' if met else 'not met'}"))
    settings = {"preset": "toy", "sets": list(SETS), "losses": {k: v or "preset" for k, v in LOSSES.items()},
                "seeds": seeds, "iterations": iterations or "preset", "target_seconds_per_run": TARGET_SECONDS,
                "protocol": "PacGAN MetricLogger: 2,500 samples, high quality within 3 std, mode captured with one "
                            "high-quality sample, reverse KL over high-quality samples"}
    path = common.write_result("toy_cpu-quick" if args.quick else "toy_cpu", settings, figures, rows=rows, device="cpu")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
