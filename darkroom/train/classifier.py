"""darkroom train classifier: one plain loop, top to bottom (nanoGPT / airbench style).

    darkroom train classifier --data fashion-mnist --preset fashion-mnist-cpu
    torchrun --nproc_per_node=8 -m darkroom train classifier --data cifar10 --preset wrn_22-dawnbench
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from darkroom import checkpoint, dist, launch, precision, runs
from darkroom.config import differences, from_dict, option, to_dict, validate
from darkroom.data.resident import Augment, resize_batch
from darkroom.errors import UserError
from darkroom.nets import CLASSIFIERS
from darkroom.nets.classifier import whiten_init_
from darkroom.optim import EMA, decoupled_decay_, param_groups, set_lr_momentum
from darkroom.schedule import (one_cycle_lr, one_cycle_momentum, parse_sizes, size_at, warmup_cosine,
                               warmup_linear_decay)
from darkroom.train import classifier_data
from darkroom.train.classifier_data import Images
from darkroom.train.classifier_eval import evaluate


@dataclass(frozen=True)
class ClassifierConfig:
    data: str = option("fashion-mnist", "data spec: fashion-mnist, mnist, cifar10, a class folder or a .csv list")
    data_root: str | None = option(None, "folder holding the data files (else $DARKROOM_DATA, the cache, the Debian path)")
    sample: float = option(1.0, "fraction of the training set to use, for quick experiments", above=0, high=1)
    test_sample: float = option(1.0, "fraction of the test set to evaluate on, for quick experiments", above=0, high=1)
    image_size: int | None = option(None, "resize folder/CSV images to this square size", low=8)
    stream: str = option("auto", "folders and .csv lists: stream them from disk through DataLoader workers (always), "
                         "decode them into memory (never), or auto: stream when the decoded set would take over a "
                         "quarter of the free memory (RAM, and GPU memory on CUDA)", choices=("auto", "always", "never"))
    workers: int = option(4, "DataLoader workers when streaming (0 = in the training process)", low=0)
    arch: str = option("cpunet", "net: " + ", ".join(CLASSIFIERS), choices=tuple(CLASSIFIERS))
    epochs: float = option(5.0, "epochs to train (fractions allowed: a fixed step budget)", above=0)
    batch_size: int = option(256, "global batch size (split over ranks)", low=1)
    optimizer: str = option("sgd", "sgd (momentum, optionally Nesterov) or adamw", choices=("sgd", "adamw"))
    lr: float = option(0.4, "peak learning rate", above=0)
    schedule: str = option("one-cycle", "one-cycle (fast.ai), linear (warm-up then linear decay) or cosine",
                           choices=("one-cycle", "linear", "cosine"))
    div: float = option(20.0, "one-cycle: start/end LR is lr/div", above=0)
    pct: float = option(20.0, "one-cycle: percent of steps in the final annealing phase", low=0, high=100)
    mom_max: float = option(0.95, "one-cycle: momentum at the start and end", low=0, high=1)
    mom_min: float = option(0.85, "one-cycle: momentum at the LR peak", low=0, high=1)
    momentum: float = option(0.9, "momentum for the linear and cosine schedules", low=0, high=1)
    warmup: float = option(0.2, "linear/cosine: warm-up fraction of steps", low=0, high=1)
    nesterov: bool = option(True, "Nesterov momentum (SGD)")
    weight_decay: float = option(5e-4, "weight decay", low=0)
    decoupled_wd: bool = option(False, "decoupled weight decay (AdamW style) instead of L2 added to the gradient")
    exempt_norm_bias: bool = option(True, "no weight decay on norm weights and biases")
    bias_lr_scale: float = option(1.0, "learning-rate multiplier for biases (airbench uses 64 for BN biases)", above=0)
    label_smoothing: float = option(0.0, "label smoothing (arXiv:1512.00567)", low=0, high=1)
    ema: float = option(0.0, "EMA decay of the weights used for evaluation (0 = off)", low=0, high=1)
    progressive: str = option("", "progressive resizing (fast.ai's DAWNBench): SIZE:EPOCHS[,SIZE:EPOCHS...] trains at "
                                  "SIZE px until epoch EPOCHS, then at full size; evaluation is always at full size")
    pad: int = option(2, "reflection padding before the random crop (0 = no crop)", low=0)
    flip: bool = option(True, "random horizontal flips (turn off where a flip changes the label)")
    alternating_flip: bool = option(False, "airbench's alternating flip: each image flipped every other epoch")
    tta: str = option("flip", "test-time augmentation: none, flip, or multi (flip and 1-pixel shifts)",
                      choices=("none", "flip", "multi"))
    whiten: bool = option(True, "initialise a 2x2 whitening stem from the data (nets that have one)")
    precision: str = option("auto", "auto (bf16 on GPU, fp32 on CPU), fp32, bf16 or fp16 (dynamic loss scaling)",
                            choices=precision.PRECISIONS)
    channels_last: bool = option(False, "channels_last memory format (faster on recent GPUs, and ~1.3x for the CPU "
                                     "presets' nets on AVX2 CPUs)")
    compile: bool = option(False, "torch.compile the net")
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps")
    processes: int = option(1, "CPU: train as N data-parallel processes on this machine (gloo), each with its share "
                               "of the cores (darknet-small: 1.2x faster on 2 cores); ignored on GPUs and under torchrun", low=1)
    seed: int = option(0, "random seed")
    deterministic: bool = option(False, "deterministic algorithms (exact resume checks)")
    checkpoint_every: int = option(0, "also checkpoint every N steps (0 = at each epoch end only)", low=0)
    on_nan: str = option("stop", "non-finite loss: stop (last good checkpoint kept) or skip the step and count",
                         choices=("stop", "skip"))
    out: str | None = option(None, "run folder (default runs/classifier-<time>)")
    resume: bool = option(False, "continue the run in --out from its last checkpoint")
    quiet: bool = option(False, "no progress bar")

    def __post_init__(self) -> None:
        validate(self)  # every field's type, choices and bounds (config.option)


CONFIG = ClassifierConfig
# fp16: the GradScaler halves its scale (2^16 at the start) at each overflowing step and doubles it after 2,000 good
# ones; 24 net halvings mean the loss is not recovering
MIN_LOSS_SCALE = 2.0 ** -8

PRESETS: dict[str, dict] = {
    # small whitened net, one-cycle, flip TTA, all at full size: 93.1% Fashion-MNIST in 4.6 min on 2 cores; the
    # built-in feature and judge network of the evaluation (darkroom/evaluate/features.py)
    "fashion-mnist-cpunet": dict(arch="cpunet", epochs=5.0, batch_size=256, lr=0.4, label_smoothing=0.1, tta="flip",
                                 channels_last=True),
    # darkroom's CPU speed preset: the same with the first 2 epochs at 20 px (half the cost), the fastest to 92% (one
    # process: as 2 local ranks it measured no faster end to end on 2 cores, 0.82x vs 0.81x the plain loop's time)
    "fashion-mnist-cpu": dict(arch="cpunet", epochs=5.0, batch_size=256, lr=0.4, label_smoothing=0.1, tta="flip",
                              channels_last=True, progressive="20:2"),
    # the lesson's darknet recipe: lr 1.3, wd 1e-4 coupled, 30 epochs, use_clr_beta (20, 20, 0.95, 0.85)
    "darknet-lesson": dict(arch="darknet", epochs=30.0, batch_size=256, lr=1.3, weight_decay=1e-4, div=20.0, pct=20.0,
                           mom_max=0.95, mom_min=0.85, nesterov=False, exempt_norm_bias=False, pad=4, tta="none"),
    # the benchmark net of REFERENCE.md section 5 (Darknet [1, 2, 2], nf 16); 2 local ranks: 1.33x vs 1.12x the plain
    # loop's images/s in one process (benchmarks/results/classifier_cpu_throughput.json)
    "darknet-small": dict(arch="darknet_small", epochs=2.0, batch_size=256, lr=0.4, pad=2, tta="none", channels_last=True,
                          processes=2),
    # DAWNBench 2018: wrn_22, 35 epochs, one-cycle
    "wrn_22-dawnbench": dict(arch="wrn_22", epochs=35.0, batch_size=512, lr=0.8, weight_decay=5e-4, pad=4, tta="flip",
                             channels_last=True),
    # GPU speed preset: airbench94's techniques (whitening, dirac init, BN-bias LR x64, label smoothing 0.2,
    # alternating flip, EMA, multi-view TTA, warm-up + linear decay, Nesterov SGD, batch 1024)
    "fastnet-gpu": dict(arch="fastnet", epochs=10.0, batch_size=1024, optimizer="sgd", lr=0.2, schedule="linear",
                        warmup=0.2, momentum=0.85, nesterov=True, weight_decay=5e-4, bias_lr_scale=64.0,
                        label_smoothing=0.2, alternating_flip=True, ema=0.0, tta="multi", pad=2, channels_last=True),
}


def lr_momentum_at(cfg: ClassifierConfig, step: int, total: int) -> tuple[float, float]:
    if cfg.schedule == "one-cycle":
        return (one_cycle_lr(step, total, cfg.lr, cfg.div, cfg.pct),
                one_cycle_momentum(step, total, cfg.mom_max, cfg.mom_min, cfg.pct))
    shape = warmup_linear_decay if cfg.schedule == "linear" else warmup_cosine
    return shape(step, total, cfg.lr, cfg.warmup), cfg.momentum


def build_optimizer(cfg: ClassifierConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay, cfg.exempt_norm_bias, cfg.bias_lr_scale)
    if cfg.optimizer == "adamw":  # AdamW's decay is decoupled already
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.mom_max, 0.99))
    if cfg.decoupled_wd:  # torch's SGD has no decoupled decay: the step applies it (optim.decoupled_decay_)
        for group in groups:
            group["decoupled_decay"], group["weight_decay"] = group["weight_decay"], 0.0
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.mom_max, nesterov=cfg.nesterov)


def data_settings(cfg: ClassifierConfig) -> classifier_data.DataSettings:
    return classifier_data.DataSettings(cfg.data, cfg.data_root, cfg.sample, cfg.test_sample, cfg.seed, cfg.image_size,
                                        cfg.stream, cfg.workers, cfg.batch_size, cfg.channels_last)


def load_data(cfg: ClassifierConfig) -> tuple:
    """(train, test) ImageArrays in memory (lr-find and the benchmarks; run() goes through classifier_data.load)."""
    return classifier_data.load_arrays(data_settings(cfg))


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: ClassifierConfig, info: dist.DistInfo,
               precision_name: str, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               buffers: tuple[torch.Tensor, ...] = ()) -> tuple[float, bool]:
    """One optimisation step; returns (loss, stepped). A non-finite loss is stopped on, or skipped and counted
    (fp16: the GradScaler skips it). `buffers` (BatchNorm statistics; empty where no step can be skipped) are
    put back after a non-finite forward, whose train-mode pass fed them non-finite activations.

    Under DDP the skip is decided on the averaged gradients, which every rank holds alike after the backward's
    all-reduce: one decision for all without a second exchange per step (a non-finite loss on any rank makes the
    average non-finite)."""
    kept = [buffer.clone() for buffer in buffers]  # a few KB: norm layers' running means, variances, counts
    with precision.autocast(info.device, precision_name):
        loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
    value = loss.item()
    if info.world_size == 1 and not math.isfinite(value) and precision_name != "fp16":
        return skipped(buffers, kept, optimizer)  # alone: no backward to spend
    scaler.scale(loss).backward()
    if info.world_size > 1 and precision_name != "fp16" and not finite_gradients(model):
        return skipped(buffers, kept, optimizer)
    if not math.isfinite(value):  # fp16 (the scaler skips the step) or a rank alone: non-finite activations fed them
        put_back(buffers, kept)
    decoupled_decay_(optimizer)
    scale_before = scaler.get_scale() if scaler.is_enabled() else 1.0
    scaler.step(optimizer)  # fp16: skipped inside when gradients overflowed (dynamic loss scaling)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    stepped = not scaler.is_enabled() or scaler.get_scale() >= scale_before
    return value, stepped


def finite_gradients(model: nn.Module) -> bool:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))


def skipped(buffers: tuple[torch.Tensor, ...], kept: list[torch.Tensor],
            optimizer: torch.optim.Optimizer) -> tuple[float, bool]:
    put_back(buffers, kept)
    optimizer.zero_grad(set_to_none=True)
    return float("nan"), False


def training_sizes(cfg: ClassifierConfig, model: nn.Module, channels: int, size: int) -> list[tuple[int, float]]:
    """--progressive's stages, checked against the data's size and the net (one forward at each size)."""
    try:
        stages = parse_sizes(cfg.progressive)
    except ValueError as error:
        raise UserError(f"--progressive {cfg.progressive!r}: {error}") from None
    if stages and stages[-1][1] >= cfg.epochs:
        raise UserError(f"--progressive {cfg.progressive!r} resizes until epoch {stages[-1][1]:g} of the {cfg.epochs:g} "
                        "epochs of --epochs: the last ones must train at full size (pass --progressive '' to turn "
                        "it off)")
    device = next(model.parameters()).device
    for stage_size, _ in stages:
        if stage_size >= size:
            raise UserError(f"--progressive size {stage_size} is not smaller than the {size} px training images")
        was_training = model.training
        try:
            with torch.no_grad():
                model.eval()(torch.zeros(2, channels, stage_size, stage_size, device=device))
        except RuntimeError:
            raise UserError(f"--progressive size {stage_size} is too small for --arch {cfg.arch}") from None
        finally:
            model.train(was_training)
    return stages


def put_back(buffers: tuple[torch.Tensor, ...], kept: list[torch.Tensor]) -> None:
    for buffer, value in zip(buffers, kept):
        buffer.copy_(value)


def run(cfg: ClassifierConfig, argv: list[str] | None = None) -> dict:
    """Train, evaluate each epoch, checkpoint, and return the final metrics."""
    if launch.wanted(cfg.processes, cfg.device):
        return launch.local_ranks(__name__, "classifier", cfg, argv)
    info = dist.setup(cfg.device)
    torch.manual_seed(cfg.seed)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif info.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    precision_name = precision.resolve(cfg.precision, info.device)
    if cfg.batch_size % info.world_size:
        raise UserError(f"--batch-size {cfg.batch_size} must be divisible by the {info.world_size} ranks")

    run_dir = dist.broadcast_object(str(cfg.out or runs.default_run_dir("classifier")))
    cfg = replace(cfg, out=run_dir)
    if info.is_main and runs.is_live(run_dir):  # before reading anything of it (RunFolder below takes the lock)
        raise UserError(f"run folder {run_dir} is in use by another darkroom process; pick another --out")
    saved = read_checkpoint(cfg, run_dir)
    if saved is not None and runs.read_status(run_dir).get("status") == "finished":
        return already_finished(info, run_dir, saved["state"]["step"])
    data = classifier_data.load(data_settings(cfg), info, saved["meta"] if saved else None)
    if len(data.classes) < 2:
        raise UserError(f"--data {cfg.data} has {len(data.classes)} class ({', '.join(data.classes)}): a classifier "
                        "needs at least two")
    train_set, test_set = data.train, data.test
    channels, size = data.shape[0], data.shape[1]
    augment = Augment(pad=cfg.pad, flip=cfg.flip, alternating_flip=cfg.alternating_flip)

    model = CLASSIFIERS[cfg.arch](channels, len(data.classes))
    stem = model[0] if isinstance(model[0], nn.Conv2d) and model[0].kernel_size == (2, 2) else None
    if stem is not None and cfg.whiten and saved is None:  # a resume loads the stem's weights
        whiten_init_(stem, train_set.normalise(data.whiten_images).float().contiguous().cpu())
    model = precision.to_memory_format(model.to(info.device), cfg.channels_last)
    stages = training_sizes(cfg, model, channels, size)
    optimizer = build_optimizer(cfg, model)
    scaler = precision.make_scaler(precision_name, info.device)
    ema = EMA(model, cfg.ema) if cfg.ema > 0 else None
    skips = cfg.on_nan == "skip" or precision_name == "fp16"
    buffers = tuple(model.buffers()) if skips else ()  # kept across a skipped step (train_step)

    steps_per_epoch = train_set.steps_per_epoch()
    if steps_per_epoch == 0:
        raise UserError(f"--batch-size {cfg.batch_size} is larger than the {len(train_set)} training images")
    total_steps = max(1, int(round(cfg.epochs * steps_per_epoch)))
    data_generator = torch.Generator(device=info.device).manual_seed(cfg.seed)

    folder = runs.RunFolder(run_dir, "classifier") if info.is_main else None
    state = {"step": 0, "epoch": 0, "order": None, "skipped": 0, "log_lines": 0, "best_acc": 0.0, "train_time": 0.0,
             "loss_sum": 0.0, "loss_count": 0}
    if saved is not None:
        state = restore(saved, model, optimizer, scaler, ema, data_generator)
        if folder:
            folder.truncate_log(state["log_lines"])
            folder.set_status("running", resumes=runs.read_status(run_dir).get("resumes", 0) + 1)
        print_main(info, f"resumed {run_dir} at epoch {state['step'] // steps_per_epoch + 1}, step {state['step']} "
                         f"of {total_steps}")
    elif folder:
        environment = {"device": str(info.device), "precision": precision_name,
                       "data": "streamed" if data.streamed else "resident"}
        folder.write_config(to_dict(cfg), argv, environment)
        folder.truncate_log(0)  # lines of an earlier life that died before its first checkpoint
        folder.set_status("running", resumes=0)
        if cfg.resume:  # a rerun job passes --resume every time; say which it did
            print_main(info, f"no checkpoint in {run_dir} yet: --resume starts a fresh run")
    meta = {"classes": data.classes, "mean": data.mean, "std": data.std, "channels": channels, "image_size": size}

    net = nn.parallel.DistributedDataParallel(model, broadcast_buffers=False) if info.distributed else model
    net = precision.maybe_compile(net, cfg.compile)
    workers = f"{cfg.workers} DataLoader worker{'s' if cfg.workers != 1 else ''}" if cfg.workers else "the training process"
    where = f"streamed by {workers}" if data.streamed else f"resident on {info.device.type}"
    print_main(info, f"training {cfg.arch} on {data.source} ({len(train_set)} images, {'x'.join(map(str, data.shape))}, "
               f"{where}) for {total_steps} steps, batch {cfg.batch_size} on {info.world_size} x {info.device.type}, "
               f"{precision_name}")
    started = time.time()
    result: dict = {}
    try:
        while state["step"] < total_steps:
            epoch = state["step"] // steps_per_epoch
            first = state["step"] - epoch * steps_per_epoch
            if first == 0 or state["order"] is None:
                state["order"] = train_set.epoch_order(data_generator)
            last = min(steps_per_epoch, total_steps - epoch * steps_per_epoch)
            bar = tqdm(range(first, last), desc=f"epoch {epoch + 1}", disable=cfg.quiet or not info.is_main, leave=False)
            epoch_start = time.time()
            net.train()
            for step_in_epoch in bar:
                lr, momentum = lr_momentum_at(cfg, state["step"], total_steps)
                set_lr_momentum(optimizer, lr, momentum)
                x, y = train_set.train_batch(state["order"], step_in_epoch, epoch, augment, data_generator)
                smaller = size_at(stages, state["step"], steps_per_epoch)
                if smaller is not None:
                    x = resize_batch(x, smaller)
                loss, stepped = train_step(net, x, y, cfg, info, precision_name, optimizer, scaler, buffers)
                if not stepped and cfg.on_nan == "stop":
                    stop_if_diverged(state["step"], precision_name, scaler, run_dir)
                state["skipped"] += not stepped
                if ema is not None:
                    ema.update(model)
                if math.isfinite(loss):  # the epoch's mean train loss; checkpointed, so a resume averages every step
                    state["loss_sum"] += loss
                    state["loss_count"] += 1
                state["step"] += 1
                done_here = step_in_epoch + 1 - first
                if not cfg.quiet and info.is_main and done_here % 5 == 0:
                    rate = done_here * cfg.batch_size / max(1e-9, time.time() - epoch_start)
                    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.3g}", img_s=f"{rate:.0f}")
                if cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0 and state["step"] % steps_per_epoch:
                    save(folder, cfg, model, optimizer, scaler, ema, data_generator, state, meta)
            bar.close()
            state["train_time"] += time.time() - epoch_start
            if state["step"] % steps_per_epoch == 0 or state["step"] == total_steps:
                trained_at = size_at(stages, state["step"] - 1, steps_per_epoch) or size  # the epoch's last step
                result = end_epoch(cfg, info, ema.model if ema else model, test_set, augment, state, epoch, started,
                                   folder, trained_at)
                state.update(order=None, loss_sum=0.0, loss_count=0)
                save(folder, cfg, model, optimizer, scaler, ema, data_generator, state, meta)
    except UserError as error:  # a NaN stop or a bad streamed image: say so in status.json, keep the checkpoint
        if folder:
            folder.set_status("failed", error=str(error), step=state["step"])
        raise
    if folder:
        folder.set_status("finished", **{k: v for k, v in result.items() if isinstance(v, float)})
        print_main(info, f"report: {folder.close()}")
    print_main(info, f"done: test accuracy {result.get('test_acc', float('nan')):.4f} after {state['step']} steps, "
               f"{state['train_time']:.1f} s training; run folder {run_dir}")
    del net  # the DDP wrapper, before dist.cleanup
    dist.cleanup()
    return {**result, "run_dir": run_dir}


def stop_if_diverged(step: int, precision_name: str, scaler: torch.amp.GradScaler, run_dir: str) -> None:
    """--on-nan stop: a non-finite loss stops at once, except in fp16, where skipping overflowing steps is the
    GradScaler's job; there only a scale driven below MIN_LOSS_SCALE (every step failing) stops the run."""
    if precision_name != "fp16":
        raise UserError(f"the training loss became non-finite at step {step}; the last good checkpoint "
                        f"in {run_dir}/checkpoints is intact (lower --lr, or pass --on-nan skip)")
    if scaler.get_scale() < MIN_LOSS_SCALE:
        raise UserError(f"the training loss stayed non-finite in fp16 until step {step} (the GradScaler's scale fell "
                        f"to {scaler.get_scale():.3g}); the last good checkpoint in {run_dir}/checkpoints is intact "
                        "(lower --lr, or use --precision bf16)")


def end_epoch(cfg: ClassifierConfig, info: dist.DistInfo, eval_model: nn.Module, test_set: Images,
              augment: Augment, state: dict, epoch: int, started: float, folder: runs.RunFolder | None,
              train_size: int) -> dict:
    precision_name = precision.resolve(cfg.precision, info.device)
    tta = cfg.tta if augment.flip or cfg.tta == "none" else "none"
    dist.broadcast_buffers(eval_model)  # rank 0's running statistics on every rank (DDP here does not send them)
    test_loss, test_acc = evaluate(eval_model, test_set, info.device, precision_name, tta)
    record = {"epoch": epoch + 1, "step": state["step"], "train_loss": state["loss_sum"] / max(1, state["loss_count"]),
              "test_loss": test_loss, "test_acc": test_acc, "train_time": state["train_time"],
              "elapsed": time.time() - started, "skipped_steps": state["skipped"],
              "images_per_s": state["step"] * cfg.batch_size / max(1e-9, state["train_time"]), "train_size": train_size}
    print_main(info, f"epoch {epoch + 1:3d}  train loss {record['train_loss']:.4f}  test loss {test_loss:.4f}  "
               f"acc {test_acc:.4f}  {record['train_time']:.1f}s")
    if folder:
        folder.log(record)
        state["log_lines"] = folder.log_length()
    return record


def save(folder: runs.RunFolder | None, cfg: ClassifierConfig, model: nn.Module, optimizer, scaler, ema, data_generator,
         state: dict, meta: dict) -> None:
    if folder is None:
        return
    checkpoint.save({
        "task": "classifier", "config": to_dict(cfg), "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
        "ema": ema.model.state_dict() if ema else None, "data_generator": data_generator.get_state(),
        "rng": checkpoint.rng_state(), "state": {k: v for k, v in state.items() if k != "order"},
        "order": state["order"], "meta": meta,
    }, folder.checkpoint_path)


def read_checkpoint(cfg: ClassifierConfig, run_dir: str) -> dict | None:
    """The checkpoint --resume continues (None: a fresh start), its settings checked against `cfg`. --stream and
    --workers may change: both data paths make the same batches, and the checkpoint's mean and std are kept;
    --processes too: the global batches are the same (only the norm layers' per-rank statistics differ)."""
    path = Path(run_dir) / "checkpoints" / "last.pt"
    if not path.exists():
        return None
    if not cfg.resume:
        raise UserError(f"run folder {run_dir} already holds a run; pass --resume to continue it or pick another --out")
    saved = checkpoint.load(path)
    if saved.get("task") != "classifier":
        raise UserError(f"{run_dir} holds a {saved.get('task', 'non-darkroom')} run, not a classifier run; pick another --out")
    changed = differences(from_dict(ClassifierConfig, saved["config"]), cfg,
                          ignore=("resume", "out", "quiet", "device", "stream", "workers", "processes"))
    if changed:
        raise UserError(f"--{changed[0].replace('_', '-')} differs from the run being resumed in {run_dir}; "
                        "resume with the same settings")
    return saved


def already_finished(info: dist.DistInfo, run_dir: str, steps: int) -> dict:
    """--resume of a finished run (a rerun job, torchrun --max-restarts): nothing to do and no file touched."""
    lines = runs.read_metrics(Path(run_dir))
    last = lines[-1] if lines else {}
    accuracy = f", test accuracy {last['test_acc']:.4f}" if "test_acc" in last else ""
    print_main(info, f"run {run_dir} already finished ({steps} steps{accuracy}); nothing to resume")
    dist.cleanup()
    return {**last, "run_dir": run_dir}


def restore(saved: dict, model, optimizer, scaler, ema, data_generator) -> dict:
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scaler.load_state_dict(saved["scaler"])
    if ema is not None and saved["ema"] is not None:
        ema.model.load_state_dict(saved["ema"])
    data_generator.set_state(saved["data_generator"])
    checkpoint.set_rng_state(saved["rng"])
    state = {"loss_sum": 0.0, "loss_count": 0, **saved["state"]}  # checkpoints from before the sums were kept
    state["order"] = saved["order"].to(model_device(model)) if saved["order"] is not None else None
    return state


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def print_main(info: dist.DistInfo, message: str) -> None:
    if info.is_main:
        tqdm.write(message)
