"""darkroom train cyclegan: unpaired image-to-image translation (arXiv:1703.10593), one plain loop.

    darkroom train cyclegan --preset fashion-mnist-shoes
    darkroom train cyclegan --preset reference --data horse2zebra
    torchrun --nproc_per_node=8 -m darkroom train cyclegan --preset gpu-256 --data horse2zebra
The run's life (folder, resume, checkpoint, report) is darkroom.lifecycle's; this file holds what is CycleGAN's.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from darkroom import dist, launch, lifecycle, precision
from darkroom.cyclegan import data as data_io
from darkroom.cyclegan.config import RESUME_MAY_CHANGE, CycleGANConfig, check_config
from darkroom.cyclegan.losses import (LOSS_TERMS, CycleGANNets, CycleWeightControl, GeneratorPair,  # noqa: F401
                                      ImagePool, LossWeights, train_step, train_step_on_device)  # train_step: the module's API
from darkroom.cyclegan.nets import build_generator, build_nets  # noqa: F401 (build_generator: the module's API)
from darkroom.cyclegan.presets import PRESETS  # noqa: F401 (the trainer module carries its table, as CONFIG)
from darkroom.cyclegan.records import (DeviceSums, count_step, draw_grid, log_window, new_window, record_validation,
                                       to_input)
from darkroom.data.loaders import make_loader
from darkroom.errors import NonFiniteLoss, UserError
from darkroom.schedule import linear_decay_factor

CONFIG = CycleGANConfig


@dataclass
class Data:
    loader: torch.utils.data.DataLoader
    sampler: data_io.PairSampler
    sizes: tuple[int, int]
    channels: tuple[int, int]
    fixed: tuple[torch.Tensor, torch.Tensor]  # uint8 held-out images (or first training images) for grids/metrics
    held_out: bool
    names: tuple[str, str]
    source: str
    steps_per_epoch: int
    skip_counters: tuple  # the StreamingImages, whose .skipped counts undecodable files skipped


def load_data(cfg: CycleGANConfig, info: dist.DistInfo) -> Data:
    domain_a, domain_b, source = data_io.resolve_domains(cfg.data, cfg.data_a, cfg.data_b, cfg.data_root, cfg.sha256,
                                                         cfg.download_base, progress=info.is_main and not cfg.quiet)
    (channels_a, domain_a, bad_a), (channels_b, domain_b, bad_b) = (
        data_io.check_domain(domain, cfg.channels, label, cfg.on_bad_image) for domain, label in ((domain_a, "A"), (domain_b, "B")))
    channels = (channels_a, channels_b)
    if (bad_a or bad_b) and info.is_main:
        print(f"left out {bad_a} unreadable file(s) of domain A and {bad_b} of domain B (--on-bad-image skip)")
    if channels[0] != channels[1] and cfg.identity > 0:
        raise UserError(f"domain A has {channels[0]} channel(s) and domain B {channels[1]}: the identity loss needs "
                        "equal channels; pass --identity 0 or --channels 1/3")
    splits = [data_io.split_validation(domain, cfg.val_images, cfg.seed, label)
              for domain, label in ((domain_a, "A"), (domain_b, "B"))]
    train = [data_io.streaming(split[0], cfg.crop_size, cfg.load_size, c, True, cfg.flip, cfg.on_bad_image)
             for split, c in zip(splits, channels)]
    # held-out images for grids and validation numbers; without a hold-out, the first few training images for grids
    fixed = tuple(data_io.fixed_images(data_io.streaming(split[1] or split[0], cfg.crop_size, cfg.load_size, c, False,
                                                         False, cfg.on_bad_image), 64 if split[1] else 8)
                  for split, c in zip(splits, channels))
    sizes = (len(train[0]), len(train[1]))
    steps_per_epoch = max(sizes) // cfg.batch_size  # an epoch is max(|A|, |B|) images per domain, as the reference
    if steps_per_epoch == 0:
        raise UserError(f"--batch-size {cfg.batch_size} is larger than the {max(sizes)} training images of the larger domain")
    sampler = data_io.PairSampler(sizes, steps_per_epoch, cfg.batch_size, info.rank, info.world_size, cfg.seed)
    loader = make_loader(data_io.PairItems(train[0], train[1]), cfg.batch_size // info.world_size, cfg.workers,
                         shuffle=False, seed=cfg.seed, drop_last=True, sampler=sampler)
    return Data(loader, sampler, sizes, channels, fixed, all(split[1] is not None for split in splits),
                (domain_a.name, domain_b.name), source, steps_per_epoch, tuple(train))


@dataclass
class Parts:
    """The four nets, both optimizers, the loss scaler and one history pool per domain (this rank's)."""
    nets: dict[str, nn.Module]
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    pools: tuple[ImagePool, ImagePool]
    sums: DeviceSums  # the losses on the device between host reads
    control: CycleWeightControl | None = None  # --cycle-target's adaptive cycle weights

    def checkpointed(self) -> dict:
        return {**self.nets, "opt_g": self.opt_g, "opt_d": self.opt_d, "scaler": self.scaler,
                **({"cycle_weights": self.control} if self.control is not None else {})}


@dataclass(frozen=True)
class Schedule:
    """Iterations: `constant` at the full LR, then `decay` falling linearly to 0; a run may end at `end` (--stop-after)."""
    steps_per_epoch: int
    constant: int
    decay: int
    total: int
    end: int


def build_parts(cfg: CycleGANConfig, info: dist.DistInfo, data: Data, precision_name: str) -> Parts:
    nets = build_nets(cfg, *data.channels, info.device)
    # fused: one kernel for every parameter's update where PyTorch has one (CPU and CUDA): about 4% of a small-images
    # step on 2 CPU cores, where the per-parameter loop of Adam was 7% of it
    adam = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=info.device.type in ("cpu", "cuda") or None)
    return Parts(nets=nets,
                 opt_g=torch.optim.Adam([*nets["g_ab"].parameters(), *nets["g_ba"].parameters()], **adam),
                 opt_d=torch.optim.Adam([*nets["d_a"].parameters(), *nets["d_b"].parameters()], **adam),
                 scaler=precision.make_scaler(precision_name, info.device),
                 pools=(ImagePool(cfg.pool_size, seed=cfg.seed * 7919 + 2 * info.rank + 1),  # one pair per rank
                        ImagePool(cfg.pool_size, seed=cfg.seed * 7919 + 2 * info.rank + 2)),
                 sums=DeviceSums(info.device),
                 control=CycleWeightControl(cfg.lambda_a, cfg.lambda_b, cfg.cycle_target, info.device, cfg.cycle_span,
                                            cfg.cycle_span_down or None, cfg.cycle_fall)
                 if cfg.cycle_target > 0 else None)


def schedule_of(cfg: CycleGANConfig, steps_per_epoch: int) -> Schedule:
    constant, decay = round(cfg.epochs * steps_per_epoch), round(cfg.epochs_decay * steps_per_epoch)
    total = max(1, constant + decay)
    return Schedule(steps_per_epoch, constant, decay, total, min(total, cfg.stop_after) if cfg.stop_after else total)


def run(cfg: CycleGANConfig) -> dict:
    """Train both generators and both discriminators; checkpoint, log, draw grids; return the final numbers."""
    if launch.wanted(cfg.processes, cfg.device):
        return launch.local_ranks(__name__, "cyclegan", cfg)
    info, precision_name = lifecycle.setup_runtime(cfg.device, cfg.seed, cfg.deterministic, cfg.batch_size,
                                                   cfg.precision)
    check_config(cfg, info.world_size)
    random.seed(cfg.seed + info.rank)  # the history pools' draws differ per rank
    life = lifecycle.open_run("cyclegan", cfg, info, RESUME_MAY_CHANGE)
    cfg = life.cfg
    data = load_data(cfg, info)
    parts = build_parts(cfg, info, data, precision_name)
    schedule = schedule_of(cfg, data.steps_per_epoch)
    meta = {"channels_a": data.channels[0], "channels_b": data.channels[1], "domain_a": data.names[0],
            "domain_b": data.names[1], "source": data.source, "train_a": data.sizes[0], "train_b": data.sizes[1],
            "crop_size": cfg.crop_size, "load_size": cfg.load_size, "world_size": info.world_size,
            "steps_per_epoch": schedule.steps_per_epoch, "total_steps": schedule.total}
    state = restore(life, parts, meta) if life.saved is not None else new_state()
    if life.saved is not None and state["step"] >= schedule.end and life.ended_before:
        return already_done(life, state, schedule.total)
    lifecycle.start(life, f"resumed {cfg.out} at step {state['step']} of {schedule.total} (epoch "
                          f"{state['step'] / schedule.steps_per_epoch:.2f}, lr factor "
                          f"{lr_factor(state['step'], schedule.constant, schedule.decay):.3f})")
    life.say(f"training a CycleGAN on {data.source}: {data.names[0]} ({data.sizes[0]} images, {data.channels[0]} ch) "
             f"<-> {data.names[1]} ({data.sizes[1]} images, {data.channels[1]} ch) at {cfg.crop_size} px for "
             f"{schedule.end} of {schedule.total} iterations ({schedule.steps_per_epoch}/epoch), batch "
             f"{cfg.batch_size} on {info.world_size} x {info.device.type}, {precision_name}")
    try:
        train(life, parts, data, state, schedule, meta, precision_name)
    except UserError as error:  # a non-finite loss or an undecodable image: say so in status.json, keep the checkpoint
        lifecycle.fail(life, error, step=error.step if isinstance(error, NonFiniteLoss) else state["step"])
        raise
    return finish(life, parts, data, state, schedule.total, meta)


def train(life: lifecycle.Run, parts: Parts, data: Data, state: dict, schedule: Schedule, meta: dict,
          precision_name: str) -> None:
    """Iterations from where the state stands to the schedule's end (or --stop-after)."""
    cfg, info = life.cfg, life.info
    wrap = (lambda net: nn.parallel.DistributedDataParallel(net)) if info.distributed else (lambda net: net)
    nets = parts.nets
    step_nets = CycleGANNets(wrap(GeneratorPair(nets["g_ab"], nets["g_ba"])), wrap(nets["d_a"]), wrap(nets["d_b"]))
    weights = LossWeights(cfg.lambda_a, cfg.lambda_b, cfg.identity, cfg.gan_loss, cfg.cycle_decoder)
    skip_non_finite = cfg.on_nan == "skip" and precision_name != "fp16"
    bar = tqdm(total=schedule.end, initial=min(state["step"], schedule.end), disable=cfg.quiet or not info.is_main,
               leave=False, dynamic_ncols=True)
    mark = time.time()
    while state["step"] < schedule.end:
        data.sampler.set_position(*divmod(state["step"], schedule.steps_per_epoch))  # exact batches after a resume
        for batch_a, batch_b, errors in data.loader:
            stop_on_bad_images([error for error in errors if error], life, parts, state, meta)
            tick = time.time()
            lr = cfg.lr * lr_factor(state["step"], schedule.constant, schedule.decay)
            for group in (*parts.opt_g.param_groups, *parts.opt_d.param_groups):
                group["lr"] = lr
            real_a = to_input(batch_a, info.device, cfg.channels_last)
            real_b = to_input(batch_b, info.device, cfg.channels_last)
            values, skipped, _ = train_step_on_device(step_nets, real_a, real_b, parts.opt_g, parts.opt_d,
                                                      parts.pools[0], parts.pools[1], weights, info.device,
                                                      precision_name, parts.scaler, skip_non_finite, parts.control)
            if not skipped:  # fp16's non-finite steps are the GradScaler's to skip; any other stops the run
                parts.sums.add(values, state["step"], watch=precision_name != "fp16")
            state["step"] += 1
            reads = reads_at(cfg, state["step"], schedule.steps_per_epoch)
            if reads:
                dist.synchronize(info.device)  # the clock covers the queued steps
            state["train_time"] += time.time() - tick
            count_step(state, skipped, lr, time.time() - mark)
            mark = time.time()
            bar.update(1)
            if reads:
                bar.set_postfix_str(format_losses(read_losses(life, parts, state)), refresh=False)
            after_step(life, parts, data, state, meta)
            if state["step"] >= schedule.end:
                break
    bar.close()


def new_state() -> dict:
    return {"step": 0, "log_lines": 0, "train_time": 0.0, "skipped": 0, "window": new_window()}


def reads_at(cfg: CycleGANConfig, step: int, steps_per_epoch: int) -> bool:
    """Whether the losses are read on the host after iteration `step` (1-based): at each metrics line, grid, epoch end
    and checkpoint, the same iterations on every rank; the iterations between make no host sync."""
    return bool((cfg.log_every and step % cfg.log_every == 0) or (cfg.sample_every and step % cfg.sample_every == 0)
                or step % steps_per_epoch == 0 or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0))


def read_losses(life: lifecycle.Run, parts: Parts, state: dict) -> dict[str, float]:
    """Move the device's loss sums into the window and stop on a non-finite loss before anything logs, draws or saves
    it (found at the next read, named by its iteration); returns the last iteration's losses. One host sync."""
    bad_step, bad, last = parts.sums.flush(state["window"])
    if bad_step is not None:
        raise non_finite(bad, bad_step, life)
    return last


def non_finite(losses: dict[str, float] | None, step: int, life: lifecycle.Run) -> NonFiniteLoss:
    """--on-nan stop: one sentence; the weights in memory are not saved, so the last checkpoint is the last good one."""
    kept = (f"the last checkpoint in {life.dir}/checkpoints is intact (lower --lr)" if life.checkpoint_path.exists()
            else "no checkpoint had been written yet (lower --lr, or pass --on-nan skip)")
    where = format_losses(losses) if losses is not None else "on another rank"
    return NonFiniteLoss(f"a loss became non-finite at iteration {step} ({where}); {kept}", step)


def after_step(life: lifecycle.Run, parts: Parts, data: Data, state: dict, meta: dict) -> None:
    """The metrics line, grid, epoch-end validation and checkpoint that fall on this step."""
    cfg, info, folder, step, spe = life.cfg, life.info, life.folder, state["step"], data.steps_per_epoch
    if cfg.log_every and step % cfg.log_every == 0:
        log_window(folder, info, state, spe, cfg.batch_size, skipped_images(data), cfg.on_nan == "skip")
    if folder and cfg.sample_every and step % cfg.sample_every == 0:
        draw_grid(parts.nets, data.fixed, info.device, folder.samples_dir / f"step-{step:07d}.png")
    if step % spe == 0:  # epoch end
        state["validation"] = record_validation(folder, info, parts.nets, data.fixed, data.held_out, step, spe)
    if step % spe == 0 or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
        save(life, parts, state, meta)


def skipped_images(data: Data) -> int:
    return sum(dataset.skipped for dataset in data.skip_counters)


def already_done(life: lifecycle.Run, state: dict, total_steps: int) -> dict:
    """--resume with nothing left to train: say so and leave status.json and metrics.jsonl as they are."""
    go_on = "" if state["step"] >= total_steps else " (raise --stop-after to go on)"
    result = {key: value for key, value in state.get("validation", {}).items() if key != "step"}
    return lifecycle.already_finished(
        life, f"{life.dir} already ended at step {state['step']} of {total_steps}: nothing to do{go_on}",
        {**result, "step": state["step"], "train_time": state["train_time"]})


def stop_on_bad_images(bad: list[str], life: lifecycle.Run, parts: Parts, state: dict, meta: dict) -> None:
    """An undecodable file (on_bad_image fail): save where the run is, then one sentence naming it."""
    if not bad:
        return
    if life.info.distributed:  # a collective save would hang the other ranks; torchrun stops them instead
        raise UserError(f"{bad[0]}; the last checkpoint in {life.checkpoint_path.parent} is intact (fix or remove the file and "
                        "pass --resume, or pass --on-bad-image skip)")
    save(life, parts, state, meta)
    raise UserError(f"{bad[0]}; the run is saved at iteration {state['step']} (fix or remove the file and pass --resume, "
                    "or pass --on-bad-image skip)")


def finish(life: lifecycle.Run, parts: Parts, data: Data, state: dict, total_steps: int, meta: dict) -> dict:
    """The last (partial) window's line, final validation numbers, checkpoint, grid and status; the summary."""
    cfg, info, folder, spe = life.cfg, life.info, life.folder, data.steps_per_epoch
    read_losses(life, parts, state)  # (a no-op when the last iteration read them)
    unsaved = state["window"]["steps"] > 0 or state.get("validation", {}).get("step") != state["step"]
    if state["window"]["steps"]:
        log_window(folder, info, state, spe, cfg.batch_size, skipped_images(data), cfg.on_nan == "skip")
    if state.get("validation", {}).get("step") != state["step"]:
        state["validation"] = record_validation(folder, info, parts.nets, data.fixed, data.held_out, state["step"], spe)
    if unsaved:  # the checkpoint accounts for every metrics line
        save(life, parts, state, meta)
    result = {key: value for key, value in state["validation"].items() if key != "step"}
    if folder:
        draw_grid(parts.nets, data.fixed, info.device, folder.samples_dir / "final.png")
    lifecycle.finish(life, {"step": state["step"], "train_time": state["train_time"], **result},
                     "finished" if state["step"] >= total_steps else "stopped")
    life.say(f"done: {state['step']} iterations in {state['train_time']:.1f} s; "
             f"{'held-out' if data.held_out else 'training'} cycle error A {result['val_cycle_a']:.4f}, "
             f"B {result['val_cycle_b']:.4f}; run folder {cfg.out}")
    dist.cleanup()
    return {**result, "step": state["step"], "train_time": state["train_time"], "run_dir": cfg.out}


def lr_factor(step: int, constant_steps: int, decay_steps: int) -> float:
    """The reference's rule per iteration: 1.0 through the constant phase, then linearly to 0 at the last one."""
    return linear_decay_factor(step, constant_steps, decay_steps)


def format_losses(losses: dict[str, float]) -> str:
    return " ".join(f"{name}={losses[name]:.3f}" for name in LOSS_TERMS)


def save(life: lifecycle.Run, parts: Parts, state: dict, meta: dict) -> None:
    """Collective under DDP: each rank's pools (and RNG states) go into the checkpoint."""
    read_losses(life, parts, state)  # a non-finite loss stops here, before the checkpoint
    lifecycle.save(life, state, parts.checkpointed(), extra={"meta": meta},
                   per_rank={"pools": [pool.state_dict() for pool in parts.pools]})


def restore(life: lifecycle.Run, parts: Parts, meta: dict) -> dict:
    saved = life.saved
    for key in ("world_size", "train_a", "train_b", "channels_a", "channels_b"):
        if saved["meta"].get(key) != meta[key]:
            raise UserError(f"the run in {life.dir} was trained with {key.replace('_', ' ')} "
                            f"{saved['meta'].get(key)}, not {meta[key]}; resume it as it was started")
    state = lifecycle.restore(life, parts.checkpointed())
    for pool, pool_state in zip(parts.pools, state.pop("rank")["pools"]):
        pool.load_state_dict(pool_state, life.info.device)
    return {"skipped": 0, "window": new_window(), **state}  # (checkpoints older than these two keys)
