"""darkroom train cyclegan: unpaired image-to-image translation (arXiv:1703.10593), one plain loop.

    darkroom train cyclegan --preset fashion-mnist-shoes
    darkroom train cyclegan --preset reference --data horse2zebra
    torchrun --nproc_per_node=8 -m darkroom train cyclegan --preset gpu-256 --data horse2zebra
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as torch_dist
from torch import nn
from tqdm import tqdm

from darkroom import checkpoint, dist, launch, precision, runs
from darkroom.config import differences, from_dict, option, to_dict, validate
from darkroom.data.loaders import make_loader
from darkroom.errors import UserError
from darkroom.nets.cyclegan import UPSAMPLES, cyclegan_init_, patchgan_discriminator, resnet_generator
from darkroom.schedule import linear_decay_factor
from darkroom.train import cyclegan_data as data_io
from darkroom.train.cyclegan_losses import (GAN_LOSSES, LOSS_TERMS, CycleGANNets, GeneratorPair, ImagePool,
                                            LossWeights, train_step)
from darkroom.train.cyclegan_records import (count_step, draw_grid, log_window, new_window, record_validation,
                                             to_input)

GENERATOR_BLOCKS = {"resnet_9blocks": 9, "resnet_6blocks": 6}  # the reference's names


@dataclass(frozen=True)
class CycleGANConfig:
    data: str = option("fashion-mnist:sneaker,ankle-boot", "two classes of fashion-mnist/mnist/cifar10, a folder or "
                       ".zip with trainA/ trainB/, an official dataset name (horse2zebra, ...) or a .zip URL")
    data_a: str | None = option(None, "folder of domain A images (with --data-b, instead of --data)")
    data_b: str | None = option(None, "folder of domain B images (with --data-a)")
    data_root: str | None = option(None, "folder holding fashion-mnist/mnist/cifar10 files")
    sha256: str | None = option(None, "expected sha256 of a downloaded dataset zip")
    download_base: str = option(data_io.OFFICIAL_BASE, "where official dataset names are downloaded from")
    channels: str = option("auto", "image channels: auto (per domain, from the files), 1 or 3", choices=("auto", "1", "3"))
    load_size: int = option(286, "resize the shorter side to this before the random crop")
    crop_size: int = option(256, "random crop size (a multiple of 4); the training resolution")
    flip: bool = option(True, "random horizontal flips")
    val_images: int = option(64, "training images held out per domain for grids and validation (at most 10%)", low=0)
    on_bad_image: str = option("fail", "an undecodable image: fail (one sentence, checkpoint kept) or skip and count",
                               choices=("fail", "skip"))
    generator: str = option("resnet_9blocks", "generator: " + ", ".join(GENERATOR_BLOCKS), choices=tuple(GENERATOR_BLOCKS))
    blocks: int = option(0, "residual blocks of the generator (0: its name's 6 or 9)", low=0)
    ngf: int = option(64, "generator filters in the first layer", low=1)
    ndf: int = option(64, "discriminator filters in the first layer", low=1)
    d_layers: int = option(3, "PatchGAN stride-2 layers (3: 70x70 patches)", low=1)
    upsample: str = option("deconv", "generator upsampling: deconv (reference) or nearest-conv", choices=UPSAMPLES)
    gan_loss: str = option("lsgan", "adversarial loss: lsgan (reference) or vanilla (BCE)", choices=GAN_LOSSES)
    lambda_a: float = option(10.0, "weight of the A -> B -> A cycle loss", low=0)
    lambda_b: float = option(10.0, "weight of the B -> A -> B cycle loss", low=0)
    identity: float = option(0.5, "identity loss weight relative to lambda (0 = off)", low=0)
    cycle_decoder: float = option(1.0, "cycle loss gradient into the reconstructing generator, times lambda "
                                  "(1 = reference)", above=0.0)
    pool_size: int = option(50, "history pool of generated images per domain (0 = off)", low=0)
    lr: float = option(2e-4, "Adam learning rate of both optimizers", above=0)
    beta1: float = option(0.5, "Adam beta1")
    beta2: float = option(0.999, "Adam beta2")
    epochs: float = option(100.0, "epochs at the full learning rate (an epoch is max(|A|, |B|) images)", low=0)
    epochs_decay: float = option(100.0, "epochs of linear decay to 0 after them", low=0)
    batch_size: int = option(1, "global batch size (split over ranks)", low=1)
    stop_after: int = option(0, "stop after this many iterations (0 = the whole schedule); the schedule is not "
                                "shortened", low=0)
    precision: str = option("auto", "auto (bf16 on GPU, fp32 on CPU), fp32, bf16 or fp16 (dynamic loss scaling)",
                            choices=precision.PRECISIONS)
    channels_last: bool = option(False, "channels_last memory format (faster on recent GPUs)")
    memory_lean: bool = option(False, "recompute the residual blocks in backward (gradient checkpointing)")
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps")
    processes: int = option(1, "CPU: train as N data-parallel processes on this machine (gloo), each with its share "
                               "of the cores and its own pools; ignored on GPUs and under torchrun")
    workers: int = option(4, "data loading processes (0 = in the training process)", low=0)
    seed: int = option(0, "random seed")
    deterministic: bool = option(False, "deterministic algorithms (exact resume checks)")
    log_every: int = option(100, "write a JSON line of every loss term every N iterations", low=0)
    sample_every: int = option(500, "write a grid of real/fake/reconstructed images every N iterations", low=0)
    checkpoint_every: int = option(0, "also checkpoint every N iterations (0 = at epoch ends only)", low=0)
    on_nan: str = option("stop", "non-finite loss: stop (last good checkpoint kept) or skip the step and count "
                         "(fp16 always skips: its loss scaler does)", choices=("stop", "skip"))
    out: str | None = option(None, "run folder (default runs/cyclegan-<time>)")
    resume: bool = option(False, "continue the run in --out from its last checkpoint")
    quiet: bool = option(False, "no progress bar")

    def __post_init__(self) -> None:
        validate(self)  # every field's type, choices and bounds (config.option)


CONFIG = CycleGANConfig

PRESETS: dict[str, dict] = {
    # the reference's defaults: 256 crops of 286 loads, resnet_9blocks, batch 1, 100 + 100 epochs
    "reference": dict(load_size=286, crop_size=256, generator="resnet_9blocks", ngf=64, ndf=64, batch_size=1,
                      epochs=100.0, epochs_decay=100.0),
    # sneaker <-> ankle boot in under 10 minutes on 2 CPU cores (see benchmarks/cyclegan_cpu.py). No identity loss:
    # for two shapes in one grey palette it holds the source shape back (judged target class 95.6% / 90.0% with it,
    # 97.6% / 95.7% without, same 742 iterations). 3 residual blocks instead of 6: twice the iterations in about the
    # same time. Batch 4 rather than 8 for the same time: more, smaller updates. No flips: 99.9% of Fashion-MNIST's
    # shoes point the same way, and mirrored ones only widen what both nets must learn. --cycle-decoder 8: the
    # generator that reconstructs gets 8x the cycle gradient, so the b2a cycle error falls without g_ba hiding more
    # boot in its sneakers (seed 0, 2523 iterations: b2a cycle L1 0.117 -> 0.104, judged 97.5% -> 97.1%); lambda_b 12
    # and lr 3e-4 for 0.6 + 1.4 epochs (2968 iterations) take it under 0.1 on three seeds (0.097) with b2a judged
    # 94.6-95.1%; 0.8 + 1.8 epochs (3858 iterations, about 4.5 minutes on 2 AVX-512 cores) lower it to 0.092-0.094
    # (b2a judged 94.8-97.0%). lambda_a 5: the b2a failures are boots still judged ankle boot, and a lighter
    # sneaker cycle lets g_ba spend less on decoding sneakers (seed 2: b2a 94.8% -> 96.4%, a2b cycle L1 0.072 -> 0.077).
    # Three seeds: benchmarks/results/cyclegan_cpu.json
    "fashion-mnist-shoes": dict(data="fashion-mnist:sneaker,ankle-boot", load_size=28, crop_size=28, flip=False,
                                identity=0.0, generator="resnet_6blocks", blocks=3, ngf=32, ndf=32, batch_size=4,
                                cycle_decoder=8.0, lambda_a=5.0, lambda_b=12.0, lr=3e-4, epochs=0.8, epochs_decay=1.8,
                                workers=0, log_every=50, sample_every=100, checkpoint_every=100),
    # the GPU benchmark's settings: reference nets at 256 px, batch 4, bf16, channels_last
    "gpu-256": dict(load_size=286, crop_size=256, generator="resnet_9blocks", ngf=64, ndf=64, batch_size=4,
                    precision="bf16", channels_last=True, workers=8, epochs=100.0, epochs_decay=100.0),
}

RESUME_MAY_CHANGE = ("resume", "out", "quiet", "device", "workers", "stop_after", "on_nan")


def check_config(cfg: CycleGANConfig, world_size: int) -> None:
    """Settings that cannot work, each named in one sentence before any data is read."""
    if cfg.crop_size < 8 or cfg.crop_size % 4:
        raise UserError(f"--crop-size {cfg.crop_size} must be a multiple of 4 and at least 8 (the generator halves it twice)")
    if cfg.crop_size > cfg.load_size:
        raise UserError(f"--crop-size {cfg.crop_size} is larger than --load-size {cfg.load_size}: the random crop "
                        "must fit inside the resized image")
    side = cfg.crop_size
    for _ in range(cfg.d_layers):
        side //= 2  # 4x4 stride-2 padding-1 convs halve the side; the two stride-1 convs take 1 each
    if side - 2 < 1:
        raise UserError(f"--crop-size {cfg.crop_size} is too small for a --d-layers {cfg.d_layers} discriminator")
    if cfg.batch_size % world_size:
        raise UserError(f"--batch-size {cfg.batch_size} must be a multiple of the {world_size} ranks")
    if cfg.epochs + cfg.epochs_decay <= 0:
        raise UserError("--epochs and --epochs-decay are both 0: there is nothing to train")


def build_generator(cfg_values: dict, in_channels: int, out_channels: int) -> nn.Module:
    """A ResNet generator from a (saved) config dict; memory-lean mode checkpoints its residual blocks."""
    return cyclegan_init_(resnet_generator(in_channels, out_channels, ngf=cfg_values["ngf"],
                                           n_blocks=cfg_values.get("blocks") or GENERATOR_BLOCKS[cfg_values["generator"]],
                                           upsample=cfg_values["upsample"],
                                           checkpoint_blocks=cfg_values.get("memory_lean", False)))


def build_nets(cfg: CycleGANConfig, channels_a: int, channels_b: int, device: torch.device) -> dict[str, nn.Module]:
    values = to_dict(cfg)
    nets = {"g_ab": build_generator(values, channels_a, channels_b), "g_ba": build_generator(values, channels_b, channels_a),
            "d_a": cyclegan_init_(patchgan_discriminator(channels_a, cfg.ndf, cfg.d_layers)),
            "d_b": cyclegan_init_(patchgan_discriminator(channels_b, cfg.ndf, cfg.d_layers))}
    return {name: precision.to_memory_format(net.to(device), cfg.channels_last) for name, net in nets.items()}


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


def run(cfg: CycleGANConfig, argv: list[str] | None = None) -> dict:
    """Train both generators and both discriminators; checkpoint, log, draw grids; return the final numbers."""
    if launch.wanted(cfg.processes, cfg.device):
        return launch.local_ranks(__name__, "cyclegan", cfg, argv)
    info = dist.setup(cfg.device)
    check_config(cfg, info.world_size)
    seed_everything(cfg, info)
    precision_name = precision.resolve(cfg.precision, info.device)

    data = load_data(cfg, info)
    nets = build_nets(cfg, *data.channels, info.device)
    betas = (cfg.beta1, cfg.beta2)
    opt_g = torch.optim.Adam([*nets["g_ab"].parameters(), *nets["g_ba"].parameters()], lr=cfg.lr, betas=betas)
    opt_d = torch.optim.Adam([*nets["d_a"].parameters(), *nets["d_b"].parameters()], lr=cfg.lr, betas=betas)
    scaler = precision.make_scaler(precision_name, info.device)
    pools = (ImagePool(cfg.pool_size, seed=cfg.seed * 7919 + 2 * info.rank + 1),  # one pair per rank
             ImagePool(cfg.pool_size, seed=cfg.seed * 7919 + 2 * info.rank + 2))
    weights = LossWeights(cfg.lambda_a, cfg.lambda_b, cfg.identity, cfg.gan_loss, cfg.cycle_decoder)
    spe = data.steps_per_epoch
    constant_steps, decay_steps = round(cfg.epochs * spe), round(cfg.epochs_decay * spe)
    total_steps = max(1, constant_steps + decay_steps)
    end_step = min(total_steps, cfg.stop_after) if cfg.stop_after else total_steps

    run_dir = dist.broadcast_object(str(cfg.out or runs.default_run_dir("cyclegan")))
    cfg = replace(cfg, out=run_dir)
    meta = {"channels_a": data.channels[0], "channels_b": data.channels[1], "domain_a": data.names[0],
            "domain_b": data.names[1], "source": data.source, "train_a": data.sizes[0], "train_b": data.sizes[1],
            "crop_size": cfg.crop_size, "load_size": cfg.load_size, "world_size": info.world_size,
            "steps_per_epoch": spe, "total_steps": total_steps}
    saver = Saver(runs.RunFolder(run_dir, "cyclegan") if info.is_main else None, cfg, info, nets, opt_g, opt_d, scaler,
                  pools, meta, Path(run_dir) / "checkpoints" / "last.pt")
    state, how = open_run(cfg, argv, info, saver, end_step)
    if how == "done":
        return already_done(info, saver, state, total_steps)
    if how == "resumed":
        print_main(info, f"resumed {run_dir} at step {state['step']} of {total_steps} (epoch {state['step'] / spe:.2f}, "
                         f"lr factor {lr_factor(state['step'], constant_steps, decay_steps):.3f})")

    wrap = (lambda net: nn.parallel.DistributedDataParallel(net)) if info.distributed else (lambda net: net)
    step_nets = CycleGANNets(wrap(GeneratorPair(nets["g_ab"], nets["g_ba"])), wrap(nets["d_a"]), wrap(nets["d_b"]))
    print_main(info, f"training a CycleGAN on {data.source}: {data.names[0]} ({data.sizes[0]} images, {data.channels[0]} ch) "
                     f"<-> {data.names[1]} ({data.sizes[1]} images, {data.channels[1]} ch) at {cfg.crop_size} px for "
                     f"{end_step} of {total_steps} iterations ({spe}/epoch), batch {cfg.batch_size} on {info.world_size} x "
                     f"{info.device.type}, {precision_name}")
    skip_non_finite = cfg.on_nan == "skip" and precision_name != "fp16"
    bar = tqdm(total=end_step, initial=min(state["step"], end_step), disable=cfg.quiet or not info.is_main, leave=False,
               dynamic_ncols=True)
    try:
        mark = time.time()
        while state["step"] < end_step:
            data.sampler.set_position(*divmod(state["step"], spe))  # (epoch, first step): exact batches after a resume
            for batch_a, batch_b, errors in data.loader:
                stop_on_bad_images([error for error in errors if error], info, saver, state)
                tick = time.time()
                lr = cfg.lr * lr_factor(state["step"], constant_steps, decay_steps)
                for group in (*opt_g.param_groups, *opt_d.param_groups):
                    group["lr"] = lr
                real_a = to_input(batch_a, info.device, cfg.channels_last)
                real_b = to_input(batch_b, info.device, cfg.channels_last)
                losses, _ = train_step(step_nets, real_a, real_b, opt_g, opt_d, pools[0], pools[1], weights, info.device,
                                       precision_name, scaler, skip_non_finite)
                if not losses.get("skipped") and precision_name != "fp16" and not all(map(math.isfinite, losses.values())):
                    raise non_finite(losses, state, saver)  # before anything non-finite is checkpointed
                state["step"] += 1
                state["train_time"] += time.time() - tick
                count_step(state, losses, lr, time.time() - mark)
                mark = time.time()
                bar.update(1)
                bar.set_postfix_str(format_losses(losses), refresh=False)
                after_step(info, saver, nets, data, state)
                if state["step"] >= end_step:
                    break
    except UserError as error:  # a non-finite loss or an undecodable image: say so in status.json, keep the checkpoint
        if saver.folder:
            saver.folder.set_status("failed", error=str(error), step=state["step"])
        raise
    bar.close()
    del step_nets  # the DDP wrappers, before finish's dist.cleanup
    return finish(info, saver, nets, data, state, total_steps)


def seed_everything(cfg: CycleGANConfig, info: dist.DistInfo) -> None:
    torch.manual_seed(cfg.seed)  # the same initial nets on every rank (DDP also broadcasts rank 0's)
    random.seed(cfg.seed + info.rank)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=info.device.type == "cuda")  # reflection pad: no CUDA kernel
        torch.backends.cudnn.benchmark = False
    elif info.device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def open_run(cfg: CycleGANConfig, argv: list[str] | None, info: dist.DistInfo, saver: "Saver",
             end_step: int) -> tuple[dict, str]:
    """(state, how): how is "fresh", "resumed" (metric lines after the checkpoint dropped), or "done": --resume of a
    run that already finished or stopped at this --stop-after (nothing to train; nothing rewritten)."""
    folder = saver.folder
    if cfg.resume and saver.path.exists():
        state = restore(cfg, saver.path, info, saver.nets, saver.opt_g, saver.opt_d, saver.scaler, saver.pools, saver.meta)
        status = dist.broadcast_object(runs.read_status(cfg.out).get("status") if info.is_main else None)
        if state["step"] >= end_step and status in ("finished", "stopped"):  # else killed before its status was written
            return state, "done"
        if folder:
            folder.truncate_log(state["log_lines"])
            folder.set_status("running", resumes=runs.read_status(cfg.out).get("resumes", 0) + 1)
        return state, "resumed"
    if folder:
        if folder.checkpoint_path.exists():
            raise UserError(f"run folder {cfg.out} already holds a run; pass --resume to continue it or pick another --out")
        folder.write_config(to_dict(cfg), argv)
        folder.truncate_log(0)  # a killed first life (no checkpoint yet) left lines this run writes again
        folder.set_status("running", resumes=0)
        if cfg.resume:  # a rerun job passes --resume every time; say which it did
            print_main(info, f"no checkpoint in {cfg.out} yet: --resume starts a fresh run")
    return {"step": 0, "log_lines": 0, "train_time": 0.0, "skipped": 0, "window": new_window()}, "fresh"


def non_finite(losses: dict[str, float], state: dict, saver: "Saver") -> UserError:
    """--on-nan stop: one sentence; the weights in memory are not saved, so the last checkpoint is the last good one."""
    kept = (f"the last checkpoint in {saver.cfg.out}/checkpoints is intact (lower --lr)" if saver.path.exists()
            else "no checkpoint had been written yet (lower --lr, or pass --on-nan skip)")
    return UserError(f"a loss became non-finite at iteration {state['step']} ({format_losses(losses)}); {kept}")


def after_step(info: dist.DistInfo, saver: "Saver", nets: dict[str, nn.Module], data: Data, state: dict) -> None:
    """The metrics line, grid, epoch-end validation and checkpoint that fall on this step."""
    cfg, folder, step, spe = saver.cfg, saver.folder, state["step"], data.steps_per_epoch
    if cfg.log_every and step % cfg.log_every == 0:
        log_window(folder, info, state, spe, cfg.batch_size, skipped_images(data), cfg.on_nan == "skip")
    if folder and cfg.sample_every and step % cfg.sample_every == 0:
        draw_grid(nets, data.fixed, info.device, folder.samples_dir / f"step-{step:07d}.png")
    if step % spe == 0:  # epoch end
        state["validation"] = record_validation(folder, info, nets, data.fixed, data.held_out, step, spe)
    if step % spe == 0 or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
        saver.save(state)


def skipped_images(data: Data) -> int:
    return sum(dataset.skipped for dataset in data.skip_counters)


def already_done(info: dist.DistInfo, saver: "Saver", state: dict, total_steps: int) -> dict:
    """--resume with nothing left to train: say so and leave status.json and metrics.jsonl as they are."""
    go_on = "" if state["step"] >= total_steps else " (raise --stop-after to go on)"
    print_main(info, f"{saver.cfg.out} already ended at step {state['step']} of {total_steps}: nothing to do{go_on}")
    if saver.folder:
        saver.folder.close()  # the lock (and report.html, rebuilt from the folder as it is)
    dist.cleanup()
    result = {key: value for key, value in state.get("validation", {}).items() if key != "step"}
    return {**result, "step": state["step"], "train_time": state["train_time"], "run_dir": saver.cfg.out}


def stop_on_bad_images(bad: list[str], info: dist.DistInfo, saver: "Saver", state: dict) -> None:
    """An undecodable file (on_bad_image fail): save where the run is, then one sentence naming it."""
    if not bad:
        return
    if info.distributed:  # a collective save would hang the other ranks; torchrun stops them instead
        raise UserError(f"{bad[0]}; the last checkpoint in {saver.path.parent} is intact (fix or remove the file and "
                        "pass --resume, or pass --on-bad-image skip)")
    saver.save(state)
    raise UserError(f"{bad[0]}; the run is saved at iteration {state['step']} (fix or remove the file and pass --resume, "
                    "or pass --on-bad-image skip)")


def finish(info: dist.DistInfo, saver: "Saver", nets: dict[str, nn.Module], data: Data, state: dict,
           total_steps: int) -> dict:
    """The last (partial) window's line, final validation numbers, checkpoint, grid and status; the summary."""
    folder, spe = saver.folder, data.steps_per_epoch
    unsaved = state["window"]["steps"] > 0 or state.get("validation", {}).get("step") != state["step"]
    if state["window"]["steps"]:
        log_window(folder, info, state, spe, saver.cfg.batch_size, skipped_images(data), saver.cfg.on_nan == "skip")
    if state.get("validation", {}).get("step") != state["step"]:
        state["validation"] = record_validation(folder, info, nets, data.fixed, data.held_out, state["step"], spe)
    if unsaved:  # the checkpoint accounts for every metrics line
        saver.save(state)
    result = {key: value for key, value in state["validation"].items() if key != "step"}
    if folder:
        draw_grid(nets, data.fixed, info.device, folder.samples_dir / "final.png")
        folder.set_status("finished" if state["step"] >= total_steps else "stopped", step=state["step"],
                          train_time=state["train_time"], **result)
        folder.close()
    print_main(info, f"done: {state['step']} iterations in {state['train_time']:.1f} s; "
                     f"{'held-out' if data.held_out else 'training'} cycle error A {result['val_cycle_a']:.4f}, "
                     f"B {result['val_cycle_b']:.4f}; run folder {saver.cfg.out}")
    dist.cleanup()
    return {**result, "step": state["step"], "train_time": state["train_time"], "run_dir": saver.cfg.out}


def lr_factor(step: int, constant_steps: int, decay_steps: int) -> float:
    """The reference's rule per iteration: 1.0 through the constant phase, then linearly to 0 at the last one."""
    return linear_decay_factor(step, constant_steps, decay_steps)


def format_losses(losses: dict[str, float]) -> str:
    return " ".join(f"{name}={losses[name]:.3f}" for name in LOSS_TERMS)


class Saver:
    """Writes checkpoints holding everything a run needs to go on exactly; collective under DDP (pools, RNG)."""

    def __init__(self, folder, cfg, info, nets, opt_g, opt_d, scaler, pools, meta, path) -> None:
        self.folder, self.cfg, self.info, self.nets = folder, cfg, info, nets
        self.opt_g, self.opt_d, self.scaler, self.pools, self.meta, self.path = opt_g, opt_d, scaler, pools, meta, path

    def save(self, state: dict) -> None:
        mine = {"pools": [pool.state_dict() for pool in self.pools], "rng": checkpoint.rng_state()}
        every_rank = gather_to_main(mine, self.info)
        if self.folder is None:
            return
        state["log_lines"] = self.folder.log_length()  # a resume drops metric lines written after this point
        checkpoint.save({
            "task": "cyclegan", "config": to_dict(self.cfg), "meta": self.meta,
            **{name: net.state_dict() for name, net in self.nets.items()},
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "scaler": self.scaler.state_dict(),
            "ranks": every_rank, "state": dict(state),
        }, self.path)


def gather_to_main(obj: dict, info: dist.DistInfo) -> list[dict]:
    """[rank 0's obj, rank 1's obj, ...] on rank 0 (each rank's pools and RNG differ)."""
    if not info.distributed:
        return [obj]
    gathered = [None] * info.world_size if info.is_main else None
    torch_dist.gather_object(obj, gathered, dst=0)
    return gathered


def restore(cfg: CycleGANConfig, path: Path, info: dist.DistInfo, nets: dict[str, nn.Module], opt_g, opt_d, scaler,
            pools: tuple[ImagePool, ImagePool], meta: dict) -> dict:
    saved = checkpoint.load(path)
    if saved.get("task") != "cyclegan":
        raise UserError(f"{path} is not a CycleGAN checkpoint")
    changed = differences(from_dict(CycleGANConfig, saved["config"]), cfg, ignore=RESUME_MAY_CHANGE)
    if changed:
        raise UserError(f"--{changed[0].replace('_', '-')} differs from the run being resumed in {path.parent.parent}; "
                        "resume with the same settings")
    for key in ("world_size", "train_a", "train_b", "channels_a", "channels_b"):
        if saved["meta"].get(key) != meta[key]:
            raise UserError(f"the run in {path.parent.parent} was trained with {key.replace('_', ' ')} "
                            f"{saved['meta'].get(key)}, not {meta[key]}; resume it as it was started")
    for name, net in nets.items():
        net.load_state_dict(saved[name])
    opt_g.load_state_dict(saved["opt_g"])
    opt_d.load_state_dict(saved["opt_d"])
    scaler.load_state_dict(saved["scaler"])
    mine = saved["ranks"][info.rank]
    for pool, pool_state in zip(pools, mine["pools"]):
        pool.load_state_dict(pool_state, info.device)
    checkpoint.set_rng_state(mine["rng"])
    return {"skipped": 0, "window": new_window(), **saved["state"]}  # (checkpoints older than these two keys)


def print_main(info: dist.DistInfo, message: str) -> None:
    if info.is_main:
        tqdm.write(message)
