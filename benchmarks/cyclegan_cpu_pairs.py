"""Part (c) of benchmarks.cyclegan_cpu: one CycleGAN recipe, unchanged, across Fashion-MNIST class pairs of different
kinds. Each pair is trained through the CLI exactly as a user would (`darkroom train cyclegan --data
fashion-mnist:A,B`, no preset, no other flag: the small-image default), one pair at a time on every core, then
judged by `darkroom eval cyclegan` on the held-out test images of both classes (never seen in training or
selection). Each pair's worse direction counts; the worst pair is named. Writes cyclegan_cpu_pairs.json and
cyclegan_cpu_pairs.png (test images of each pair and their translations, both directions).

    python -m benchmarks.cyclegan_cpu --only pairs           # the six pairs (about 28 minutes on 2 cores)
    python -m benchmarks.cyclegan_cpu --only pairs --pairs trouser,dress --pairs pullover,coat
    python -m benchmarks.cyclegan_cpu --only pairs --pair-seed 1   # cyclegan_cpu_pairs-seed1.json: seed 0's stays
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import common

CPU = torch.device("cpu")
# (a, b, kind): near and far classes, shape- and texture-changing, both directions. Every target class is one the
# judge itself recognises on >= 95% of real test images (trouser 98.8%, bag 98.9%, sandal 98.1%, sneaker 97.6%,
# ankle boot 96.2%): for t-shirt (87.7%), pullover (89.4%), coat (91.2%), dress (93.4%) or shirt (76.9%) a 95% bar
# would ask translations to look more like the class than its real images do. Such pairs run with --pairs A,B and
# report the judge's real-image accuracy beside theirs.
PAIRS = (
    ("sneaker", "ankle-boot", "near classes, shape (the height of the shaft); the pair the old preset was tuned on"),
    ("sandal", "sneaker", "near classes, texture (open straps vs a closed upper)"),
    ("sandal", "ankle-boot", "texture and shape (open straps vs a closed boot)"),
    ("trouser", "bag", "far classes, shape (two long legs vs a box with handles)"),
    ("bag", "ankle-boot", "far classes, shape (a box vs a boot)"),
    ("trouser", "sneaker", "far classes, shape and orientation (tall and narrow vs wide and low)"),
)
ACCURACY, CYCLE_L1, SECONDS = 0.95, 0.1, 300.0  # issue 22's bars: each direction, each pair


def record_name(args: argparse.Namespace) -> str:
    """The record's (and its image's) name: seed 0 is the issue's table; another seed writes beside it, so a recipe is
    judged on the worst of its seeds without one sweep overwriting another."""
    return ("cyclegan_cpu_pairs" + (f"-seed{args.pair_seed}" if args.pair_seed else "")
            + ("-quick" if args.quick else ""))


def pair_specs(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    if not args.pairs:
        return list(PAIRS[:2] if args.quick else PAIRS)
    kinds = {(a, b): kind for a, b, kind in PAIRS}
    chosen = []
    for text in args.pairs:
        a, _, b = text.partition(",")
        chosen.append((a, b, kinds.get((a, b), "chosen on the command line")))
    return chosen


def train_pair(a: str, b: str, run: Path, args: argparse.Namespace) -> dict:
    """The CLI as a user types it; wall time from launch to exit (start-up and data loading included)."""
    extra = ["--ngf", "4", "--ndf", "4", "--stop-after", "4", "--val-images", "8"] if args.quick else []
    command = [sys.executable, "-m", "darkroom", "train", "cyclegan", "--data", f"fashion-mnist:{a},{b}",
               *extra, "--seed", str(args.pair_seed), "--out", str(run), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=common.REPO, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"training {a} <-> {b} failed: {done.stderr.strip()[-2000:]}")
    status = json.loads((run / "status.json").read_text())
    chosen = [line for line in done.stdout.splitlines() if "no --preset" in line]
    return {"command": " ".join(["darkroom", *command[3:]]), "wall_s": wall, "train_time_s": status.get("train_time"),
            "iterations": status.get("step"), "default_chosen": chosen[0] if chosen else None,
            "summary": done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""}


def evaluate_pair(run: Path, args: argparse.Namespace) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run([sys.executable, "-m", "darkroom", "eval", "cyclegan", str(run)], capture_output=True,
                          text=True, cwd=common.REPO, env=env)
    if done.returncode != 0:
        raise SystemExit(f"darkroom eval cyclegan {run} failed: {done.stderr.strip()[-2000:]}")
    return json.loads((run / "eval.json").read_text())


@torch.no_grad()
def real_accuracy(classes: tuple[str, str]) -> dict[str, float]:
    """The judge on the real test images of each class: what a perfect translation could score."""
    from darkroom.data import sources
    from darkroom.evaluate.features import DomainFeatures, builtin_feature_run

    test = sources.load(f"fashion-mnist:{classes[0]},{classes[1]}", "test")
    judge = DomainFeatures(builtin_feature_run(), CPU)
    _, predicted = judge(test.images)
    labels = np.asarray(test.labels)
    return {name: float((np.asarray(predicted)[labels == index] == judge.classes.index(name)).mean())
            for index, name in enumerate(classes)}


@torch.no_grad()
def translations(run: Path, classes: tuple[str, str], count: int) -> dict[str, torch.Tensor]:
    """The first `count` test images of each class and their translations, uint8 (count, 1, 28, 28) each."""
    from darkroom.cyclegan import load_generators, translate_images
    from darkroom.data import sources

    g_ab, g_ba, meta = load_generators(run, CPU)
    test = sources.load(f"fashion-mnist:{classes[0]},{classes[1]}", "test")
    labels = torch.as_tensor(np.asarray(test.labels))
    real_a, real_b = test.images[labels == 0][:count], test.images[labels == 1][:count]
    return {"real_a": real_a, "fake_b": translate_images(g_ab, real_a, CPU, scale_to=meta["load_size"]),
            "real_b": real_b, "fake_a": translate_images(g_ba, real_b, CPU, scale_to=meta["load_size"])}


def draw(rows: list[tuple[str, dict[str, torch.Tensor]]], path: Path) -> None:
    """One row per pair: A images over their B translations, then B images over their A translations."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(rows), 2, figsize=(9, 1.6 * len(rows)), squeeze=False)
    for (title, images), row in zip(rows, axes):
        for axis, (real, fake, label) in zip(row, (("real_a", "fake_b", "A -> B"), ("real_b", "fake_a", "B -> A"))):
            top = torch.cat(list(images[real][:, 0]), dim=1)  # (28, 28 n)
            bottom = torch.cat(list(images[fake][:, 0]), dim=1)
            axis.imshow(torch.cat([top, bottom]).numpy(), cmap="gray", vmin=0, vmax=255)
            axis.set_title(f"{title}: {label}", fontsize=8)
            axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def pairs(args: argparse.Namespace, work: Path) -> tuple[dict, list[dict]]:
    """Every pair trained, judged and drawn; figures (figures.pairs as issue 22 names them) and table rows."""
    results, drawn = [], []
    for a, b, kind in pair_specs(args):
        run = work / f"{a}-{b}"
        training = train_pair(a, b, run, args)
        scores = evaluate_pair(run, args)
        ceiling = real_accuracy((a, b))
        entry = {"a": a, "b": b, "kind": kind,
                 "accuracy_a2b": scores["translation_target_accuracy_a2b"],
                 "accuracy_b2a": scores["translation_target_accuracy_b2a"],
                 "cycle_l1_a2b": scores["translation_cycle_l1_a2b"], "cycle_l1_b2a": scores["translation_cycle_l1_b2a"],
                 "fid_a2b": scores["translation_fid_a2b"], "fid_b2a": scores["translation_fid_b2a"],
                 "fid_a2b_floor": scores["translation_fid_a2b_floor"], "fid_b2a_floor": scores["translation_fid_b2a_floor"],
                 "real_judged_b": ceiling[b], "real_judged_a": ceiling[a],
                 "seconds": training["wall_s"], "train_seconds": training["train_time_s"],
                 "iterations": training["iterations"], "command": training["command"],
                 "default_chosen": training["default_chosen"]}
        entry["worst_accuracy"] = min(entry["accuracy_a2b"], entry["accuracy_b2a"])
        entry["worst_cycle_l1"] = max(entry["cycle_l1_a2b"], entry["cycle_l1_b2a"])
        entry["met"] = bool(entry["worst_accuracy"] >= ACCURACY and entry["worst_cycle_l1"] <= CYCLE_L1
                            and entry["seconds"] <= SECONDS)
        results.append(entry)
        drawn.append((f"{a} <-> {b}", translations(run, (a, b), 4 if args.quick else 8)))
        print(json.dumps({key: entry[key] for key in ("a", "b", "accuracy_a2b", "accuracy_b2a", "cycle_l1_a2b",
                                                       "cycle_l1_b2a", "seconds")}), flush=True)
    image = common.results_dir() / f"{record_name(args)}.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    draw(drawn, image)
    worst = min(results, key=lambda entry: (entry["worst_accuracy"], -entry["worst_cycle_l1"]))
    figures = {"pairs": results, "worst_pair": f"{worst['a']},{worst['b']}",
               "worst": {"accuracy": min(entry["worst_accuracy"] for entry in results),
                         "cycle_l1": max(entry["worst_cycle_l1"] for entry in results),
                         "seconds": max(entry["seconds"] for entry in results)},
               "acceptance": {"every direction >= 0.95 judged the target class": all(
                                  entry["worst_accuracy"] >= ACCURACY for entry in results),
                              "every cycle L1 <= 0.1": all(entry["worst_cycle_l1"] <= CYCLE_L1 for entry in results),
                              "every pair <= 300 s": all(entry["seconds"] <= SECONDS for entry in results),
                              "pairs": len(results)},
               "image": str(image.relative_to(common.REPO)) if image.is_relative_to(common.REPO) else str(image)}
    rows = []
    for entry in results:
        row = common.comparison_row(
            f"CycleGAN default on {entry['a']} <-> {entry['b']}: worse direction judged the target class (CPU)",
            entry["worst_accuracy"], None, "accuracy", "-",
            note=(f"{entry['kind']}; a2b {entry['accuracy_a2b']:.3f} (real {entry['b']} judged {entry['real_judged_b']:.3f}), "
                  f"b2a {entry['accuracy_b2a']:.3f} (real {entry['a']} {entry['real_judged_a']:.3f}); cycle L1 "
                  f"{entry['cycle_l1_a2b']:.3f} / {entry['cycle_l1_b2a']:.3f}; FID {entry['fid_a2b']:.1f} / "
                  f"{entry['fid_b2a']:.1f}; {entry['seconds']:.0f} s"))
        row["target"], row["met"] = ">= 0.95 both ways, cycle L1 <= 0.1, <= 300 s", entry["met"]
        rows.append(row)
    return figures, rows
