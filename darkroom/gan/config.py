"""The GAN's settings: one frozen dataclass, a help string per field, and `resolve`: what its `auto` values stand for.

    darkroom train gan --help
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from darkroom import precision
from darkroom.config import option, validate
from darkroom.errors import UserError
from darkroom.gan.augment import OPS as AUGMENT_OPS
from darkroom.gan.augment import parse_policy
from darkroom.gan.losses import LOSSES
from darkroom.nets import dcgan

# the papers' optimiser settings per loss: (optimizer, lr, beta1, beta2, n_critic, 100-step warm-up, critic norm)
LOSS_DEFAULTS = {
    "wgan": ("rmsprop", 5e-5, 0.0, 0.0, 5, True, "batch"),  # WGAN paper alg. 1 and its code
    "wgan-gp": ("adam", 1e-4, 0.0, 0.9, 5, False, "layer"),  # WGAN-GP alg. 1; no BatchNorm in the critic
    "dcgan": ("adam", 2e-4, 0.5, 0.999, 1, False, "batch"),  # Radford et al. 2015
    # SNGAN's own code (pfnet-research/sngan_projection configs/sn_cifar10_unconditional.yml: hinge, Adam alpha 2e-4,
    # beta1 0.0, beta2 0.9, n_dis 5); its critic has no normalisation layer (pair with --spectral-norm)
    "hinge": ("adam", 2e-4, 0.0, 0.9, 5, False, "none"),
}
# --arch auto: the loss's DCGAN layout; hinge takes WGAN-GP's (no BatchNorm in the critic, the lesson's block order)
AUTO_ARCH = {"wgan": "wgan", "wgan-gp": "wgan-gp", "dcgan": "dcgan", "hinge": "wgan-gp"}


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
    workers: int = option(4, "DataLoader workers when streaming (at most the usable cores)", low=0)
    on_bad_image: str = option("fail", "an unreadable or too small image: fail naming it, or skip and count",
                               choices=("skip", "fail"))
    allow_upscale: bool = option(False, "accept images smaller than the load size (upscaled; else they are bad images)")
    loss: str = option("wgan-gp", "wgan (clipping), wgan-gp (gradient penalty), dcgan (non-saturating BCE) or hinge "
                       "(SNGAN, BigGAN; pair it with --spectral-norm)", choices=LOSSES)
    arch: str = option("auto", "DCGAN layout: wgan (lesson), wgan-gp (no BatchNorm in the critic), dcgan; auto = "
                       "the loss's (hinge: wgan-gp's)",
                       choices=("auto", *dcgan.DCGAN_PRESETS))
    nz: int = option(100, "noise dimension", low=1)
    ngf: int = option(64, "generator width at its last hidden layer", low=1)
    ndf: int = option(64, "critic width at its first layer", low=1)
    n_extra_layers: int = option(1, "extra stride-1 3x3 blocks in both nets (the lesson uses 1)", low=0)
    critic_norm: str = option("auto", "critic normalisation: batch, layer, none; auto = the loss's (wgan-gp: layer, "
                              "hinge: none)", choices=("auto", *dcgan.NORMS))
    spectral_norm: bool = option(False, "divide every critic weight by its largest singular value (SNGAN, "
                                 "arXiv:1802.05957; one power iteration per critic call); not with --critic-norm batch")
    packing: int = option(1, "PacGAN (arXiv:1712.04086): the critic judges m samples at once, stacked along the "
                          "channels (1 = off); --batch-size must divide by m times the ranks", low=1)
    diffaugment: str = option("", "DiffAugment (arXiv:2006.10738): random color, translation and/or cutout, e.g. "
                              "color,translation,cutout, of real and fake images before the critic, in both nets' "
                              "steps (\"\" = off; images only)")
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
    lr: float = option(0.0, "generator learning rate, and the critic's unless --lr-d is given (0 = the loss's: wgan "
                       "5e-5, wgan-gp 1e-4, dcgan and hinge 2e-4)", low=0)
    lr_d: float = option(0.0, "critic learning rate, for two time-scale updates (TTUR, arXiv:1706.08500; 0 = the "
                         "generator's)", low=0)
    beta1: float | None = option(None, "Adam beta1 of both nets (default: wgan-gp and hinge 0.0, dcgan 0.5; WGAN-GP's "
                                 "alternative is 0.5)")
    beta2: float | None = option(None, "Adam beta2 of both nets (default: wgan-gp and hinge 0.9, dcgan 0.999)")
    clip: float = option(0.01, "wgan: clamp every critic parameter to [-clip, clip] before each critic step", above=0)
    gp_weight: float = option(10.0, "wgan-gp: gradient penalty weight lambda", low=0)
    ema: float = option(0.0, "decay of an exponential moving average of the generator's weights per generator "
                        "iteration, e.g. 0.999 (0 = off); sample grids, darkroom sample and eval gan use the average",
                        low=0)
    ema_rampup: float = option(0.0, "--ema: cap the average's half-life at this fraction of the generator iterations "
                               "so far, so it forgets the initial weights early (StyleGAN2-ADA's ema_rampup, 0.05 "
                               "there; 0 = no cap)", low=0)
    precision: str = option("auto", "auto (bf16 on GPU, fp32 on CPU), fast (bf16 where the device multiplies bf16 in hardware: GPUs, AMX or AVX512-BF16 CPUs; else fp32), fp32, bf16 or fp16", choices=precision.PRECISIONS)
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


# settings a --resume may change (--iterations and --max-minutes: to train on)
RESUME_MAY_CHANGE = ("iterations", "max_minutes", "workers")


@dataclass(frozen=True)
class Resolved:
    """The settings a config's `auto` values stand for (computed, never stored in place of the config)."""
    optimizer: str
    lr: float
    betas: tuple[float, float]
    n_critic: int
    warmup: bool
    spec: dcgan.DCGANSpec
    lr_d: float  # the critic's learning rate (TTUR); lr is the generator's


def resolve(cfg: GanConfig) -> Resolved:
    """Fill `auto` and 0 settings from the loss's paper defaults; refuse combinations that break the maths."""
    optimizer, lr, beta1, beta2, n_critic, warmup, norm = LOSS_DEFAULTS[cfg.loss]
    arch = AUTO_ARCH[cfg.loss] if cfg.arch == "auto" else cfg.arch
    critic_norm = dcgan.DCGAN_PRESETS[arch].critic_norm if cfg.arch != "auto" else norm
    critic_norm = critic_norm if cfg.critic_norm == "auto" else cfg.critic_norm
    if cfg.loss == "wgan-gp" and critic_norm == "batch":
        raise UserError("--critic-norm batch cannot be used with --loss wgan-gp: the gradient penalty is per sample "
                        "and BatchNorm mixes samples (use layer or none)")
    if cfg.spectral_norm and critic_norm == "batch":
        where = ("--critic-norm batch" if cfg.critic_norm != "auto" else
                 f"the default of --loss {cfg.loss}" if cfg.arch == "auto" else f"the default of --arch {cfg.arch}")
        raise UserError(f"--spectral-norm cannot be used with a BatchNorm critic ({where}): SNGAN's critic has no "
                        "BatchNorm; pass --critic-norm none or layer")
    check_extras(cfg)
    spec = replace(dcgan.DCGAN_PRESETS[arch], nz=cfg.nz, ngf=cfg.ngf, ndf=cfg.ndf, n_extra_layers=cfg.n_extra_layers,
                   critic_norm=critic_norm, upsample=cfg.upsample, spectral_norm=cfg.spectral_norm,
                   packing=cfg.packing)
    lr = cfg.lr or lr
    return Resolved(optimizer=optimizer if cfg.optimizer == "auto" else cfg.optimizer, lr=lr,
                    betas=(beta1 if cfg.beta1 is None else cfg.beta1, beta2 if cfg.beta2 is None else cfg.beta2),
                    n_critic=cfg.n_critic or n_critic,
                    warmup=warmup if cfg.warmup_critic == "auto" else cfg.warmup_critic == "on", spec=spec,
                    lr_d=cfg.lr_d or lr)


def check_extras(cfg: GanConfig) -> None:
    """The EMA, DiffAugment and packing settings, alone and together with the data (one sentence each)."""
    if cfg.ema >= 1:
        raise UserError(f"--ema {cfg.ema:g} must be below 1 (a decay such as 0.999; 0 turns the average off)")
    if cfg.ema_rampup > 0 and cfg.ema == 0:
        raise UserError("--ema-rampup needs --ema: it ramps the decay of a generator average that is off")
    unknown = [name.strip() for name in cfg.diffaugment.split(",") if name.strip() not in ("", "none", *AUGMENT_OPS)]
    if unknown:
        raise UserError(f"--diffaugment {cfg.diffaugment}: {unknown[0]!r} is not one of {', '.join(AUGMENT_OPS)}")
    if parse_policy(cfg.diffaugment) and cfg.data.startswith("toy:"):
        raise UserError(f"--diffaugment transforms images and --data {cfg.data} is 2-D points; leave it out for toys")
    check_packing(cfg, 1)


def check_packing(cfg: GanConfig, world_size: int) -> None:
    """PacGAN groups are consecutive samples of a rank's slice: each rank's share must split into whole groups."""
    if cfg.batch_size % (cfg.packing * world_size):
        ranks = f" times the {world_size} ranks ({cfg.packing * world_size})" if world_size > 1 else ""
        raise UserError(f"--batch-size {cfg.batch_size} must be divisible by --packing {cfg.packing}{ranks}: each "
                        f"critic input packs {cfg.packing} samples of one rank")
