"""Classifier on CPU, Fashion-MNIST: darkroom vs a plain PyTorch loop (and fastai's fit_one_cycle where it installs),
and airbench94_muon's techniques each switched on alone over a plain cpunet.

    python -m benchmarks.classifier_cpu                 # full protocol (about 47 minutes on 2 quiet cores)
    python -m benchmarks.classifier_cpu --quick         # tiny settings: checks the code paths, numbers mean nothing
    python -m benchmarks.classifier_cpu --only throughput --rounds 3
    python -m benchmarks.classifier_cpu --only airbench-recipe   # about 12 minutes on 2 quiet cores
    .fastai-env/bin/python -m benchmarks.classifier_cpu --only pareto   # the time-accuracy front (about 75 minutes)
Writes classifier_cpu_throughput.json, classifier_cpu_time_to_92.json, classifier_cpu_fastai.json,
classifier_cpu_airbench_recipe.json and classifier_cpu_pareto.json + .png (with a -quick suffix under --quick) to $OUT or benchmarks/results/.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from benchmarks import common
from benchmarks.classifier_cpu_pareto import pareto
from benchmarks.classifier_cpu_recipe import airbench_recipe
from darkroom import dist, precision
from darkroom.config import build, from_dict, to_dict
from darkroom.data.resident import Augment, ResidentImages, channel_stats
from darkroom.nets import CLASSIFIERS
from darkroom.nets.classifier import whiten_init_
from darkroom.schedule import parse_sizes
from darkroom import classifier

TARGET_ACCURACY = 0.92
PARTS = ("throughput", "accuracy", "fastai", "airbench-recipe", "pareto")
FASTAI_PARTS = ("fastai", "pareto")  # the parts with a fastai side: make bench runs them in .fastai-env
FASTAI_COMMANDS = [  # fastai needs torchvision: a second environment, .fastai-env/ (git-ignored)
    "make fastai-env",
    ".fastai-env/bin/python -m benchmarks.classifier_cpu --only fastai",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny settings for development and tests")
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the darkroom preset (time to 92%%)")
    parser.add_argument("--baseline-seeds", type=int, default=2, help="seeds of the plain loop (CPU budget)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds per side (throughput)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round (throughput)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per side before timing (throughput)")
    parser.add_argument("--fastai-lr", type=float, default=1e-2, help="fastai fit_one_cycle lr_max (Adam, its default)")
    parser.add_argument("--fastai-seeds", type=int, default=2, help="seeds per side of the fastai comparison")
    parser.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST .gz files")
    parser.add_argument("--recipe-seeds", type=int, default=3, help="seeds per technique (airbench-recipe)")
    parser.add_argument("--pareto-budgets", default="1,2,3,5,10", help="darkroom's epoch budgets (pareto)")
    parser.add_argument("--pareto-baseline-budgets", default="1,2,5", help="the plain loop's and fastai's (pareto)")
    parser.add_argument("--pareto-seeds", type=int, default=3, help="seeds per side and budget (pareto)")
    parser.add_argument("--record-seeds", type=int, default=5, help="seeds of the 300-second record preset (pareto)")
    parser.add_argument("--only", choices=PARTS, action="append", help="run only these parts (repeatable)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.baseline_seeds, args.fastai_seeds, args.recipe_seeds = min(args.seeds, 2), 1, 1, 1
        args.rounds, args.steps, args.warmup = 2, 2, 1
    return args


def base_values(args: argparse.Namespace, preset: str) -> dict:
    values = {**classifier.PRESETS[preset], "device": "cpu", "quiet": True, "data_root": args.data_root}
    if args.quick:  # 300 training images, 500 test images, one epoch: the code paths, not the numbers
        stages = parse_sizes(values.get("progressive", ""))  # the preset's stages, shrunk with its epochs
        values.update(sample=0.005, test_sample=0.05, epochs=1.0, batch_size=50,
                      progressive=",".join(f"{size}:{until / classifier.PRESETS[preset]['epochs']:g}"
                                           for size, until in stages))
    return values


# ---------------------------------------------------------------------------------------------- the plain loop
def normalised(images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> TensorDataset:
    """uint8 (N, C, H, W) -> a TensorDataset of normalised float images and labels."""
    return TensorDataset((images.float() / 255 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1), labels)


def plain_loader(images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                 batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    """The usual way: normalised float tensors in a TensorDataset, a DataLoader with shuffle, no augmentation."""
    return DataLoader(normalised(images, labels, mean, std), batch_size=batch_size, shuffle=shuffle,
                      drop_last=shuffle, generator=torch.Generator().manual_seed(seed))


def plain_model_and_optimizer(arch: str, channels: int, lr: float, weight_decay: float, total_steps: int, seed: int):
    """The net with PyTorch's default init, SGD momentum 0.9 with L2, torch's OneCycleLR (its defaults)."""
    torch.manual_seed(seed)
    model = CLASSIFIERS[arch](channels, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps)
    return model, optimizer, scheduler


def plain_step(model: nn.Module, optimizer, scheduler, x: torch.Tensor, y: torch.Tensor) -> float:
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss.item()


@torch.no_grad()
def plain_accuracy(model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct = total = 0
    for x, y in loader:
        correct += int((model(x).argmax(1) == y).sum())
        total += y.numel()
    model.train()
    return correct / total


def plain_train(arch: str, train, test, epochs: int, batch_size: int, lr: float, weight_decay: float,
                seed: int) -> list[dict]:
    """Train the plain loop; per epoch: cumulative training seconds (evaluation excluded) and test accuracy."""
    mean, std = channel_stats(train.images)
    train_loader = plain_loader(train.images, train.labels, mean, std, batch_size, True, seed)
    test_loader = plain_loader(test.images, test.labels, mean, std, 1000, False, seed)
    model, optimizer, scheduler = plain_model_and_optimizer(arch, train.images.shape[1], lr, weight_decay,
                                                            epochs * len(train_loader), seed)
    curve, train_time = [], 0.0
    for epoch in range(epochs):
        started = time.perf_counter()
        for x, y in train_loader:
            plain_step(model, optimizer, scheduler, x, y)
        train_time += time.perf_counter() - started
        curve.append({"epoch": epoch + 1, "train_time": train_time, "test_acc": plain_accuracy(model, test_loader)})
        print(f"  plain loop seed {seed} epoch {epoch + 1}: acc {curve[-1]['test_acc']:.4f}, {train_time:.1f} s", flush=True)
    return curve


# ---------------------------------------------------------------------------------------------- (1) throughput
class DarkroomSteps:
    """darkroom's training step exactly as run() takes it: resident data, batch augmentation, one-cycle, train_step;
    under `info` with several ranks, this rank's share of each global batch through DDP."""

    def __init__(self, cfg, train, total_steps: int, info: dist.DistInfo | None = None) -> None:
        device = torch.device("cpu")
        self.cfg, self.total, self.step_index = cfg, total_steps, 0
        self.info = info or dist.DistInfo(0, 1, 0, device)
        mean, std = channel_stats(train.images)
        self.data = ResidentImages(train, device, mean, std, cfg.batch_size, self.info.rank, self.info.world_size,
                                   channels_last=cfg.channels_last)
        self.augment = Augment(pad=cfg.pad, flip=cfg.flip, alternating_flip=cfg.alternating_flip)
        torch.manual_seed(cfg.seed)
        model = classifier.build_model(cfg, train.images.shape[1], len(train.classes))
        if isinstance(model[0], nn.Conv2d) and model[0].kernel_size == (2, 2) and cfg.whiten:
            whiten_init_(model[0], self.data.normalise(self.data.images[:5000]).float().contiguous())
        self.model = precision.to_memory_format(model, cfg.channels_last)
        self.precision = precision.resolve(cfg.precision, device)
        self.optimizer = classifier.build_optimizer(cfg, self.model)
        self.scaler = precision.make_scaler(self.precision, device)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.order = self.data.epoch_order(self.generator)
        net = nn.parallel.DistributedDataParallel(self.model) if self.info.distributed else self.model
        self.net = precision.maybe_compile(net, cfg.compile)  # as run() does; the warm-up steps take the compile

    def __call__(self) -> float:
        per_epoch = self.data.steps_per_epoch()
        epoch, in_epoch = divmod(self.step_index, per_epoch)
        if in_epoch == 0 and self.step_index:
            self.order = self.data.epoch_order(self.generator)
        classifier.set_schedule(self.cfg, self.optimizer, self.step_index % self.total, self.total, 0)
        x, y = self.data.train_batch(self.order, in_epoch, epoch, self.augment, self.generator)
        loss, _ = classifier.train_step(self.net, x, y, self.cfg, self.info, self.precision, self.optimizer, self.scaler)
        self.step_index += 1
        return loss

    def seconds(self, steps: int) -> float:
        return common.time_steps(self, steps, "cpu")


def ranked_darkroom_steps(values: dict, total_steps: int) -> DarkroomSteps:
    """One rank's DarkroomSteps (run inside common.SpawnedRanks, the process group already up)."""
    cfg = from_dict(classifier.CONFIG, values)
    train, _ = classifier.load_data(cfg)
    return DarkroomSteps(cfg, train, total_steps, dist.setup("cpu"))


class PlainSteps:
    """The plain loop's step: next DataLoader batch, forward, backward, SGD step, OneCycleLR step."""

    def __init__(self, cfg, train, total_steps: int) -> None:
        mean, std = channel_stats(train.images)
        self.loader = plain_loader(train.images, train.labels, mean, std, cfg.batch_size, True, cfg.seed)
        self.model, self.optimizer, self.scheduler = plain_model_and_optimizer(
            cfg.arch, train.images.shape[1], cfg.lr, cfg.weight_decay, total_steps, cfg.seed)
        self.iterator = iter(self.loader)

    def seconds(self, steps: int) -> float:
        return common.time_steps(self, steps, "cpu")

    def __call__(self) -> float:
        try:
            x, y = next(self.iterator)
        except StopIteration:
            self.iterator = iter(self.loader)
            x, y = next(self.iterator)
        return plain_step(self.model, self.optimizer, self.scheduler, x, y)


def throughput(args: argparse.Namespace) -> Path:
    """Images/s of darkroom's darknet-small step vs the plain loop's, same net/batch, alternating timed rounds."""
    cfg = build(classifier.CONFIG, {**base_values(args, "darknet-small"), "seed": 0})
    train, _ = classifier.load_data(cfg)
    total = args.warmup + args.rounds * args.steps + 1  # OneCycleLR refuses to step past its total
    ranked = cfg.processes > 1
    threads = max(1, common.usable_cores() // cfg.processes)
    ours = (common.SpawnedRanks(ranked_darkroom_steps, (to_dict(cfg), total), cfg.processes, threads) if ranked
            else DarkroomSteps(cfg, train, total))
    sides = {"darkroom": ours, "plain": PlainSteps(cfg, train, total)}
    for name, side in sides.items():
        warm = side.seconds(args.warmup)
        print(f"  {name}: {args.warmup} warm-up steps in {warm:.1f} s", flush=True)

    def measure(name: str):
        def images_per_second() -> float:
            seconds = sides[name].seconds(args.steps)
            print(f"  {name}: {args.steps * cfg.batch_size / seconds:.0f} images/s", flush=True)
            return args.steps * cfg.batch_size / seconds
        return images_per_second

    try:
        rates = common.alternate({name: measure(name) for name in sides}, args.rounds)
    finally:
        if ranked:
            ours.close()
    figures = {name: common.summary(values) for name, values in rates.items()}
    row = common.comparison_row(f"classifier training throughput, {cfg.arch} batch {cfg.batch_size} (CPU)",
                                figures["darkroom"]["mean"], figures["plain"]["mean"], "images/s",
                                "plain PyTorch loop (DataLoader, fp32, OneCycleLR)", target=1.3)
    settings = {"quick": args.quick, "preset": "darknet-small", "arch": cfg.arch, "batch_size": cfg.batch_size,
                "images": len(train), "warmup_steps": args.warmup, "timed_steps_per_round": args.steps,
                "rounds_per_side": args.rounds, "order": "alternating (A B, B A, ...) in one run",
                "darkroom": {"data": "uint8 resident tensors, batch reflection-pad crop + flip", "precision": cfg.precision,
                             "processes": cfg.processes,
                             "threads_per_process": ours.threads if ranked else torch.get_num_threads(),
                             "channels_last": cfg.channels_last, "schedule": "fast.ai one-cycle", "lr": cfg.lr},
                "plain": {"data": "DataLoader(TensorDataset(normalised float tensors), shuffle=True), no augmentation",
                          "precision": "fp32", "memory_format": "default", "optimizer": "SGD momentum 0.9",
                          "schedule": "torch OneCycleLR", "max_lr": cfg.lr, "weight_decay": cfg.weight_decay}}
    notes = ("The plain loop does no augmentation, so the darkroom side does more data work per step. "
             + (f"darkroom runs as the preset does, {cfg.processes} local ranks (--processes, gloo DDP) with "
                f"{ours.threads} thread(s) each, spawned by this run and idle while the plain loop (this process, "
                f"{torch.get_num_threads()} threads) is timed; a darkroom round is timed between two barriers and "
                "counts the slowest rank." if ranked else "Both sides share the process and its torch threads."))
    return common.write_result(result_name("classifier_cpu_throughput", args), settings,
                               {**figures, "ratio": row["ratio"]}, rows=[row], notes=notes, device="cpu")


# ---------------------------------------------------------------------------------------------- (2) time to 92%
def darkroom_curve(run_dir: str) -> list[dict]:
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return [{"epoch": r["epoch"], "train_time": r["train_time"], "test_acc": r["test_acc"]} for r in records if "epoch" in r]


def first_reaching(curves: list[list[dict]], target: float) -> dict:
    """The first epoch whose test accuracy, averaged over seeds, reaches `target`; mean training time to its end."""
    epochs = min(len(curve) for curve in curves)
    for index in range(epochs):
        accuracy = sum(curve[index]["test_acc"] for curve in curves) / len(curves)
        if accuracy >= target:
            seconds = sum(curve[index]["train_time"] for curve in curves) / len(curves)
            return {"reached": True, "epoch": index + 1, "mean_acc": accuracy, "seconds": seconds}
    last = epochs - 1
    return {"reached": False, "epoch": None, "mean_acc": sum(c[last]["test_acc"] for c in curves) / len(curves),
            "seconds": sum(c[last]["train_time"] for c in curves) / len(curves)}


def time_row(ours: dict, theirs: dict, epochs: int, baseline_name: str, target: float) -> dict:
    """A time-to-92% row. A side that never reached 92% shows its whole budget's time and the note says so; the ratio
    is exact when both reached, an upper bound when only the baseline failed, and absent when darkroom failed."""
    notes = [f"{name} did not reach 92% in {epochs} epochs (mean {side['mean_acc']:.4f}); its figure is its whole budget"
             for name, side in (("darkroom", ours), ("baseline", theirs)) if not side["reached"]]
    bound = "<=" if ours["reached"] and not theirs["reached"] else ""
    row = common.comparison_row("time to 92% Fashion-MNIST (CPU)", ours["seconds"], theirs["seconds"], "s", baseline_name,
                                target=target, higher_is_better=False, ratio_bound=bound, note="; ".join(notes))
    if not ours["reached"]:
        row["ratio"], row["met"] = None, False
    return row


def time_to_accuracy(args: argparse.Namespace) -> Path:
    values = base_values(args, "fashion-mnist-cpu")
    curves, finals, plain_curves = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-classifier-") as folder:
        cfg = build(classifier.CONFIG, {**values, "out": f"{folder}/unused"})
        train, test = classifier.load_data(cfg)
        epochs = math.ceil(cfg.epochs)

        def darkroom_seed(seed: int) -> None:
            curve, result = darkroom_seed_run(values, seed, folder)
            curves.append(curve)
            finals.append({"seed": seed, "test_acc": result["test_acc"], "train_time": result["train_time"]})

        def plain_seed(seed: int) -> None:
            plain_curves.append(plain_train(cfg.arch, train, test, epochs, cfg.batch_size, cfg.lr, cfg.weight_decay, seed))

        for seed in range(max(args.seeds, args.baseline_seeds)):  # alternating: D0 P0, P1 D1, D2 ...
            runs = [(darkroom_seed, seed < args.seeds), (plain_seed, seed < args.baseline_seeds)]
            for run, wanted in (runs if seed % 2 == 0 else runs[::-1]):
                if wanted:
                    run(seed)
    ours, theirs = first_reaching(curves, TARGET_ACCURACY), first_reaching(plain_curves, TARGET_ACCURACY)
    accuracy = common.summary([f["test_acc"] for f in finals])
    seconds = common.summary([f["train_time"] for f in finals])
    plain_final = common.summary([c[-1]["test_acc"] for c in plain_curves])
    row = time_row(ours, theirs, epochs, "plain PyTorch loop, same net and epochs", 0.7)
    preset_row = common.comparison_row(
        "fashion-mnist-cpu preset: mean test accuracy (training time <= 300 s)", accuracy["mean"], None, "accuracy",
        "-", note=f"mean training {seconds['mean']:.0f} s; min acc {accuracy['min']:.4f}; target >= 0.92 within 300 s")
    preset_row["met"] = bool(accuracy["mean"] >= TARGET_ACCURACY and seconds["mean"] <= 300)
    preset_row["target"] = ">= 0.92 in <= 300 s"
    figures = {"darkroom": {"test_acc": accuracy, "train_time_s": seconds, "runs": finals, "curves": curves,
                            "time_to_92": ours},
               "plain": {"final_test_acc": plain_final, "curves": plain_curves, "time_to_92": theirs},
               "ratio": row["ratio"]}
    settings = {"quick": args.quick, "preset": "fashion-mnist-cpu", "config": {k: v for k, v in values.items() if v is not None},
                "seeds": args.seeds, "baseline_seeds": args.baseline_seeds, "target_accuracy": TARGET_ACCURACY,
                "plain": {"arch": cfg.arch, "epochs": epochs, "batch_size": cfg.batch_size, "max_lr": cfg.lr,
                          "optimizer": "SGD momentum 0.9", "weight_decay": cfg.weight_decay,
                          "schedule": "torch OneCycleLR", "augmentation": "none", "tta": "none", "init": "PyTorch default"}}
    notes = ("Fixed step budget, no early stopping. Seeds alternate between the sides (darkroom 0, plain 0, plain 1, "
             "darkroom 1, darkroom 2, ...). darkroom runs as its preset does, as --processes "
             f"{values.get('processes', 1)} local ranks; the plain loop in this process with {torch.get_num_threads()} "
             "threads. Time to 92% = mean training time to the end of the first epoch whose "
             "test accuracy, averaged over seeds, is >= 92%. Training time excludes data loading, evaluation and "
             f"checkpointing on both sides. The plain loop ran {args.baseline_seeds} seed(s) to fit the CPU budget. "
             f"darkroom's preset trains with --progressive {values.get('progressive') or 'off'} (smaller images "
             "first, evaluation at full size); the plain loop at full size throughout.")
    return common.write_result(result_name("classifier_cpu_time_to_92", args), settings, figures,
                               rows=[row, preset_row], notes=notes, device="cpu")


# ---------------------------------------------------------------------------------------------- (3) fastai
def fastai_curve(cfg, train, test, lr: float, seed: int) -> list[dict]:
    """fastai's fit_one_cycle (its defaults: Adam, flat-cos momentum, its DataLoader) on the net and data the plain loop
    gets; per epoch: cumulative seconds of the training phase (a callback's clock, validation excluded) and accuracy."""
    from fastai.callback.core import Callback
    from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (patches Learner.fit_one_cycle)
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.metrics import accuracy

    class TrainingClock(Callback):
        def before_fit(self) -> None:
            self.seconds, self.per_epoch = 0.0, []

        def before_train(self) -> None:
            self.started = time.perf_counter()

        def after_train(self) -> None:
            self.seconds += time.perf_counter() - self.started
            self.per_epoch.append(self.seconds)

    mean, std = channel_stats(train.images)
    datasets = [normalised(split.images, split.labels, mean, std) for split in (train, test)]
    torch.manual_seed(seed)
    dls = DataLoaders.from_dsets(*datasets, bs=cfg.batch_size, device=torch.device("cpu"))
    clock = TrainingClock()
    learn = Learner(dls, CLASSIFIERS[cfg.arch](train.images.shape[1], len(train.classes)),
                    loss_func=nn.CrossEntropyLoss(), metrics=accuracy, cbs=[clock])
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(math.ceil(cfg.epochs), lr)
    curve = [{"epoch": index + 1, "train_time": seconds, "test_acc": float(values[-1])}
             for index, (seconds, values) in enumerate(zip(clock.per_epoch, learn.recorder.values))]
    print(f"  fastai seed {seed}: acc {curve[-1]['test_acc']:.4f}, {curve[-1]['train_time']:.1f} s", flush=True)
    return curve


def fastai_comparison(args: argparse.Namespace) -> Path:
    """darkroom's preset and fastai's fit_one_cycle on the same net, data and epochs, seeds alternating in this process."""
    values = base_values(args, "fashion-mnist-cpu")
    cfg = build(classifier.CONFIG, {**values, "seed": 0})
    epochs = math.ceil(cfg.epochs)
    settings = {"quick": args.quick, "preset": "fashion-mnist-cpu", "arch": cfg.arch, "epochs": epochs,
                "batch_size": cfg.batch_size, "seeds_per_side": args.fastai_seeds, "target_accuracy": TARGET_ACCURACY,
                "fastai": {"lr_max": args.fastai_lr, "optimizer": "fastai Adam (its defaults)",
                           "data": "DataLoaders.from_dsets over the plain loop's normalised tensors, no augmentation",
                           "init": "PyTorch default", "tta": "none"},
                "how_to_run": FASTAI_COMMANDS}
    try:
        import fastai
    except ImportError as error:
        reason = (f"fastai is not importable here ({error}); it needs torchvision, which has no build for torch "
                  f"{torch.__version__}. Run it in a separate environment: " + " && ".join(FASTAI_COMMANDS))
        print("  fastai: not run -", reason, flush=True)
        row = common.comparison_row("time to 92% vs fastai fit_one_cycle (CPU)", None, None, "s", "fastai fit_one_cycle",
                                    target=1.0, higher_is_better=False, note="not run: fastai not installable here")
        return common.write_result(result_name("classifier_cpu_fastai", args), settings,
                                   {"status": "not run", "reason": reason}, rows=[row], notes=reason, device="cpu")
    settings["fastai"]["version"] = fastai.__version__
    curves, fastai_curves = [], []
    with tempfile.TemporaryDirectory(prefix="bench-fastai-") as folder:
        train, test = classifier.load_data(build(classifier.CONFIG, {**values, "out": f"{folder}/unused"}))
        for seed in range(args.fastai_seeds):  # alternating: D0 F0, F1 D1, D2 F2, ...
            sides = [lambda: curves.append(darkroom_seed_run(values, seed, folder)[0]),
                     lambda: fastai_curves.append(fastai_curve(cfg, train, test, args.fastai_lr, seed))]
            for side in (sides if seed % 2 == 0 else sides[::-1]):
                side()
    ours, theirs = first_reaching(curves, TARGET_ACCURACY), first_reaching(fastai_curves, TARGET_ACCURACY)
    row = time_row(ours, theirs, epochs, "fastai fit_one_cycle, same net and epochs", 1.0)
    row["comparison"] = "time to 92% vs fastai fit_one_cycle (CPU)"
    figures = {"status": "run",
               "darkroom": {"curves": curves, "time_to_92": ours,
                            "final_test_acc": common.summary([c[-1]["test_acc"] for c in curves])},
               "fastai": {"curves": fastai_curves, "time_to_92": theirs,
                          "final_test_acc": common.summary([c[-1]["test_acc"] for c in fastai_curves])},
               "ratio": row["ratio"]}
    notes = ("Both sides in this process, seeds alternating (darkroom 0, fastai 0, fastai 1, darkroom 1, ...), fixed "
             "epoch budget. Time to 92% = mean training time to the end of the first epoch whose seed-averaged test "
             "accuracy is >= 92%; training time excludes evaluation on both sides (fastai's: a callback's clock around "
             "each training phase). fastai runs with its own defaults (Adam, fit_one_cycle's schedule, its "
             "DataLoader); darkroom as its preset does (augmentation, progressive resizing, label smoothing).")
    return common.write_result(result_name("classifier_cpu_fastai", args), settings, figures, rows=[row], notes=notes,
                               device="cpu")


def darkroom_seed_run(values: dict, seed: int, folder: str) -> tuple[list[dict], dict]:
    """One darkroom preset run in `folder`: its per-epoch curve and run()'s result."""
    result = classifier.run(build(classifier.CONFIG, {**values, "seed": seed, "out": f"{folder}/darkroom-{seed}"}))
    print(f"  darkroom seed {seed}: acc {result['test_acc']:.4f}, {result['train_time']:.1f} s", flush=True)
    return darkroom_curve(result["run_dir"]), result


def result_name(name: str, args: argparse.Namespace) -> str:
    return name + ("-quick" if args.quick else "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts = args.only or list(PARTS)
    failures = 0
    for part, function in (("throughput", throughput), ("accuracy", time_to_accuracy), ("fastai", fastai_comparison),
                           ("airbench-recipe", airbench_recipe), ("pareto", pareto)):
        if part not in parts:
            continue
        print(f"classifier_cpu: {part}", flush=True)
        started = time.time()
        try:
            path = function(args)
            print(f"classifier_cpu: {part} done in {time.time() - started:.0f} s -> {path}", flush=True)
        except Exception as error:  # one part failing must not lose the others' results
            failures += 1
            print(f"classifier_cpu: {part} FAILED: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
