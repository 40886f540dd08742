"""darkroom train classifier: one plain loop, top to bottom (nanoGPT / airbench style).

    darkroom train classifier --data fashion-mnist --preset fashion-mnist-cpu
    torchrun --nproc_per_node=8 -m darkroom train classifier --data cifar10 --preset wrn_22-dawnbench-8gpu
The run's life (folder, resume, checkpoint, report) is darkroom.lifecycle's; this file holds what is the classifier's.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from darkroom import dist, launch, lifecycle, precision
from darkroom.classifier import data as classifier_data
from darkroom.classifier import recipe
from darkroom.classifier.config import RESUME_MAY_CHANGE, ClassifierConfig
from darkroom.classifier.data import Images
from darkroom.classifier.predict import evaluate
from darkroom.classifier.presets import PRESETS  # noqa: F401 (the trainer module carries its table, as CONFIG)
from darkroom.data.resident import Augment, resize_batch
from darkroom.errors import NonFiniteLoss, UserError
from darkroom.nets.classifier import whiten_init_
from darkroom.optim import EMA, decoupled_decay_
from darkroom.schedule import (one_cycle_lr, one_cycle_momentum, parse_sizes, size_at, warmup_cosine,
                               warmup_linear_decay)

CONFIG = ClassifierConfig
# fp16: the GradScaler halves its scale (2^16 at the start) at each overflowing step and doubles it after 2,000 good
# ones; 24 net halvings mean the loss is not recovering
MIN_LOSS_SCALE = 2.0 ** -8
# steps between host reads of the loss (progress bar, non-finite check), besides checkpoints and epoch ends: a read
# waits for the device, so the steps between make no host sync (--on-nan skip and fp16 decide each step on the host)
HOST_READ_EVERY = 50


def lr_momentum_at(cfg: ClassifierConfig, step: int, total: int) -> tuple[float, float]:
    if cfg.schedule == "one-cycle":
        return (one_cycle_lr(step, total, cfg.lr, cfg.div, cfg.pct),
                one_cycle_momentum(step, total, cfg.mom_max, cfg.mom_min, cfg.pct))
    if cfg.schedule == "linear" and cfg.warmup == 0:  # airbench94_muon's lr (1 - step / total) from the first step
        return cfg.lr * (1 - step / total), cfg.momentum  # (warmup_linear_decay would spend a step warming up)
    shape = warmup_linear_decay if cfg.schedule == "linear" else warmup_cosine
    return shape(step, total, cfg.lr, cfg.warmup), cfg.momentum


def build_optimizer(cfg: ClassifierConfig, model: nn.Module) -> torch.optim.Optimizer | recipe.MuonWithSGD:
    """SGD, AdamW or Muon + SGD over the config's parameter groups (recipe.optimizer_groups)."""
    return recipe.build_optimizer(cfg, model)


def build_model(cfg: ClassifierConfig, channels: int, classes: int, fresh: bool = True) -> nn.Module:
    """The net as the config builds, freezes and initialises it (on the CPU; the whitening stem is set apart)."""
    model = recipe.build_net(cfg.arch, channels, classes, cfg.norm_eps, cfg.logit_scale)
    recipe.prepare_for_training(model, cfg, fresh)
    return model


def set_schedule(cfg: ClassifierConfig, optimizer, step: int, total: int, stem_steps: int) -> float:
    """Every group's LR and momentum at `step` (the stem bias's own phase under --stem-bias-epochs); returns the LR."""
    lr, momentum = lr_momentum_at(cfg, step, total)
    recipe.set_schedule(optimizer, lr, momentum, recipe.stem_bias_factor(step, stem_steps) if stem_steps else 1.0)
    return lr


def data_settings(cfg: ClassifierConfig) -> classifier_data.DataSettings:
    return classifier_data.DataSettings(spec=cfg.data, root=cfg.data_root, sample=cfg.sample,
                                        test_sample=cfg.test_sample, seed=cfg.seed, image_size=cfg.image_size,
                                        stream=cfg.stream, workers=cfg.workers, batch_size=cfg.batch_size,
                                        channels_last=cfg.channels_last, on_bad_image=cfg.on_bad_image)


def load_data(cfg: ClassifierConfig) -> tuple:
    """(train, test) ImageArrays in memory (lr-find and the benchmarks; run() goes through classifier_data.load)."""
    return classifier_data.load_arrays(data_settings(cfg))


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: ClassifierConfig, info: dist.DistInfo,
               precision_name: str, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               buffers: tuple[torch.Tensor, ...] = (), check: bool = True) -> tuple[torch.Tensor, bool]:
    """One optimisation step; returns (loss, stepped), the loss a detached scalar on the device (NaN for a skipped step).

    check: the loss is read on the host (a sync) and a non-finite one is skipped and counted (fp16: the GradScaler
    skips it). `buffers` (BatchNorm statistics; empty where no step can be skipped) are put back after a non-finite
    forward, whose train-mode pass fed them non-finite activations. Under DDP the skip is decided on the averaged
    gradients, which every rank holds alike after the backward's all-reduce: one decision for all without a second
    exchange per step (a non-finite loss on any rank makes the average non-finite).
    Without check (the loop's --on-nan stop in fp32/bf16) the step is taken whatever the loss and nothing waits for
    the device: the loop finds a non-finite loss on the device (LossTally) and stops before the next checkpoint."""
    if not check:
        with precision.autocast(info.device, precision_name):
            loss, logged = recipe.loss_of(model(x), y, cfg, info.world_size)
        scaler.scale(loss).backward()
        decoupled_decay_(optimizer)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return logged, True
    kept = [buffer.clone() for buffer in buffers]  # a few KB: norm layers' running means, variances, counts
    with precision.autocast(info.device, precision_name):
        loss, logged = recipe.loss_of(model(x), y, cfg, info.world_size)
    value = loss.item()
    if info.world_size == 1 and not math.isfinite(value) and precision_name != "fp16":
        return skipped(logged, buffers, kept, optimizer)  # alone: no backward to spend
    scaler.scale(loss).backward()
    if info.world_size > 1 and precision_name != "fp16" and not finite_gradients(model):
        return skipped(logged, buffers, kept, optimizer)
    if not math.isfinite(value):  # fp16 (the scaler skips the step) or a rank alone: non-finite activations fed them
        put_back(buffers, kept)
    decoupled_decay_(optimizer)
    scale_before = scaler.get_scale() if scaler.is_enabled() else 1.0
    scaler.step(optimizer)  # fp16: skipped inside when gradients overflowed (dynamic loss scaling)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    stepped = not scaler.is_enabled() or scaler.get_scale() >= scale_before
    return logged, stepped


def finite_gradients(model: nn.Module) -> bool:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))


def skipped(loss: torch.Tensor, buffers: tuple[torch.Tensor, ...], kept: list[torch.Tensor],
            optimizer: torch.optim.Optimizer) -> tuple[torch.Tensor, bool]:
    put_back(buffers, kept)
    optimizer.zero_grad(set_to_none=True)
    return torch.full_like(loss.detach(), float("nan")), False


class LossTally:
    """The train loss between host reads, on the device: its sum and count over finite steps, the last value and the
    first step whose loss was not finite. add() each step queues a few scalar ops; read() (one sync) hands them over."""

    NONE = 2 ** 62  # "no non-finite step yet" (a minimum over ranks finds the first)

    def __init__(self, device: torch.device) -> None:
        self.dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        self.sum = torch.zeros((), dtype=self.dtype, device=device)
        self.count = torch.zeros((), dtype=torch.int64, device=device)
        self.first_bad = torch.full((), self.NONE, dtype=torch.int64, device=device)
        self.last = torch.full((), float("nan"), device=device)

    def add(self, loss: torch.Tensor, step: int) -> None:
        finite = torch.isfinite(loss)
        self.sum += torch.where(finite, loss.to(self.dtype), 0.0)
        self.count += finite
        self.first_bad = torch.where(finite, self.first_bad, self.first_bad.clamp(max=step))
        self.last = loss

    def read(self) -> tuple[float, int, int | None, float]:
        """(sum, count, first non-finite step or None, last loss) since the last read; starts a new tally. Every
        rank calls it at the same steps: the first non-finite step is the earliest on any rank."""
        first_bad = dist.all_reduce_min(self.first_bad.reshape(1).clone())[0]
        total, count, bad, last = torch.stack([self.sum, self.count.to(self.dtype), first_bad.to(self.dtype),
                                               self.last.to(self.dtype)]).tolist()
        self.sum.zero_()
        self.count.zero_()
        self.first_bad.fill_(self.NONE)
        return total, int(count), None if bad >= self.NONE else int(bad), last


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


@dataclass
class Parts:
    """What one training step touches, built once per process (fresh or resumed)."""
    model: nn.Module  # the bare net (checkpointed); `net` is what steps: DDP-wrapped and/or compiled
    net: nn.Module
    optimizer: torch.optim.Optimizer | recipe.MuonWithSGD
    scaler: torch.amp.GradScaler
    ema: EMA | None
    data_generator: torch.Generator  # epoch orders and augmentation draws, on the device
    augment: Augment
    stages: list[tuple[int, float]]  # --progressive (size, until epoch)
    buffers: tuple[torch.Tensor, ...]  # norm statistics kept across a skipped step (train_step)
    precision_name: str
    tally: LossTally  # the train loss on the device between host reads
    stem_steps: int  # steps the whitening stem's bias trains (--stem-bias-epochs; 0 = all)

    def checkpointed(self) -> dict:
        return {"model": self.model, "optimizer": self.optimizer, "scaler": self.scaler,
                "ema": self.ema.model if self.ema else None, "data_generator": self.data_generator}


def build_parts(cfg: ClassifierConfig, info: dist.DistInfo, data: classifier_data.ClassifierData, precision_name: str,
                fresh: bool) -> Parts:
    channels, size = data.shape[0], data.shape[1]
    model = build_model(cfg, channels, len(data.classes), fresh)
    stem = recipe.stem_of(model)
    if stem is not None and cfg.whiten and fresh:  # a resume loads the stem's weights
        whiten_init_(stem, data.train.normalise(data.whiten_images).float().contiguous().cpu())
    model = precision.to_memory_format(model.to(info.device), cfg.channels_last)
    stages = training_sizes(cfg, model, channels, size)
    skips = cfg.on_nan == "skip" or precision_name == "fp16"
    net = nn.parallel.DistributedDataParallel(model, broadcast_buffers=False) if info.distributed else model
    return Parts(model=model, net=compiled(net, cfg), optimizer=build_optimizer(cfg, model),
                 scaler=precision.make_scaler(precision_name, info.device),
                 ema=EMA(model, cfg.ema) if cfg.ema > 0 else None,
                 data_generator=torch.Generator(device=info.device).manual_seed(cfg.seed),
                 augment=Augment(pad=cfg.pad, flip=cfg.flip, alternating_flip=cfg.alternating_flip), stages=stages,
                 buffers=tuple(model.buffers()) if skips else (), precision_name=precision_name,
                 tally=LossTally(info.device), stem_steps=recipe.stem_bias_steps(cfg, data.train.steps_per_epoch()))


def compiled(net: nn.Module, cfg: ClassifierConfig) -> nn.Module:
    """--compile in --compile-mode (max-autotune: airbench94_muon's; the first steps take the compile)."""
    if cfg.compile and cfg.compile_mode != "default":
        return torch.compile(net, mode=cfg.compile_mode)
    return precision.maybe_compile(net, cfg.compile)


def new_state() -> dict:
    return {"step": 0, "epoch": 0, "order": None, "skipped": 0, "log_lines": 0, "best_acc": 0.0, "train_time": 0.0,
            "loss_sum": 0.0, "loss_count": 0}


def run(cfg: ClassifierConfig) -> dict:
    """Train, evaluate each epoch, checkpoint, and return the final metrics."""
    if launch.wanted(cfg.processes, cfg.device):
        return launch.local_ranks(__name__, "classifier", cfg)
    info, precision_name = lifecycle.setup_runtime(cfg.device, cfg.seed, cfg.deterministic, cfg.batch_size,
                                                           cfg.precision)
    life = lifecycle.open_run("classifier", cfg, info, RESUME_MAY_CHANGE)
    cfg = life.cfg
    if life.saved is not None and life.status.get("status") == "finished":
        return already_finished(life)
    data = classifier_data.load(data_settings(cfg), info, life.saved["meta"] if life.saved else None)
    if len(data.classes) < 2:
        raise UserError(f"--data {cfg.data} has {len(data.classes)} class ({', '.join(data.classes)}): a classifier "
                        "needs at least two")
    parts = build_parts(cfg, info, data, precision_name, fresh=life.saved is None)
    steps_per_epoch = data.train.steps_per_epoch()
    if steps_per_epoch == 0:
        raise UserError(f"--batch-size {cfg.batch_size} is larger than the {len(data.train)} training images")
    total_steps = max(1, int(round(cfg.epochs * steps_per_epoch)))
    state = restore(life, parts) if life.saved is not None else new_state()
    lifecycle.start(life, f"resumed {life.dir} at epoch {state['step'] // steps_per_epoch + 1}, step {state['step']} "
                          f"of {total_steps}",
                    {"device": str(info.device), "precision": precision_name,
                     "data": "streamed" if data.streamed else "resident"})
    meta = {"classes": data.classes, "mean": data.mean, "std": data.std, "channels": data.shape[0],
            "image_size": data.shape[1]}
    workers = f"{cfg.workers} DataLoader worker{'s' if cfg.workers != 1 else ''}" if cfg.workers else "the training process"
    where = f"streamed by {workers}" if data.streamed else f"resident on {info.device.type}"
    life.say(f"training {cfg.arch} on {data.source} ({len(data.train)} images, {'x'.join(map(str, data.shape))}, "
             f"{where}) for {total_steps} steps, batch {cfg.batch_size} on {info.world_size} x {info.device.type}, "
             f"{precision_name}")
    started = time.time()
    result: dict = {}
    try:
        while state["step"] < total_steps:
            epoch = train_epoch(life, parts, data.train, state, steps_per_epoch, total_steps, meta)
            if state["step"] % steps_per_epoch == 0 or state["step"] == total_steps:
                trained_at = size_at(parts.stages, state["step"] - 1, steps_per_epoch) or data.shape[1]
                result = end_epoch(life, parts.ema.model if parts.ema else parts.model, data.test, parts.augment,
                                   state, epoch, started, trained_at)
                state.update(order=None, loss_sum=0.0, loss_count=0)
                save(life, parts, state, meta)
    except UserError as error:  # a NaN stop or a bad streamed image: say so in status.json, keep the checkpoint
        lifecycle.fail(life, error, step=error.step if isinstance(error, NonFiniteLoss) else state["step"])
        raise
    report = lifecycle.finish(life, {k: v for k, v in result.items() if isinstance(v, float)})
    if report is not None:
        life.say(f"report: {report}")
    life.say(f"done: test accuracy {result.get('test_acc', float('nan')):.4f} after {state['step']} steps, "
             f"{state['train_time']:.1f} s training; run folder {life.dir}")
    del parts  # the DDP wrapper, before dist.cleanup
    dist.cleanup()
    return {**result, "run_dir": life.dir}


def train_epoch(life: lifecycle.Run, parts: Parts, train_set: Images, state: dict, steps_per_epoch: int,
                total_steps: int, meta: dict) -> int:
    """The steps of one epoch from where the state stands (mid-epoch after a resume) to its end or the last step;
    returns the epoch's index."""
    cfg, info = life.cfg, life.info
    epoch = state["step"] // steps_per_epoch
    first = state["step"] - epoch * steps_per_epoch
    if first == 0 or state["order"] is None:
        state["order"] = train_set.epoch_order(parts.data_generator)
    last = min(steps_per_epoch, total_steps - epoch * steps_per_epoch)
    bar = tqdm(range(first, last), desc=f"epoch {epoch + 1}", disable=cfg.quiet or not info.is_main, leave=False)
    # fp32/bf16 under --on-nan stop read nothing per step: the loss waits on the device for read_losses
    check = cfg.on_nan == "skip" or parts.precision_name == "fp16"
    dist.synchronize(info.device)  # the clock starts when the device is idle ...
    epoch_start = time.time()
    parts.net.train()
    for step_in_epoch in bar:
        lr = set_schedule(cfg, parts.optimizer, state["step"], total_steps, parts.stem_steps)
        x, y = train_set.train_batch(state["order"], step_in_epoch, epoch, parts.augment, parts.data_generator)
        smaller = size_at(parts.stages, state["step"], steps_per_epoch)
        if smaller is not None:
            x = resize_batch(x, smaller)
        loss, stepped = train_step(parts.net, x, y, cfg, info, parts.precision_name, parts.optimizer, parts.scaler,
                                   parts.buffers, check)
        if not stepped and cfg.on_nan == "stop":
            stop_if_diverged(state["step"], parts.precision_name, parts.scaler, life.dir)
        state["skipped"] += not stepped
        if parts.ema is not None:
            parts.ema.update(parts.model)
        parts.tally.add(loss, state["step"])
        state["step"] += 1
        if state["step"] % HOST_READ_EVERY == 0:
            last_loss = read_losses(life, parts, state)
            if not cfg.quiet and info.is_main:
                rate = (step_in_epoch + 1 - first) * cfg.batch_size / max(1e-9, time.time() - epoch_start)
                bar.set_postfix(loss=f"{last_loss:.3f}", lr=f"{lr:.3g}", img_s=f"{rate:.0f}")
        if cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0 and state["step"] % steps_per_epoch:
            save(life, parts, state, meta)
    bar.close()
    read_losses(life, parts, state)
    dist.synchronize(info.device)  # ... and stops when its queued steps are done
    state["train_time"] += time.time() - epoch_start
    return epoch


def read_losses(life: lifecycle.Run, parts: Parts, state: dict) -> float:
    """Hand the device's loss tally to the state (the epoch's mean train loss, checkpointed, so a resume averages every
    step) and stop on a non-finite loss (--on-nan stop, fp32/bf16) before anything saves or evaluates it: a loss
    that turned non-finite is found at the next read (at most HOST_READ_EVERY steps on, or the next checkpoint or
    epoch end) and named by its step. One host sync; returns the last step's loss."""
    total, count, first_bad, last = parts.tally.read()
    state["loss_sum"] += total
    state["loss_count"] += count
    if first_bad is not None and life.cfg.on_nan == "stop" and parts.precision_name != "fp16":
        raise diverged(first_bad, life.dir)
    return last


def diverged(step: int, run_dir: str) -> NonFiniteLoss:
    return NonFiniteLoss(f"the training loss became non-finite at step {step}; the last good checkpoint "
                         f"in {run_dir}/checkpoints is intact (lower --lr, or pass --on-nan skip)", step)


def stop_if_diverged(step: int, precision_name: str, scaler: torch.amp.GradScaler, run_dir: str) -> None:
    """--on-nan stop where the step read its loss: a non-finite loss stops at once, except in fp16, where skipping
    overflowing steps is the GradScaler's job; there only a scale driven below MIN_LOSS_SCALE (every step failing)
    stops the run."""
    if precision_name != "fp16":
        raise diverged(step, run_dir)
    if scaler.get_scale() < MIN_LOSS_SCALE:
        raise UserError(f"the training loss stayed non-finite in fp16 until step {step} (the GradScaler's scale fell "
                        f"to {scaler.get_scale():.3g}); the last good checkpoint in {run_dir}/checkpoints is intact "
                        "(lower --lr, or use --precision bf16)")


def end_epoch(life: lifecycle.Run, eval_model: nn.Module, test_set: Images, augment: Augment, state: dict, epoch: int,
              started: float, train_size: int) -> dict:
    """Test loss and accuracy (TTA) of the epoch's weights, one metrics line."""
    cfg, info, folder = life.cfg, life.info, life.folder
    precision_name = precision.resolve(cfg.precision, info.device)
    tta = cfg.tta if augment.flip or cfg.tta == "none" else "none"
    dist.broadcast_buffers(eval_model)  # rank 0's running statistics on every rank (DDP here does not send them)
    test_loss, test_acc = evaluate(eval_model, test_set, info.device, precision_name, tta)
    record = {"epoch": epoch + 1, "step": state["step"], "train_loss": state["loss_sum"] / max(1, state["loss_count"]),
              "test_loss": test_loss, "test_acc": test_acc, "train_time": state["train_time"],
              "elapsed": time.time() - started, "skipped_steps": state["skipped"], "skipped_images": len(test_set.skipped_files),
              "images_per_s": state["step"] * cfg.batch_size / max(1e-9, state["train_time"]), "train_size": train_size}
    life.say(f"epoch {epoch + 1:3d}  train loss {record['train_loss']:.4f}  test loss {test_loss:.4f}  "
             f"acc {test_acc:.4f}  {record['train_time']:.1f}s")
    if folder:
        folder.log(record)
    return record


def save(life: lifecycle.Run, parts: Parts, state: dict, meta: dict) -> None:
    read_losses(life, parts, state)  # a non-finite loss stops here, before the checkpoint
    lifecycle.save(life, {key: value for key, value in state.items() if key != "order"}, parts.checkpointed(),
                   extra={"order": state["order"], "meta": meta})


def restore(life: lifecycle.Run, parts: Parts) -> dict:
    state = {"loss_sum": 0.0, "loss_count": 0, **lifecycle.restore(life, parts.checkpointed())}
    state.pop("rank")
    order = life.saved["order"]
    state["order"] = order.to(next(parts.model.parameters()).device) if order is not None else None
    return state


def already_finished(life: lifecycle.Run) -> dict:
    """--resume of a finished run (a rerun job, torchrun --max-restarts): nothing to do and no file touched."""
    from darkroom.runs import read_metrics

    lines = read_metrics(life.dir)
    last = lines[-1] if lines else {}
    accuracy = f", test accuracy {last['test_acc']:.4f}" if "test_acc" in last else ""
    return lifecycle.already_finished(
        life, f"run {life.dir} already finished ({life.saved['state']['step']} steps{accuracy}); nothing to resume", last)
