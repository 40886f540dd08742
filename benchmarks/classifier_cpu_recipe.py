"""Part (4) of benchmarks.classifier_cpu: airbench94_muon's techniques (the darkroom preset airbench94_muon, from
KellerJordan/cifar10-airbench airbench94_muon.py) each switched on alone over a plain cpunet on Fashion-MNIST, at a
fixed CPU step budget, 3 seeds paired; writes classifier_cpu_airbench_recipe.json (figures.techniques).

    python -m benchmarks.classifier_cpu --only airbench-recipe   # about 12-13 minutes on 2 quiet cores
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import common
from darkroom import classifier
from darkroom.config import build
from darkroom.data.resident import ResidentImages


def recipe_base(args: argparse.Namespace) -> dict:
    """The plain fastnet at CPU size: cpunet (widths 32/64/128, whitening stem), SGD Nesterov one-cycle at lr 0.4,
    coupled L2 5e-4, random flips and 2-px crops, mean loss, no label smoothing, no TTA; 2 epochs of half the
    training set (234 steps of 256: the fixed step budget), tested on the whole test set."""
    values = {"data": "fashion-mnist", "data_root": args.data_root, "device": "cpu", "quiet": True, "arch": "cpunet",
              "epochs": 2.0, "sample": 0.5, "batch_size": 256, "tta": "none", "channels_last": True}
    if args.quick:
        values.update(sample=0.005, test_sample=0.05, epochs=1.0, batch_size=50)
    return values


def recipe_techniques(base: dict) -> dict[str, dict]:
    """airbench94_muon's techniques (classifier.PRESETS["airbench94_muon"]), each as the fields that switch it on
    over `base`; values scaled where they depend on the net's width, the batch or the epochs."""
    epochs, batch, width = base["epochs"], base["batch_size"], 128  # cpunet's head width
    airbench = {**classifier.PRESETS["airbench94_muon"], "arch": "cpunet", "compile": False, "compile_mode": "default",
                "epochs": epochs, "batch_size": batch, "sample": base["sample"], "data": base["data"],
                "step_decay": 2e-6 * batch, "logit_scale": 1 / width, "stem_bias_epochs": 3 / 8 * epochs}
    return {
        "Muon on the conv filters (lr 0.24, momentum 0.6, Nesterov, 3 Newton-Schulz steps, renormalised)": dict(
            optimizer="muon", muon_lr=0.24, muon_momentum=0.6, muon_ns_steps=3, muon_normalize=True),
        "label smoothing 0.2": dict(label_smoothing=0.2),
        "BatchNorm weights frozen at 1, eps 1e-12": dict(freeze_norm_weight=True, norm_eps=1e-12),
        f"logits x 1/{width} (one over the head's width), head weight at std 1": dict(logit_scale=1 / width),
        "summed loss, lr / batch and weight decay x batch (the same SGD update in exact arithmetic)": dict(
            loss_reduction="sum", lr=0.4 / batch, weight_decay=5e-4 * batch),
        "whitening stem's filters frozen": dict(freeze_stem=True),
        "whitening stem's bias trained 3/8 of the run (airbench: 3 of 8 epochs), then frozen": dict(
            stem_bias_epochs=3 / 8 * epochs),
        "alternating flip": dict(alternating_flip=True),
        "LR linear decay to 0 from step 0, momentum 0.85 (no one-cycle warm-up)": dict(
            schedule="linear", warmup=0.0, momentum=0.85),
        "weight decay 2e-6 x batch per step at the peak LR, biases and norms too": dict(
            weight_decay=0.0, step_decay=2e-6 * batch, exempt_norm_bias=False),
        "all of them: the airbench94_muon preset on cpunet (its LRs per summed loss, head LR 0.67, weighted TTA)":
            {key: value for key, value in airbench.items() if key not in base or value != base[key]},
    }


RECIPE_TTA = {"TTA: 6 views, airbench's weights (1/4, 1/4, 4 x 1/8)": "weighted",
              "TTA: 6 views, equal weights": "multi", "TTA: flip only": "flip"}


def recipe_run(values: dict, seed: int, out: str, name: str) -> dict:
    result = classifier.run(build(classifier.CONFIG, {**values, "seed": seed, "out": out}))
    print(f"  seed {seed} {name[:60]}: acc {result['test_acc']:.4f}, {result['train_time']:.1f} s", flush=True)
    return {"seed": seed, "test_acc": result["test_acc"], "train_time": result["train_time"], "run_dir": result["run_dir"]}


def recipe_tta(run_dir: str, test, seed: int) -> dict[str, float]:
    """The baseline's final weights evaluated under each TTA (TTA changes only the evaluation: no training)."""
    model, _, meta = classifier.load_run(run_dir, torch.device("cpu"))
    data = ResidentImages(test, torch.device("cpu"), meta["mean"], meta["std"], 1000)
    accuracies = {name: classifier.evaluate(model, data, torch.device("cpu"), "fp32", tta)[1]
                  for name, tta in RECIPE_TTA.items()}
    print(f"  seed {seed} TTA on the baseline: " + ", ".join(f"{t} {accuracies[n]:.4f}" for n, t in RECIPE_TTA.items()),
          flush=True)
    return accuracies


def airbench_recipe(args: argparse.Namespace) -> Path:
    """Each airbench94_muon technique switched on alone over the plain cpunet (same seeds, same step budget), and all
    together; TTA variants evaluated on the baseline's weights. Mean test accuracy over --recipe-seeds seeds."""
    started = time.time()
    base = recipe_base(args)
    techniques = recipe_techniques(base)
    seeds = list(range(args.recipe_seeds))
    runs: dict[str, list[dict]] = {"baseline": [], **{name: [] for name in techniques}}
    tta: dict[str, list[float]] = {name: [] for name in RECIPE_TTA}
    with tempfile.TemporaryDirectory(prefix="bench-airbench-recipe-") as folder:
        _, test = classifier.load_data(build(classifier.CONFIG, {**base, "out": f"{folder}/unused"}))
        for seed in seeds:  # order reversed on odd seeds: slow drifts spread over the techniques
            order = list(runs) if seed % 2 == 0 else list(runs)[::-1]
            for name in order:
                values = {**base, **techniques.get(name, {})}
                out = f"{folder}/{list(runs).index(name)}-seed{seed}"
                runs[name].append(recipe_run(values, seed, out, name))
            for name, accuracy in recipe_tta(runs["baseline"][-1]["run_dir"], test, seed).items():
                tta[name].append(accuracy)
    baseline = [run["test_acc"] for run in runs["baseline"]]
    rows, entries = [], []
    per_name = {**{name: [run["test_acc"] for run in runs[name]] for name in techniques}, **tta}
    for name, accuracies in per_name.items():
        deltas = [ours - theirs for ours, theirs in zip(accuracies, baseline)]
        times = [run["train_time"] for run in runs[name]] if name in runs else []
        entries.append({"name": name, "test_acc_mean": statistics.fmean(accuracies),
                        "baseline_acc_mean": statistics.fmean(baseline), "seeds": len(accuracies),
                        "delta_mean": statistics.fmean(deltas), "delta_min": min(deltas), "delta_max": max(deltas),
                        "fields": techniques.get(name, {"tta": RECIPE_TTA.get(name)}),
                        "per_seed": [{"seed": seed, "test_acc": accuracy, "baseline_acc": theirs,
                                      "train_time_s": times[index] if times else None}
                                     for index, (seed, accuracy, theirs) in enumerate(zip(seeds, accuracies, baseline))],
                        "train_time_s_mean": statistics.fmean(times) if times else None})
        rows.append(common.comparison_row(
            f"airbench94_muon technique alone, cpunet on Fashion-MNIST (CPU): {name}", entries[-1]["test_acc_mean"],
            entries[-1]["baseline_acc_mean"], "accuracy", "plain cpunet, same seeds",
            note=f"paired delta {entries[-1]['delta_mean']:+.4f} (min {min(deltas):+.4f}, max {max(deltas):+.4f}, "
                 f"n={len(deltas)})"))
    figures = {"techniques": entries,
               "baseline": {"test_acc": common.summary(baseline), "train_time_s": common.summary(
                   [run["train_time"] for run in runs["baseline"]]),
                   "per_seed": [{k: v for k, v in run.items() if k != "run_dir"} for run in runs["baseline"]]},
               "seconds": time.time() - started}
    settings = {"quick": args.quick, "baseline": {k: v for k, v in base.items() if v is not None},
                "baseline_defaults": "every other field at ClassifierConfig's default (SGD Nesterov, one-cycle lr 0.4 "
                                     "div 20 pct 20 momentum 0.95-0.85, weight decay 5e-4 exempting norms and biases, "
                                     "pad 2, random flips, whitening stem from 5,000 images, trained)",
                "seeds": seeds, "source": "KellerJordan/cifar10-airbench airbench94_muon.py (darkroom preset "
                                          "airbench94_muon)"}
    notes = ("Fixed step budget, no early stopping; every technique runs the baseline's seeds, so deltas are paired. "
             "TTA rows evaluate the baseline's final weights (TTA changes no training). Training time excludes data "
             "loading and evaluation. A technique's worth here is at CPU scale (cpunet, 2 epochs of 30,000 images, "
             "batch 256), not at airbench's (CIFAR-10, batch 2000, 8 epochs).")
    return common.write_result("classifier_cpu_airbench_recipe" + ("-quick" if args.quick else ""), settings, figures, rows=rows,
                               notes=notes, device="cpu")
