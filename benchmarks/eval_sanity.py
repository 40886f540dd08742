"""Metric sanity: real Fashion-MNIST images degraded in planted, graded ways, scored by every metric of `darkroom eval`
(built-in domain features), each with its 95% interval. A degradation is detected by a metric at a strength when the
degraded set's interval and the undegraded set's do not overlap (the Mann-Whitney memorization test: p < 0.01).

    python -m benchmarks.eval_sanity [--n 5000]

Writes benchmarks/results/eval_sanity.json (figures.degradations: one {"name", "strength", "metric", "value",
"interval", "detected"} per degradation, strength and metric) and eval_sanity.png, to $OUT when that is set.
"""
from __future__ import annotations

import argparse
import math
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.common import comparison_row, results_dir, write_result  # noqa: E402
from darkroom.data.idx import load_idx_dataset  # noqa: E402
from darkroom.evaluate.features import DomainFeatures, builtin_feature_run  # noqa: E402
from darkroom.metrics.floor import score_features  # noqa: E402
from darkroom.metrics.intervals import RESAMPLES, separated  # noqa: E402

# name -> (strengths, unit); strength 0 is the undegraded set every other one is compared with
DEGRADATIONS: dict[str, tuple[tuple[float, ...], str]] = {
    "drop_classes": ((1, 2, 3, 5), "classes left out (the set refilled from the other classes)"),
    "blur": ((0.5, 1.0, 1.5, 2.0), "Gaussian blur sigma, pixels"),
    "noise": ((4, 8, 16, 32), "additive Gaussian noise sigma, grey levels of 255"),
    "exact_copies": ((0.1, 0.2, 0.3, 0.5), "share replaced by training images the metrics see"),
    "near_copies": ((0.1, 0.2, 0.3, 0.5), "share replaced by those training images shifted 1 px, noise sigma 4"),
    "one_class_repeated": ((0.1, 0.2, 0.3, 0.5), "share replaced by more images of one class (trouser)"),
}
METRICS = ("frechet_inception_distance", "fd_infinity", "kernel_inception_distance_mean", "precision", "recall",
           "density", "coverage", "vendi_score", "modes_hit", "mode_kl_fake_real", "mode_kl_real_fake",
           "mode_max_fraction", "memo_nn_ratio", "memo_mannwhitney_p", "memo_copy_fraction", "memo_ct",
           "memo_authentic_fraction")
TROUSER = 1


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """uint8 (N, 1, H, W) blurred by a separable Gaussian (radius 3 sigma, reflected borders)."""
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.exp(-torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2 / (2 * sigma ** 2))
    taps = taps / taps.sum()
    x = F.pad(images.float(), (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, taps.view(1, 1, 1, -1))
    x = F.conv2d(x, taps.view(1, 1, -1, 1))
    return x.round().clamp(0, 255).to(torch.uint8)


def noisy(images: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(images.shape, generator=generator) * sigma
    return (images.float() + noise).round().clamp(0, 255).to(torch.uint8)


def shifted(images: torch.Tensor) -> torch.Tensor:
    """One pixel to the right, the vacated column black."""
    out = torch.roll(images, 1, dims=-1)
    out[..., 0] = 0
    return out


def degraded(name: str, strength: float, base: torch.Tensor, pool: torch.Tensor, pool_labels: torch.Tensor,
             train_reference: torch.Tensor, seed: int) -> torch.Tensor:
    """The n base images (distinct pool images) degraded by `name` at `strength`; seeded."""
    n = len(base)
    generator = torch.Generator().manual_seed(seed)
    if name == "drop_classes":
        keep = torch.nonzero(pool_labels >= int(strength)).flatten()  # classes 0..k-1 left out
        return pool[keep[torch.randperm(len(keep), generator=generator)[:n]]]
    if name == "blur":
        return blur(base, strength)
    if name == "noise":
        return noisy(base, strength, generator)
    out = base.clone()
    replaced = torch.randperm(n, generator=generator)[:round(strength * n)]
    if name in ("exact_copies", "near_copies"):
        copies = train_reference[torch.randperm(len(train_reference), generator=generator)[:len(replaced)]]
        out[replaced] = copies if name == "exact_copies" else noisy(shifted(copies), 4, generator)
    elif name == "one_class_repeated":
        trousers = torch.nonzero(pool_labels == TROUSER).flatten()
        out[replaced] = pool[trousers[torch.randperm(len(trousers), generator=generator)[:len(replaced)]]]
    else:
        raise ValueError(name)
    return out


def detected(metric: str, value: float, low: float, high: float, reference: dict) -> bool:
    if metric == "memo_mannwhitney_p":
        return bool(value < 0.01 <= reference["memo_mannwhitney_p"])
    return separated(low, high, reference[f"{metric}_ci_low"], reference[f"{metric}_ci_high"])


def entries(name: str, strength: float, scores: dict, reference: dict) -> list[dict]:
    out = []
    for metric in METRICS:
        value = scores[metric]
        low, high = scores.get(f"{metric}_ci_low", float("nan")), scores.get(f"{metric}_ci_high", float("nan"))
        out.append({"name": name, "strength": strength, "metric": metric, "value": value,
                    "interval": None if metric == "memo_mannwhitney_p" else [low, high],
                    "detected": False if name == "none" else detected(metric, value, low, high, reference)})
    return out


def summary_table(records: list[dict], reference: dict) -> tuple[str, dict]:
    """Markdown: one row per metric, one column per degradation; a cell is the direction of the move, how many of
    the strengths it detected, and `~` when the values do not move monotonically with strength."""
    cells: dict[str, dict[str, str]] = {}
    for name, (strengths, _) in DEGRADATIONS.items():
        for metric in METRICS:
            rows = [r for r in records if r["name"] == name and r["metric"] == metric]
            values = [reference[metric]] + [r["value"] for r in rows]
            steps = np.diff(values)
            monotone = bool((steps >= 0).all() or (steps <= 0).all())
            hits = sum(r["detected"] for r in rows)
            arrow = "↑" if values[-1] > values[0] else "↓" if values[-1] < values[0] else "="
            cells.setdefault(metric, {})[name] = (f"{arrow} {hits}/{len(rows)}{'' if monotone else ' ~'}"
                                                  if hits else "·")
    header = "| metric | " + " | ".join(DEGRADATIONS) + " |"
    lines = [header, "|" + "---|" * (len(DEGRADATIONS) + 1)]
    for metric in METRICS:
        lines.append(f"| {metric} | " + " | ".join(cells[metric][name] for name in DEGRADATIONS) + " |")
    return "\n".join(lines), cells


def plot(records: list[dict], reference: dict, path) -> None:
    """Per degradation: each metric's move from the undegraded value in units of the undegraded interval's
    half-width (|move| > 2 roughly where intervals stop overlapping), symlog scale."""
    figure, axes = plt.subplots(2, 3, figsize=(15, 8.5), sharey=True)
    colours = plt.cm.tab20(np.linspace(0, 1, len(METRICS)))
    for axis, (name, (strengths, unit)) in zip(axes.flat, DEGRADATIONS.items()):
        for colour, metric in zip(colours, METRICS):
            if metric == "memo_mannwhitney_p":
                continue
            half = (reference[f"{metric}_ci_high"] - reference[f"{metric}_ci_low"]) / 2
            rows = [r for r in records if r["name"] == name and r["metric"] == metric]
            moves = [(r["value"] - reference[metric]) / half if half > 0 else 0.0 for r in rows]
            axis.plot([0, *strengths], [0.0, *moves], marker="o", ms=3, color=colour, label=metric)
        axis.axhspan(-2, 2, color="grey", alpha=0.15)
        axis.set_yscale("symlog", linthresh=2)
        axis.set(title=name, xlabel=unit)
    axes[0, 0].set_ylabel("move / undegraded half-width")
    axes[1, 0].set_ylabel("move / undegraded half-width")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=6, fontsize=8)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000, help="images per scored set (fake and real)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.time()
    train, test = load_idx_dataset("fashion-mnist", "train"), load_idx_dataset("fashion-mnist", "test")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))
    train_reference = train.images[order[:10_000]]  # what memorization compares with: the "model's" training images
    pool, pool_labels = train.images[order[10_000:]], train.labels[order[10_000:]]  # never in the reference: fresh
    base = pool[:args.n]
    real = test.images[torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed + 1))[:args.n]]
    judge = DomainFeatures(builtin_feature_run(), torch.device("cpu"))
    f_real, p_real = judge(real)
    f_train, _ = judge(train_reference)

    def score(images: torch.Tensor) -> dict:
        f_fake, p_fake = judge(images)
        return score_features(f_fake, f_real, p_fake, p_real, f_train, len(judge.classes), args.seed,
                              resamples=RESAMPLES)

    reference = score(base)
    records = entries("none", 0.0, reference, reference)
    seconds = {"none": time.time() - started}
    for name, (strengths, _) in DEGRADATIONS.items():
        tick = time.time()
        for index, strength in enumerate(strengths):
            images = degraded(name, strength, base, pool, pool_labels, train_reference, args.seed + 100 + index)
            records += entries(name, strength, score(images), reference)
        seconds[name] = time.time() - tick
        print(f"{name}: {seconds[name]:.0f} s", flush=True)
    degradations = [r for r in records if r["name"] != "none"]
    table, cells = summary_table(degradations, reference)
    smallest = {name: [r["metric"] for r in degradations if r["name"] == name and r["strength"] == strengths[0]
                       and r["detected"]] for name, (strengths, _) in DEGRADATIONS.items()}
    caught = sum(bool(metrics) for metrics in smallest.values())
    plot(degradations, reference, results_dir() / "eval_sanity.png")
    settings = {"n_fake": args.n, "n_real": args.n, "seed": args.seed, "resamples": RESAMPLES,
                "fake": "Fashion-MNIST training images outside the training reference (fresh), degraded",
                "real": "Fashion-MNIST test images", "train_reference": "10,000 training images (memorization)",
                "features": judge.name, "strengths": {name: list(s) for name, (s, _) in DEGRADATIONS.items()},
                "units": {name: unit for name, (_, unit) in DEGRADATIONS.items()},
                "detected": "the degraded set's 95% interval and the undegraded set's do not overlap "
                            "(memo_mannwhitney_p: p < 0.01)"}
    figures = {"degradations": degradations, "reference": [r for r in records if r["name"] == "none"],
               "detected_at_smallest_strength": smallest, "table": table, "cells": cells,
               "seconds": {**seconds, "total": time.time() - started}}
    row = comparison_row("metric sanity: planted degradations detected at their smallest strength by some metric",
                         float(caught), float(len(DEGRADATIONS)), "of 6", "planted degradations", target=1.0,
                         note="python -m benchmarks.eval_sanity; the table in benchmarks/README.md")
    path = write_result("eval_sanity", settings, figures, rows=[row], device="cpu",
                        notes="Each metric's value and 95% interval per degradation and strength; see the README table.")
    print(table)
    print(f"detected at the smallest strength: {caught}/{len(DEGRADATIONS)}; wrote {path} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
