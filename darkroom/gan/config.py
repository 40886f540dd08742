"""The GAN's settings: one frozen dataclass, a help string per field, and `resolve`: what its `auto` values stand for.

    darkroom train gan --help
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from darkroom import precision
from darkroom.config import option, validate
from darkroom.errors import UserError
from darkroom.gan.losses import LOSSES
from darkroom.nets import dcgan

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
    workers: int = option(4, "DataLoader workers when streaming (at most the usable cores)", low=0)
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
