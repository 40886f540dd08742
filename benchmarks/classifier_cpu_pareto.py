"""Part (5) of benchmarks.classifier_cpu: the time-accuracy front on Fashion-MNIST. darkroom (its budget presets,
classifier.BUDGET_PRESETS), the plain PyTorch loop and fastai's fit_one_cycle (where fastai imports) each trained at
several epoch budgets on the same net (cpunet) and data, >= 3 seeds a point, the three sides alternating in this
process; then darkroom's 300-second record preset over --record-seeds seeds. Writes classifier_cpu_pareto.json and
classifier_cpu_pareto.png (mean test accuracy against mean training seconds, one line a side).

    .fastai-env/bin/python -m benchmarks.classifier_cpu --only pareto   # all three sides (make fastai-env first)
    python -m benchmarks.classifier_cpu --only pareto                   # darkroom and the plain loop only
"""
from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import common
from darkroom import classifier
from darkroom.config import build

SIDES = ("darkroom", "plain", "fastai")
TARGET = 0.935
RECORD_SECONDS, RECORD_ACCURACY = 300.0, 0.94
PLAIN_LR, PLAIN_WEIGHT_DECAY, BATCH = 0.4, 5e-4, 256  # the plain loop's settings, as in the time-to-92% part


def darkroom_values(preset: str, args: argparse.Namespace) -> dict:
    values = {**classifier.PRESETS[preset], "device": "cpu", "quiet": True, "data_root": args.data_root}
    if args.quick:  # the code paths, not the numbers
        values.update(sample=0.005, test_sample=0.05, batch_size=50, progressive="")
    return values


def budgets(args: argparse.Namespace, side: str = "darkroom") -> list[int]:
    """darkroom's epoch budgets (--pareto-budgets) or the baselines' (--pareto-baseline-budgets)."""
    text = args.pareto_budgets if side == "darkroom" else args.pareto_baseline_budgets
    return [1] if args.quick else [int(b) for b in text.split(",")]


def point(budget: int | str, runs: list[dict]) -> dict:
    accuracy = [run["test_acc"] for run in runs]
    return {"budget": budget, "train_time_s": statistics.fmean(run["train_time"] for run in runs),
            "test_acc_mean": statistics.fmean(accuracy), "test_acc_std": statistics.stdev(accuracy) if len(runs) > 1 else 0.0,
            "test_acc_min": min(accuracy), "seeds": len(runs), "runs": runs}


def best_at(points: list[dict], seconds: float) -> float | None:
    """The best mean accuracy among `points` whose mean training time is at most `seconds`."""
    reached = [p["test_acc_mean"] for p in points if p["train_time_s"] <= seconds]
    return max(reached) if reached else None


def time_to(points: list[dict], target: float) -> float | None:
    """The least mean training time of a point whose mean accuracy reaches `target` (None when none does)."""
    times = [p["train_time_s"] for p in points if p["test_acc_mean"] >= target]
    return min(times) if times else None


def front_check(points: dict[str, list[dict]]) -> list[dict]:
    """For every baseline point: darkroom's best mean accuracy at equal or less training time, and whether it is >=."""
    checks = []
    for side in ("plain", "fastai"):
        for theirs in points.get(side, []):
            ours = best_at(points["darkroom"], theirs["train_time_s"])
            checks.append({"side": side, "budget": theirs["budget"], "train_time_s": theirs["train_time_s"],
                           "their_acc": theirs["test_acc_mean"], "darkroom_best_acc": ours,
                           "holds": ours is not None and ours >= theirs["test_acc_mean"]})
    return checks


def plot(points: dict[str, list[dict]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for side, colour in zip(SIDES, ("tab:red", "tab:blue", "tab:green")):
        rows = sorted(points.get(side, []), key=lambda p: p["train_time_s"])
        if not rows:
            continue
        axis.errorbar([p["train_time_s"] for p in rows], [100 * p["test_acc_mean"] for p in rows],
                      yerr=[100 * p["test_acc_std"] for p in rows], marker="o", ms=4, capsize=3, color=colour,
                      label=side)
        for p in rows:
            axis.annotate(f"{p['budget']}", (p["train_time_s"], 100 * p["test_acc_mean"]), fontsize=7,
                          textcoords="offset points", xytext=(4, -10))
    axis.axhline(100 * TARGET, color="grey", lw=0.8, ls="--")
    axis.axvline(RECORD_SECONDS, color="grey", lw=0.8, ls=":")
    axis.set(xscale="log", xlabel="mean training seconds (2 CPU cores, log scale)", ylabel="mean test accuracy (%)",
             title="Fashion-MNIST, cpunet: accuracy for the time (labels: epochs, or the preset)")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def pareto(args: argparse.Namespace) -> Path:
    from benchmarks.classifier_cpu import darkroom_seed_run, fastai_curve, plain_train, result_name

    started = time.time()
    try:
        import fastai  # noqa: F401
        sides = SIDES
    except ImportError:
        sides = ("darkroom", "plain")
        print("  fastai is not importable in this Python: its side is left out (make fastai-env)", flush=True)
    seeds = 1 if args.quick else args.pareto_seeds
    runs: dict[str, dict] = {side: {} for side in sides}
    with tempfile.TemporaryDirectory(prefix="bench-pareto-") as folder:
        first = darkroom_values(classifier.BUDGET_PRESETS[budgets(args)[0]], args)
        cfg = build(classifier.CONFIG, {**first, "out": f"{folder}/unused"})
        train, test = classifier.load_data(cfg)
        turn = 0
        for budget in sorted(set(budgets(args)) | set(budgets(args, "plain"))):
            here = tuple(side for side in sides if budget in budgets(args, side))
            values = {**darkroom_values(classifier.BUDGET_PRESETS.get(budget, classifier.RECORD_PRESET), args),
                      "epochs": float(budget)}
            side_cfg = build(classifier.CONFIG, {**values, "arch": "cpunet", "batch_size": first["batch_size"],
                                                 "out": f"{folder}/unused"})

            def darkroom_side(seed: int) -> dict:
                _, result = darkroom_seed_run(values, seed, f"{folder}/d{budget}")
                return {"seed": seed, "test_acc": result["test_acc"], "train_time": result["train_time"]}

            def plain_side(seed: int) -> dict:
                last = plain_train("cpunet", train, test, budget, side_cfg.batch_size, PLAIN_LR, PLAIN_WEIGHT_DECAY,
                                   seed)[-1]
                return {"seed": seed, "test_acc": last["test_acc"], "train_time": last["train_time"]}

            def fastai_side(seed: int) -> dict:
                last = fastai_curve(side_cfg, train, test, args.fastai_lr, seed)[-1]
                return {"seed": seed, "test_acc": last["test_acc"], "train_time": last["train_time"]}

            functions = {"darkroom": darkroom_side, "plain": plain_side, "fastai": fastai_side}
            for seed in range(seeds):  # the sides' order rotates run by run: slow drifts spread over all of them
                order = here[turn % len(here):] + here[:turn % len(here)]
                turn += 1
                for side in order:
                    runs[side].setdefault(budget, []).append(functions[side](seed))
            print(f"  budget {budget} epochs: " + ", ".join(
                f"{side} {statistics.fmean(r['test_acc'] for r in runs[side][budget]):.4f} in "
                f"{statistics.fmean(r['train_time'] for r in runs[side][budget]):.0f} s" for side in here), flush=True)
        record_values = darkroom_values(classifier.RECORD_PRESET, args)
        record_runs = []
        for seed in range(1 if args.quick else args.record_seeds):
            _, result = darkroom_seed_run(record_values, seed, f"{folder}/record")
            record_runs.append({"seed": seed, "test_acc": result["test_acc"], "train_time": result["train_time"]})
    points = {side: [point(budget, side_runs) for budget, side_runs in runs[side].items()] for side in sides}
    record = point(classifier.RECORD_PRESET, record_runs)
    points["darkroom"].append(record)
    checks = front_check(points)
    reach = {side: time_to(points[side], TARGET) for side in sides}
    figures = {"points": points, "time_to_93_5_s": reach,
               "record_300s": {"preset": classifier.RECORD_PRESET, "test_acc_mean": record["test_acc_mean"],
                               "test_acc_min": record["test_acc_min"], "train_time_s": record["train_time_s"],
                               "seeds": record["seeds"], "met": record["test_acc_mean"] >= RECORD_ACCURACY
                               and max(r["train_time"] for r in record_runs) <= RECORD_SECONDS},
               "front": checks, "front_holds": all(check["holds"] for check in checks),
               "seconds": time.time() - started}
    rows = []
    for side in sides[1:]:
        ours, theirs = reach["darkroom"], reach[side]
        bound = "<=" if ours is not None and theirs is None else ""
        if ours is not None and theirs is None:  # the baseline never reached it: its slowest point bounds it below
            theirs = max(p["train_time_s"] for p in points[side])
        rows.append(common.comparison_row(
            f"time to 93.5% Fashion-MNIST vs {side} (CPU, best budget)", ours, theirs, "s", side, target=0.6,
            higher_is_better=False, ratio_bound=bound,
            note="" if reach[side] is not None else f"{side} never reached 93.5%: its figure is its slowest point"))
    misses = [c for c in checks if not c["holds"]]
    rows.append(common.comparison_row(
        "darkroom's front >= the best baseline at every budget (CPU)", sum(c["holds"] for c in checks), len(checks),
        "points", "baseline points", note="; ".join(
            f"{c['side']} {c['budget']} ep ({c['their_acc']:.4f} in {c['train_time_s']:.0f} s) > darkroom's "
            f"{c['darkroom_best_acc'] if c['darkroom_best_acc'] is None else round(c['darkroom_best_acc'], 4)}"
            for c in misses) or "holds at every baseline point"))
    rows[-1]["met"] = not misses
    rows.append(common.comparison_row(
        f"record: {classifier.RECORD_PRESET}, mean test accuracy within 300 s of training (CPU)", record["test_acc_mean"],
        None, "accuracy", "-", note=f"mean {record['train_time_s']:.0f} s, min acc {record['test_acc_min']:.4f}, "
                                    f"n={record['seeds']}; target >= 0.94"))
    rows[-1]["met"], rows[-1]["target"] = figures["record_300s"]["met"], ">= 0.94 in <= 300 s"
    settings = {"quick": args.quick, "budgets_epochs": {side: budgets(args, side) for side in sides}, "seeds": seeds,
                "sides": list(sides), "darkroom_presets": {b: classifier.BUDGET_PRESETS[b] for b in budgets(args)},
                "record_preset": classifier.RECORD_PRESET, "record_config": record_values,
                "plain": {"arch": "cpunet", "batch_size": BATCH, "max_lr": PLAIN_LR, "weight_decay": PLAIN_WEIGHT_DECAY,
                          "optimizer": "SGD momentum 0.9", "schedule": "torch OneCycleLR", "augmentation": "none"},
                "fastai": {"lr_max": args.fastai_lr, "call": "Learner(cpunet).fit_one_cycle(epochs, lr_max)",
                           "data": "the plain loop's normalised tensors, no augmentation"},
                "threads": torch.get_num_threads()}
    notes = ("Each point: one epoch budget, seeds 0..n-1 on every side, mean training seconds (evaluation and data "
             "loading excluded on every side; fastai's by a callback's clock) and mean test accuracy on the whole test "
             "set. The sides alternate in this process, their order rotating run by run. darkroom runs its budget "
             "preset for that many epochs; the record preset is darkroom's extra point. The front holds at a baseline "
             "point when some darkroom point took no more mean time and reached at least its mean accuracy. Time to "
             "93.5% = the fastest point whose mean reaches it. darkroom's presets run --precision fast: bf16 autocast where "
             "the CPU multiplies bf16 in hardware (AMX or AVX512-BF16; environment.cpu_vector_extension says which), else fp32; "
             "the plain loop and fastai run fp32, their defaults.")
    path = common.write_result(result_name("classifier_cpu_pareto", args), settings, figures, rows=rows, notes=notes,
                               device="cpu")
    plot(points, path.with_suffix(".png"))
    return path
