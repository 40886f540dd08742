"""darkroom train gan: WGAN (arXiv:1701.07875), WGAN-GP (arXiv:1704.00028) and DCGAN on DCGAN nets, one loop.

    darkroom train gan --preset fashion-mnist-cpu
    darkroom train gan --data path/to/images --image-size 64 --loss wgan-gp
    torchrun --nproc_per_node=8 -m darkroom train gan --preset lsun-64 --data bedroom_train_lmdb
Losses follow one sign convention (see gan_losses): both nets minimise; W = E[D(x)] - E[D(G(z))].
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from darkroom import checkpoint, dist, precision, runs
from darkroom.config import differences, from_dict, option, to_dict, validate
from darkroom.errors import UserError
from darkroom.nets import dcgan
from darkroom.optim import set_lr_momentum
from darkroom.train import gan_data, gan_toy
from darkroom.train.gan_losses import LOSSES, clip_weights_, critic_objective, critic_steps, generator_objective

# the papers' optimiser settings per loss: (optimizer, lr, beta1, beta2, n_critic, 100-step warm-up, critic norm)
LOSS_DEFAULTS = {
    "wgan": ("rmsprop", 5e-5, 0.0, 0.0, 5, True, "batch"),  # WGAN paper alg. 1 and its code
    "wgan-gp": ("adam", 1e-4, 0.0, 0.9, 5, False, "layer"),  # WGAN-GP alg. 1; no BatchNorm in the critic
    "dcgan": ("adam", 2e-4, 0.5, 0.999, 1, False, "batch"),  # Radford et al. 2015
}


@dataclass(frozen=True)
class GanConfig:
    data: str = option("fashion-mnist", "fashion-mnist, mnist, cifar10 (optionally :class,...), an image folder "
                       "(recursive), a .csv list of relative paths, an LSUN lmdb, or toy:ring8 / toy:grid25")
    data_root: str | None = option(None, "folder holding the built-in data files")
    sample: float = option(1.0, "fraction of the images to use (the lesson's 10% sample CSV)", above=0, high=1)
    image_size: int = option(64, "training size (square; any size >= 16, e.g. 28 for Fashion-MNIST)", low=16)
    load_size: int = option(0, "resize the shorter side to this, then random-crop --image-size (0 = image size)", low=0)
    channels: int = option(0, "image channels: 1, 3, or 0 = 1 when every image is grayscale", choices=(0, 1, 3))
    flip: bool = option(False, "random horizontal flips")
    stream: str = option("auto", "stream images from disk: auto (above 50,000 files or 1 GiB decoded), always, never",
                         choices=("auto", "always", "never"))
    workers: int = option(4, "DataLoader workers when streaming", low=0)
    on_bad_image: str = option("fail", "an unreadable or too small image: fail naming it, or skip and count",
                               choices=("skip", "fail"))
    allow_upscale: bool = option(False, "accept images smaller than the load size (upscaled; else they are bad images)")
    loss: str = option("wgan-gp", "wgan (clipping), wgan-gp (gradient penalty) or dcgan (non-saturating BCE)",
                       choices=LOSSES)
    arch: str = option("auto", "DCGAN layout: wgan (lesson), wgan-gp (no BatchNorm in the critic), dcgan; auto = the loss's",
                       choices=("auto", *dcgan.DCGAN_PRESETS))
    nz: int = option(100, "noise dimension", low=1)
    ngf: int = option(64, "generator width at its last hidden layer", low=1)
    ndf: int = option(64, "critic width at its first layer", low=1)
    n_extra_layers: int = option(1, "extra stride-1 3x3 blocks in both nets (the lesson uses 1)", low=0)
    critic_norm: str = option("auto", "critic normalisation: batch, layer, none; auto = the loss's (wgan-gp: layer)",
                              choices=("auto", *dcgan.NORMS))
    upsample: str = option("deconv", "generator upsampling: deconv, or nearest-conv (no checkerboard artifacts)",
                           choices=dcgan.UPSAMPLES)
    iterations: int = option(2000, "generator iterations to train", low=1)
    batch_size: int = option(64, "global batch size (split over ranks)", low=1)
    n_critic: int = option(0, "critic steps per generator step (0 = the loss's: 5, dcgan 1)", low=0)
    warmup_critic: str = option("auto", "100 critic steps while generator iterations < 25 and every 500th "
                                "(WGAN paper code): on, off, auto = on for wgan", choices=("auto", "on", "off"))
    lr_decay: str = option("none", "none, or linear: both learning rates fall linearly to 0 at --iterations (the "
                           "WGAN-GP paper's CIFAR-10 code)", choices=("none", "linear"))
    optimizer: str = option("auto", "adam, rmsprop, or auto = the loss's (wgan: rmsprop)", choices=("auto", "adam", "rmsprop"))
    lr: float = option(0.0, "learning rate of both nets (0 = the loss's: wgan 5e-5, wgan-gp 1e-4, dcgan 2e-4)", low=0)
    beta1: float | None = option(None, "Adam beta1 (default: wgan-gp 0.0, dcgan 0.5; WGAN-GP's alternative is 0.5)")
    beta2: float | None = option(None, "Adam beta2 (default: wgan-gp 0.9, dcgan 0.999)")
    clip: float = option(0.01, "wgan: clamp every critic parameter to [-clip, clip] before each critic step", above=0)
    gp_weight: float = option(10.0, "wgan-gp: gradient penalty weight lambda", low=0)
    precision: str = option("auto", "auto (bf16 on GPU, fp32 on CPU), fp32, bf16 or fp16", choices=precision.PRECISIONS)
    channels_last: bool = option(True, "channels_last memory format (faster convolutions on GPUs, and ~15% on "
                                 "AVX2 CPUs for these nets)")
    compile: bool = option(False, "torch.compile both nets")
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps")
    seed: int = option(0, "random seed")
    deterministic: bool = option(False, "deterministic algorithms (exact resume checks)")
    n_samples: int = option(64, "fixed-noise samples in each grid", low=1)
    sample_every: int = option(250, "write a fixed-noise sample grid every N generator iterations", low=1)
    log_every: int = option(50, "write a metrics line every N generator iterations", low=1)
    checkpoint_every: int = option(250, "checkpoint every N generator iterations (and at the end)", low=1)
    max_minutes: float = option(0.0, "stop (and checkpoint) after this many minutes of training (0 = no limit)", low=0)
    on_nan: str = option("stop", "non-finite loss: stop (last good checkpoint kept) or skip the step and count",
                         choices=("stop", "skip"))
    out: str | None = option(None, "run folder (default runs/gan-<time>)")
    resume: bool = option(False, "continue the run in --out from its last checkpoint")
    quiet: bool = option(False, "no progress bar")

    def __post_init__(self) -> None:
        validate(self)  # every field's type, choices and bounds (config.option)


CONFIG = GanConfig

PRESETS: dict[str, dict] = {
    # darkroom's CPU preset: <= 10 minutes on 2 quiet cores for 10/10 Fashion-MNIST classes (benchmarks/gan_cpu.py).
    # The critic runs ~87% of the arithmetic (5 steps, each 3 forwards + a double backward), so it is the narrower
    # net; betas (0.5, 0.9) as the WGAN-GP code's MNIST and CIFAR scripts; 28 px (the nets compute at 32).
    # lr 2e-4, twice the paper's: at 1,500 iterations 1e-4 gave 10/10 classes but KL 0.14, 2e-4 gave KL 0.033 (ngf 32);
    # ngf 48 costs ~15% more time and learns faster (KL 0.11 vs 0.16 at 750 iterations).
    # (lr and betas apply to whichever --loss is given: pass the paper's values with --loss wgan / dcgan)
    # 1,200 iterations: 2.1 it/s on 2 quiet EPYC cores (2026-11-28) puts 1,500 at 715 s, over the 10 minutes;
    # max_minutes 9.5 keeps slower machines inside them (the run then ends early, checkpointed). At batch 64, 1,200
    # iterations ended at class-histogram KL 0.053 (10/10 classes) at constant lr, 0.126 with linear decay to 0
    # (1,110 iterations in the cap): iterations matter most, so batch 32 (1,856 iterations in 570 s: 1.47x the rate)
    "fashion-mnist-cpu": dict(data="fashion-mnist", image_size=28, loss="wgan-gp", nz=64, ngf=48, ndf=24,
                              n_extra_layers=0, batch_size=32, iterations=2200, max_minutes=9.5, lr=2e-4, beta1=0.5, beta2=0.9,
                              sample_every=250, log_every=50, checkpoint_every=250),
    # the lesson's notebook: 64 px, the lesson's nets (conv -> LeakyReLU -> BN, one extra layer), RMSprop 1e-4,
    # clipping, 100-step warm-up; it resized LSUN to 128 and random-cropped 64 (add --load-size 128 for that)
    "lesson": dict(image_size=64, loss="wgan", arch="wgan", nz=100, ngf=64, ndf=64, n_extra_layers=1,
                   optimizer="rmsprop", lr=1e-4, clip=0.01, n_critic=5, warmup_critic="on", batch_size=64),
    # the WGAN paper (arXiv:1701.07875 alg. 1): RMSprop 5e-5, c = 0.01, n_critic 5, batch 64
    "wgan": dict(image_size=64, loss="wgan", arch="wgan", optimizer="rmsprop", lr=5e-5, clip=0.01, n_critic=5,
                 warmup_critic="on", batch_size=64),
    # WGAN-GP (arXiv:1704.00028 alg. 1): Adam 1e-4, betas (0, 0.9), lambda 10, n_critic 5, critic without BN
    "wgan-gp": dict(image_size=64, loss="wgan-gp", arch="wgan-gp", optimizer="adam", lr=1e-4, beta1=0.0, beta2=0.9,
                    gp_weight=10.0, n_critic=5, batch_size=64),
    # DCGAN (arXiv:1511.06434): Adam 2e-4, beta1 0.5, one D step per G step, non-saturating loss
    "dcgan": dict(image_size=64, loss="dcgan", arch="dcgan", n_extra_layers=0, optimizer="adam", lr=2e-4,
                  beta1=0.5, beta2=0.999, n_critic=1, batch_size=64),
    # LSUN bedrooms on GPUs (pass --data path/to/bedroom_train_lmdb): WGAN-GP at 64 px, streamed, bf16
    "lsun-64": dict(image_size=64, load_size=64, channels=3, loss="wgan-gp", iterations=100_000, batch_size=64,
                    workers=8, stream="always", on_bad_image="skip", sample_every=1000, log_every=100,
                    checkpoint_every=2000),
    # WGAN-GP's 2-D toys (arXiv:1704.00028 sec. 5.1, its gan_toy.py): MLPs, z of 2, lambda 0.1 ("smaller lambda
    # seems to help for toy tasks"), Adam (0.5, 0.9); --data toy:grid25 for the 25-Gaussian grid. 1,200 generator
    # iterations fit 2 minutes on 2 CPU cores with start-up (1,400 took 127-130 s); the paper trained 100k
    "toy": dict(data="toy:ring8", loss="wgan-gp", nz=2, batch_size=256, iterations=1200, gp_weight=0.1, beta1=0.5,
                beta2=0.9, n_samples=1000, sample_every=250, log_every=50, checkpoint_every=500),
    # the GPU benchmark: 64x64 WGAN-GP on Fashion-MNIST upscaled to 64 (make bench-gpu)
    "gpu-64": dict(data="fashion-mnist", image_size=64, loss="wgan-gp", nz=100, ngf=64, ndf=64, n_extra_layers=1,
                   batch_size=64, iterations=500, sample_every=500, log_every=50, checkpoint_every=500),
}


@dataclass(frozen=True)
class Resolved:
    """The settings a config's `auto` values stand for (computed, never stored in place of the config)."""
    optimizer: str
    lr: float
    betas: tuple[float, float]
    n_critic: int
    warmup: bool
    spec: dcgan.DCGANSpec


def resolve(cfg: GanConfig) -> Resolved:
    """Fill `auto` and 0 settings from the loss's paper defaults; refuse combinations that break the maths."""
    optimizer, lr, beta1, beta2, n_critic, warmup, norm = LOSS_DEFAULTS[cfg.loss]
    arch = cfg.loss if cfg.arch == "auto" else cfg.arch
    critic_norm = dcgan.DCGAN_PRESETS[arch].critic_norm if cfg.arch != "auto" else norm
    critic_norm = critic_norm if cfg.critic_norm == "auto" else cfg.critic_norm
    if cfg.loss == "wgan-gp" and critic_norm == "batch":
        raise UserError("--critic-norm batch cannot be used with --loss wgan-gp: the gradient penalty is per sample "
                        "and BatchNorm mixes samples (use layer or none)")
    spec = replace(dcgan.DCGAN_PRESETS[arch], nz=cfg.nz, ngf=cfg.ngf, ndf=cfg.ndf, n_extra_layers=cfg.n_extra_layers,
                   critic_norm=critic_norm, upsample=cfg.upsample)
    return Resolved(optimizer=optimizer if cfg.optimizer == "auto" else cfg.optimizer, lr=cfg.lr or lr,
                    betas=(beta1 if cfg.beta1 is None else cfg.beta1, beta2 if cfg.beta2 is None else cfg.beta2),
                    n_critic=cfg.n_critic or n_critic,
                    warmup=warmup if cfg.warmup_critic == "auto" else cfg.warmup_critic == "on", spec=spec)


def build_optimizer(name: str, parameters, lr: float, betas: tuple[float, float]) -> torch.optim.Optimizer:
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr)
    return torch.optim.Adam(parameters, lr=lr, betas=betas)


def build_nets(cfg: GanConfig, settings: Resolved, channels: int) -> tuple[nn.Module, nn.Module, dict]:
    """(G, D, meta): meta holds what gan_sample needs to rebuild G without the data."""
    if gan_toy.is_toy(cfg.data):
        G, D = gan_toy.build_nets(cfg.nz)
        return G, D, {"kind": "toy", "nz": cfg.nz, "hidden": gan_toy.HIDDEN, "data": cfg.data}
    spec = settings.spec
    G = dcgan.build_generator(spec, cfg.image_size, channels)
    D = dcgan.build_critic(spec, cfg.image_size, channels)
    return G, D, {"kind": "dcgan", "spec": dataclasses.asdict(spec), "size": cfg.image_size, "channels": channels,
                  "nz": spec.nz, "data": cfg.data}


def data_settings(cfg: GanConfig) -> gan_data.DataSettings:
    load_size = cfg.load_size or cfg.image_size
    if load_size < cfg.image_size:
        raise UserError(f"--load-size {load_size} is smaller than --image-size {cfg.image_size}")
    return gan_data.DataSettings(cfg.data, cfg.data_root, cfg.sample, cfg.image_size, load_size, cfg.channels, cfg.flip,
                                 cfg.stream, cfg.workers, cfg.on_bad_image, cfg.allow_upscale, cfg.seed)


def setup_runtime(cfg: GanConfig) -> tuple[dist.DistInfo, str]:
    """Process group, seed, determinism and precision; (DistInfo, precision name)."""
    info = dist.setup(cfg.device)
    torch.manual_seed(cfg.seed)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif info.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if cfg.batch_size % info.world_size:
        raise UserError(f"--batch-size {cfg.batch_size} must be divisible by the {info.world_size} ranks")
    return info, precision.resolve(cfg.precision, info.device)


def run(cfg: GanConfig, argv: list[str] | None = None) -> dict:
    """Train, write samples/metrics/checkpoints into the run folder, return the final metrics."""
    settings = resolve(cfg)
    info, precision_name = setup_runtime(cfg)
    if gan_toy.is_toy(cfg.data):
        batches = gan_toy.ToyBatches(cfg.data, cfg.batch_size, info.rank, info.world_size, cfg.seed, info.device)
    else:
        batches = gan_data.build_batches(data_settings(cfg), cfg.batch_size, info.rank, info.world_size, info.device)
    G, D, meta = build_nets(cfg, settings, batches.channels)
    memory_format = torch.channels_last if cfg.channels_last and meta["kind"] == "dcgan" else torch.contiguous_format
    G, D = G.to(info.device, memory_format=memory_format), D.to(info.device, memory_format=memory_format)
    opt_g = build_optimizer(settings.optimizer, G.parameters(), settings.lr, settings.betas)
    opt_d = build_optimizer(settings.optimizer, D.parameters(), settings.lr, settings.betas)
    scaler_g = precision.make_scaler(precision_name, info.device)
    scaler_d = precision.make_scaler(precision_name, info.device)
    noise = torch.Generator().manual_seed(cfg.seed + 1)  # z and GP interpolation weights, global batch on every rank
    fixed_z = torch.randn(cfg.n_samples, meta["nz"], generator=torch.Generator().manual_seed(cfg.seed + 2))

    run_dir = dist.broadcast_object(str(cfg.out or runs.default_run_dir("gan")))
    cfg = replace(cfg, out=run_dir)
    folder = runs.RunFolder(run_dir, "gan") if info.is_main else None
    state = new_state()
    if cfg.resume and (Path(run_dir) / "checkpoints" / "last.pt").exists():
        state = restore(cfg, run_dir, G, D, opt_g, opt_d, scaler_g, scaler_d, noise, batches)
        status = dist.broadcast_object(runs.read_status(run_dir) if info.is_main else None)
        if status.get("status") == "finished" and not has_work(cfg, state):
            return already_finished(cfg, info, folder, state, status)
        if folder:
            folder.truncate_log(state["log_lines"])
            folder.set_status("running", resumes=runs.read_status(run_dir).get("resumes", 0) + 1)
        print_main(info, f"resumed {run_dir} at generator iteration {state['iteration']} of {cfg.iterations}")
    elif folder:
        if folder.checkpoint_path.exists():
            raise UserError(f"run folder {run_dir} already holds a run; pass --resume to continue it or pick another --out")
        folder.write_config(to_dict(cfg), argv)
        folder.truncate_log(0)  # a killed first life (no checkpoint yet) left lines this run writes again
        folder.set_status("running", resumes=0)
        if cfg.resume:  # a rerun job passes --resume every time; say which it did
            print_main(info, f"no checkpoint in {run_dir} yet: --resume starts a fresh run")
    meta.update(source=batches.source, images=len(batches), loss=cfg.loss)

    g_net = nn.parallel.DistributedDataParallel(G) if info.distributed else G
    d_net = nn.parallel.DistributedDataParallel(D) if info.distributed else D
    g_net, d_net = precision.maybe_compile(g_net, cfg.compile), precision.maybe_compile(d_net, cfg.compile)
    print_main(info, f"training {cfg.loss} on {batches.source} ({len(batches)} images, {batches.kind}) for "
               f"{cfg.iterations} generator iterations, batch {cfg.batch_size} on {info.world_size} x "
               f"{info.device.type}, {precision_name}, {settings.optimizer} lr {settings.lr:g}")
    loop = Loop(cfg, settings, info, precision_name, G, D, g_net, d_net, opt_g, opt_d, scaler_g, scaler_d, noise,
                batches, memory_format)
    saver = lambda: save(folder, cfg, G, D, opt_g, opt_d, scaler_g, scaler_d, noise, batches, state, meta, fixed_z)  # noqa: E731
    try:
        result = train(cfg, info, loop, state, folder, saver, fixed_z, meta)
    except UserError as error:  # a NaN stop or a bad streamed image: say so in status.json, keep the checkpoint
        if folder:
            folder.set_status("failed", error=str(error), iteration=state["iteration"])
        raise
    if batches.skipped:
        print_main(info, f"skipped {batches.skipped} unreadable or too small images of {batches.source}")
    if folder:
        folder.set_status("finished", **{k: v for k, v in result.items() if isinstance(v, float)})
        folder.close()
    print_main(info, f"done: {state['iteration']} generator iterations, W {result.get('wasserstein', float('nan')):.4f}, "
               f"{state['train_time']:.1f} s training; run folder {run_dir}")
    del loop, g_net, d_net  # the DDP wrappers, before dist.cleanup
    dist.cleanup()
    return {**result, "run_dir": run_dir}


def new_state() -> dict:
    # result: the last line's numbers, for status.json also after a kill between the last checkpoint and the end
    return {"iteration": 0, "critic_iterations": 0, "skipped": 0, "log_lines": 0, "train_time": 0.0, "result": {},
            "interval": {"sums": {}, "count": 0, "critic_steps": 0, "time": 0.0}}


def budget_seconds(cfg: GanConfig) -> float:
    return cfg.max_minutes * 60 if cfg.max_minutes > 0 else math.inf


def has_work(cfg: GanConfig, state: dict) -> bool:
    return state["iteration"] < cfg.iterations and state["train_time"] < budget_seconds(cfg)


def already_finished(cfg: GanConfig, info: dist.DistInfo, folder, state: dict, status: dict) -> dict:
    """--resume of a finished run with nothing left to train: say so; status.json and metrics.jsonl stay as they are."""
    print_main(info, f"{cfg.out} already finished at generator iteration {state['iteration']}: nothing to do (raise "
                     "--iterations or --max-minutes to train on)")
    if folder:
        folder.close()  # the lock (and report.html, rebuilt from the folder as it is)
    dist.cleanup()
    numbers = {key: value for key, value in status.items() if isinstance(value, float) and key not in ("updated", "started")}
    return {**numbers, "run_dir": cfg.out}


@dataclass
class Loop:
    """Everything a generator iteration touches: `critic_step()` n_critic times, then `generator_step()` (train())."""
    cfg: GanConfig
    settings: Resolved
    info: dist.DistInfo
    precision_name: str
    G: nn.Module
    D: nn.Module
    g_net: nn.Module  # G, or its DDP wrapper
    d_net: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler_g: torch.amp.GradScaler
    scaler_d: torch.amp.GradScaler
    noise: torch.Generator
    batches: object
    memory_format: torch.memory_format

    def draw(self, shape: tuple[int, ...], uniform: bool = False) -> torch.Tensor:
        """This rank's slice of a global draw (global batch first), so any rank count gives the same run."""
        values = (torch.rand if uniform else torch.randn)(shape, generator=self.noise)
        per_rank = shape[0] // self.info.world_size
        return values[self.info.rank * per_rank:(self.info.rank + 1) * per_rank].to(self.info.device)

    def critic_step(self) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        real = self.batches.next_batch().contiguous(memory_format=self.memory_format)  # (b, C, H, W) in [-1, 1]
        if cfg.loss == "wgan":
            clip_weights_(self.D, cfg.clip)  # before each critic step, as the WGAN code
        z = self.draw((cfg.batch_size, self.settings.spec.nz))  # (b, nz)
        with torch.no_grad(), precision.autocast(self.info.device, self.precision_name):
            fake = self.G(z).float()  # (b, C, H, W); no graph into G
        alpha = self.draw((cfg.batch_size,), uniform=True) if cfg.loss == "wgan-gp" else None
        scale = self.scaler_d.get_scale() if self.scaler_d.is_enabled() else 1.0
        objective, stats = critic_objective(self.d_net, real, fake, cfg.loss, cfg.gp_weight, self.precision_name, scale, alpha)
        return self._step(objective, self.opt_d, self.scaler_d, None, stats)

    def generator_step(self) -> dict[str, torch.Tensor]:
        z = self.draw((self.cfg.batch_size, self.settings.spec.nz))
        with precision.autocast(self.info.device, self.precision_name):
            fake = self.g_net(z)  # (b, C, H, W), graph into G
        # the bare critic, not its DDP wrapper: no critic gradient is reduced, and backward(inputs=G's
        # parameters) leaves the critic's .grad alone (the lesson froze it with set_trainable(netD, False))
        objective = generator_objective(self.D, fake.contiguous(memory_format=self.memory_format), self.cfg.loss,
                                        self.precision_name)
        return self._step(objective, self.opt_g, self.scaler_g, list(self.G.parameters()),
                          {"generator_loss": objective.detach()})

    def _step(self, objective, optimizer, scaler, inputs, stats: dict) -> dict[str, torch.Tensor]:
        if self.precision_name == "fp16":
            # dynamic loss scaling: an overflow (inf/NaN, also in the penalty's scaled input gradients) makes
            # GradScaler skip the step and halve the scale; such a step is counted, its statistics left out
            finite = bool(torch.isfinite(objective.detach()))
            scaler.scale(objective).backward(inputs=inputs)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            return stats if finite else {"skipped": torch.ones(())}
        if self.cfg.on_nan == "skip" and not dist.finite_on_every_rank(objective):
            optimizer.zero_grad(set_to_none=True)
            return {"skipped": torch.ones(())}
        objective.backward(inputs=inputs)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return stats


def train(cfg: GanConfig, info: dist.DistInfo, loop: Loop, state: dict, folder, saver, fixed_z, meta) -> dict:
    bar = tqdm(total=cfg.iterations, initial=state["iteration"], desc="gan", disable=cfg.quiet or not info.is_main,
               leave=False)
    result: dict = dict(state.get("result", {}))
    budget = budget_seconds(cfg)
    while has_work(cfg, state):
        started = time.time()
        steps = critic_steps(state["iteration"], loop.settings.n_critic, loop.settings.warmup)
        for optimizer in (loop.opt_g, loop.opt_d):
            set_lr_momentum(optimizer, lr_at(cfg, loop.settings.lr, state["iteration"]), None)
        for _ in range(steps):
            accumulate(state, loop.critic_step())
        accumulate(state, loop.generator_step())
        state["iteration"] += 1
        state["critic_iterations"] += steps
        elapsed = time.time() - started
        state["train_time"] += elapsed
        state["interval"]["count"] += 1
        state["interval"]["critic_steps"] += steps
        state["interval"]["time"] += elapsed
        bar.update(1)
        last = state["iteration"] == cfg.iterations or state["train_time"] >= budget
        if state["iteration"] % cfg.log_every == 0 or last:
            result = log_interval(cfg, info, state, folder, bar, loop.batches.skipped)
        if info.is_main and (state["iteration"] % cfg.sample_every == 0 or last):
            write_samples(loop.G, fixed_z, folder, state["iteration"], meta, info.device)
            if meta["kind"] == "toy":  # the toy's mode counts are cheap: log them beside the losses
                counts = gan_toy.coverage(render(loop.G, fixed_z, info.device), cfg.data)
                folder.log({"iteration": state["iteration"], **counts})
                state["log_lines"] = folder.log_length()
                result.update(counts)
        state["result"] = result
        if state["iteration"] % cfg.checkpoint_every == 0 or last:
            saver()
    bar.close()
    return result


def lr_at(cfg: GanConfig, lr: float, iteration: int) -> float:
    """Both nets' learning rate during generator iteration `iteration` (0-based): constant, or linear to 0."""
    return lr if cfg.lr_decay == "none" else lr * max(0.0, 1.0 - iteration / cfg.iterations)


def accumulate(state: dict, stats: dict[str, torch.Tensor]) -> None:
    sums = state["interval"]["sums"]
    for key, value in stats.items():
        count_key = f"{key}#n"
        sums[key] = sums.get(key, 0.0) + value.detach().float()  # stays on the device: no sync per step
        sums[count_key] = sums.get(count_key, 0.0) + 1


def check_finite(cfg: GanConfig, state: dict, values: list[float]) -> None:
    """--on-nan stop: raise before anything non-finite reaches a checkpoint or the log."""
    if cfg.on_nan == "stop" and not all(math.isfinite(value) for value in values):
        first = state["iteration"] - state["interval"]["count"]
        kept = (f"the last good checkpoint in {cfg.out}/checkpoints is intact" if (Path(cfg.out) / "checkpoints" / "last.pt").exists()
                else "no checkpoint had been written yet")
        raise UserError(f"the GAN losses became non-finite between generator iterations {first} and "
                        f"{state['iteration']}; {kept} (lower --lr, or pass --on-nan skip)")


def log_interval(cfg: GanConfig, info: dist.DistInfo, state: dict, folder, bar, bad_images: int) -> dict:
    """Average the interval's statistics over steps and ranks; stop on a non-finite loss (before any checkpoint)."""
    interval = state["interval"]
    sums = interval["sums"]
    names = sorted(key for key in sums if not key.endswith("#n"))
    means = torch.tensor([float(sums[key]) / max(1.0, float(sums[f"{key}#n"])) for key in names], dtype=torch.float64)
    dist.all_reduce_mean(means)
    record = {"iteration": state["iteration"], "critic_iterations": state["critic_iterations"],
              "lr": lr_at(cfg, resolve(cfg).lr, state["iteration"] - 1)}
    record.update({key: float(value) for key, value in zip(names, means) if key != "skipped"})
    check_finite(cfg, state, [record[key] for key in ("critic_loss", "generator_loss") if key in record])
    state["skipped"] += int(round(float(sums.get("skipped", 0.0))))
    record.update(skipped_steps=state["skipped"], bad_images=bad_images, it_per_s=interval["count"] / max(1e-9, interval["time"]),
                  critic_steps_per_s=interval["critic_steps"] / max(1e-9, interval["time"]),
                  train_time=state["train_time"])
    state["interval"] = {"sums": {}, "count": 0, "critic_steps": 0, "time": 0.0}
    if info.is_main:
        bar.set_postfix(d=f"{record.get('critic_loss', float('nan')):.3f}", g=f"{record.get('generator_loss', float('nan')):.3f}",
                        W=f"{record.get('wasserstein', float('nan')):.3f}", it_s=f"{record['it_per_s']:.2f}")
    if folder:
        folder.log(record)
        state["log_lines"] = folder.log_length()
    return record


@torch.no_grad()
def render(G: nn.Module, z: torch.Tensor, device: torch.device) -> torch.Tensor:
    """G's outputs for z in eval mode (BatchNorm's running statistics), float32 on the CPU."""
    was_training = G.training
    G.eval()
    out = torch.cat([G(chunk.to(device)).float().cpu() for chunk in z.split(256)])
    G.train(was_training)
    return out


def write_samples(G: nn.Module, fixed_z: torch.Tensor, folder, iteration: int, meta: dict, device: torch.device) -> None:
    from darkroom.report.grid import save_grid

    images = render(G, fixed_z, device)
    path = folder.samples_dir / f"iter_{iteration:06d}.png"
    if meta["kind"] == "toy":
        gan_toy.save_scatter(images, meta["data"], path)
    else:
        save_grid(images, path, nrow=int(math.ceil(math.sqrt(len(images)))), scale=max(1, 64 // meta["size"]))


def save(folder, cfg, G, D, opt_g, opt_d, scaler_g, scaler_d, noise, batches, state, meta, fixed_z) -> None:
    sums = state["interval"]["sums"]
    sums.update({key: float(value) for key, value in sums.items()})  # device tensors -> numbers (one sync)
    check_finite(cfg, state, [sums.get(key, 0.0) for key in ("critic_loss", "generator_loss")])
    if folder is None:
        return
    checkpoint.save({
        "task": "gan", "config": to_dict(cfg), "meta": meta, "generator": G.state_dict(), "critic": D.state_dict(),
        "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "scaler_g": scaler_g.state_dict(),
        "scaler_d": scaler_d.state_dict(), "noise": noise.get_state(), "batches": batches.state_dict(),
        "rng": checkpoint.rng_state(), "state": state, "fixed_z": fixed_z,
    }, folder.checkpoint_path)


def restore(cfg, run_dir, G, D, opt_g, opt_d, scaler_g, scaler_d, noise, batches) -> dict:
    saved = checkpoint.load(Path(run_dir) / "checkpoints" / "last.pt")
    if saved.get("task") != "gan":
        raise UserError(f"{run_dir} holds a {saved.get('task')} run, not a GAN run")
    ignore = ("resume", "out", "quiet", "device", "iterations", "max_minutes", "workers")
    changed = differences(from_dict(GanConfig, saved["config"]), cfg, ignore=ignore)
    if changed:
        raise UserError(f"--{changed[0].replace('_', '-')} differs from the run being resumed in {run_dir}; "
                        "resume with the same settings")
    G.load_state_dict(saved["generator"])
    D.load_state_dict(saved["critic"])
    opt_g.load_state_dict(saved["opt_g"])
    opt_d.load_state_dict(saved["opt_d"])
    scaler_g.load_state_dict(saved["scaler_g"])
    scaler_d.load_state_dict(saved["scaler_d"])
    noise.set_state(saved["noise"])
    batches.load_state_dict(saved["batches"])
    checkpoint.set_rng_state(saved["rng"])
    return saved["state"]


def print_main(info: dist.DistInfo, message: str) -> None:
    if info.is_main:
        tqdm.write(message)
