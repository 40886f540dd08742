"""CycleGAN's settings: one frozen dataclass, a help string per field, and the checks that need no data.

    darkroom train cyclegan --help
"""
from __future__ import annotations

from dataclasses import dataclass

from darkroom import precision
from darkroom.config import option, validate
from darkroom.cyclegan import data as data_io
from darkroom.cyclegan.losses import GAN_LOSSES
from darkroom.errors import UserError
from darkroom.nets.cyclegan import PADDINGS, UPSAMPLES

GENERATOR_BLOCKS = {"resnet_9blocks": 9, "resnet_6blocks": 6}  # the reference's names
# settings a --resume may change
RESUME_MAY_CHANGE = ("workers", "stop_after", "on_nan")
SMALL_IMAGES = 64  # px: domains of images no larger get the small-images preset when no --preset is given
DEFAULT_DATA = "fashion-mnist:sneaker,ankle-boot"


@dataclass(frozen=True)
class CycleGANConfig:
    data: str = option(DEFAULT_DATA, "two classes of fashion-mnist/mnist/cifar10, a folder or "
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
    on_bad_image: str = option("fail", "an undecodable image: fail (one sentence, checkpoint kept) or skip it, named "
                               "in the log and counted as skipped_images",
                               choices=("fail", "skip"))
    generator: str = option("resnet_9blocks", "generator: " + ", ".join(GENERATOR_BLOCKS), choices=tuple(GENERATOR_BLOCKS))
    blocks: int = option(0, "residual blocks of the generator (0: its name's 6 or 9)", low=0)
    ngf: int = option(64, "generator filters in the first layer", low=1)
    ndf: int = option(64, "discriminator filters in the first layer", low=1)
    d_layers: int = option(3, "PatchGAN stride-2 layers (3: 70x70 patches)", low=1)
    input_norm: bool = option(True, "instance-normalise the generators' first conv, as the reference; off lets them "
                              "see their input's contrast, which that norm divides out")
    padding: str = option("reflect", "generators' stride-1 convs after the first: reflect-padded (the reference) or "
                          "zero-padded by the conv itself (fewer copies: about 13% more images/s at 28 px on 2 CPU "
                          "cores); the first conv always reflects the image", choices=PADDINGS)
    upsample: str = option("deconv", "generator upsampling: deconv (reference) or nearest-conv", choices=UPSAMPLES)
    gan_loss: str = option("lsgan", "adversarial loss: lsgan (reference) or vanilla (BCE)", choices=GAN_LOSSES)
    lambda_a: float = option(10.0, "weight of the A -> B -> A cycle loss", low=0)
    lambda_b: float = option(10.0, "weight of the B -> A -> B cycle loss", low=0)
    identity: float = option(0.5, "identity loss weight relative to lambda (0 = off)", low=0)
    cycle_target: float = option(0.0, "adapt each direction's cycle weight (from --lambda-a/--lambda-b, up to "
                                 "--cycle-span times, down to 1/--cycle-span-down) so its cycle L1 on [-1, 1] settles "
                                 "at this value (0 = fixed weights, the reference)", low=0)
    cycle_span: float = option(3.0, "--cycle-target: how far above its lambda each cycle weight may rise, as a factor",
                               low=1.0)
    cycle_span_down: float = option(0.0, "--cycle-target: how far below its lambda each cycle weight may fall, as a "
                                    "factor (0: --cycle-span)", low=0.0)
    cycle_fall: float = option(1.0, "--cycle-target: how many times faster a cycle weight falls than it rises (every "
                               "cycle starts above any target because the nets are untrained; weights that climbed "
                               "then come back down sooner)", above=0.0)
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
    precision: str = option("auto", "auto (bf16 on GPU, fp32 on CPU), fast (bf16 where the device multiplies bf16 in hardware: GPUs, AMX or AVX512-BF16 CPUs; else fp32), fp32, bf16 or fp16 (dynamic loss scaling)",
                            choices=precision.PRECISIONS)
    channels_last: bool = option(False, "channels_last memory format (faster on recent GPUs; about 5% on AMX CPUs at 28 px)")
    memory_lean: bool = option(False, "recompute the residual blocks in backward (gradient checkpointing)")
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps")
    processes: int = option(1, "CPU: train as N data-parallel processes on this machine (gloo), each with its share "
                               "of the cores and its own pools; ignored on GPUs and under torchrun")
    workers: int = option(4, "data loading processes (0 = in the training process; at most the usable cores)", low=0)
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


def check_config(cfg: CycleGANConfig, world_size: int) -> None:
    """Settings that cannot work, each named in one sentence before any data is read."""
    if cfg.crop_size < 8 or cfg.crop_size % 4:
        raise UserError(f"--crop-size {cfg.crop_size} must be a multiple of 4 and at least 8 (the generator halves it twice)")
    if cfg.crop_size > cfg.load_size:
        raise UserError(f"--crop-size {cfg.crop_size} is larger than --load-size {cfg.load_size}: the random crop "
                        "must fit inside the resized image")
    if patch_sides(cfg.crop_size, cfg.d_layers)[1] < 1:
        raise UserError(f"--crop-size {cfg.crop_size} is too small for a --d-layers {cfg.d_layers} discriminator")
    if cfg.batch_size % world_size:
        raise UserError(f"--batch-size {cfg.batch_size} must be a multiple of the {world_size} ranks")
    if cfg.epochs + cfg.epochs_decay <= 0:
        raise UserError("--epochs and --epochs-decay are both 0: there is nothing to train")


def default_preset(values: dict) -> tuple[str, dict, str] | None:
    """With no --preset: (preset, the image size over it, a sentence) where the domains' images are known to be at most
    SMALL_IMAGES px (the reference's 286 px resize would train a 28 px set at 100 times the cost), else None: the
    reference's defaults."""
    side = data_io.native_side(values.get("data", DEFAULT_DATA), values.get("data_a"), values.get("data_b"))
    if side is None or side > SMALL_IMAGES or side < 8:
        return None
    crop = side // 4 * 4  # the generator halves the side twice
    layers = patch_layers(int(values.get("crop_size") or crop))
    return ("small-images", {"load_size": side, "crop_size": crop, "d_layers": layers},
            f"{side} px images and no --preset: training with the small-images preset at {crop} px "
            "(--preset reference for the reference's 286 px resize and 256 px crops)")


def patch_layers(crop: int) -> int:
    """The PatchGAN's stride-2 layers for `crop` px images: the most, up to the reference's 3, that leave each of its
    instance norms a map of at least 4 x 4 (patch_sides). At 28 px three would normalise 3 x 3 and 2 x 2 maps and give
    one logit for the whole image; two give a 5 x 5 map of 34 px patches (bag -> ankle boot 93.8% -> 97.5% judged,
    benchmarks/README.md, seventh round)."""
    for layers in (3, 2):
        if patch_sides(crop, layers)[0] >= 4:
            return layers
    return 1


def patch_sides(crop: int, layers: int) -> tuple[int, int]:
    """(the side of the smallest map an instance norm sees, the side of the logit map) of a PatchGAN with `layers`
    stride-2 convs on crop x crop images: each 4 x 4 stride-2 padding-1 conv halves the side, and the two 4 x 4
    stride-1 convs after them take 1 each (the first of them is normalised)."""
    side = crop >> layers
    return side - 1, side - 2
