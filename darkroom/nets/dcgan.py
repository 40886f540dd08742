"""DCGAN generator and critic (arXiv:1511.06434) in the lesson-12 WGAN layout (arXiv:1701.07875).

Square images of any size >= 16: multiples of 16 are built directly; any other size (28 for MNIST) is
built at the next multiple of 16, the generator center-crops its output and the critic zero-pads its input.
Critics return one score per sample, shape (B,): the gradient penalty and DDP need them; losses take the mean.
Critic options: spectral normalisation of every conv (SNGAN, arXiv:1802.05957); PacGAN packing (arXiv:1712.04086),
m samples per critic input stacked along the channels (gan.augment.pack), one score per packed input.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from darkroom.errors import UserError

NORMS = ("batch", "layer", "none")
ORDERS = ("conv-act-norm", "conv-norm-act")
UPSAMPLES = ("deconv", "nearest-conv")


@dataclasses.dataclass(frozen=True)
class DCGANSpec:
    """Architecture knobs shared by a generator and its critic; size and channels come from the data."""

    nz: int = 100  # noise dimension; z is (B, nz) (or (B, nz, 1, 1) as in the lesson)
    ngf: int = 64  # generator width at its last hidden layer; doubles towards the noise end
    ndf: int = 64  # critic width at its first layer; doubles towards the score end
    n_extra_layers: int = 1  # stride-1 3x3 blocks at the widest grid, in both nets (the lesson uses 1)
    critic_norm: str = "batch"  # batch | layer | none; WGAN-GP needs per-sample scores, so no batch
    generator_norm: str = "batch"  # batch | none
    upsample: str = "deconv"  # deconv | nearest-conv (upsample + 3x3 conv, distill.pub 2016 checkerboard)
    order: str = "conv-act-norm"  # the lesson's block order; DCGAN's paper uses conv-norm-act
    spectral_norm: bool = False  # critic only: every conv's weight divided by its spectral norm (needs norm != batch)
    packing: int = 1  # critic only: PacGAN's m, samples per critic input (its input channels are channels * m)


DCGAN_PRESETS: dict[str, DCGANSpec] = {
    # the lesson's nets: conv -> activation -> BatchNorm, one extra layer
    "wgan": DCGANSpec(),
    # WGAN-GP (arXiv:1704.00028 sec. 4) drops BatchNorm from the critic, since the penalty is per sample;
    # everything else stays as in "wgan" so the two losses can be compared on one architecture
    "wgan-gp": DCGANSpec(critic_norm="layer"),
    # Radford et al.'s nets: conv -> BatchNorm -> activation, no extra layers
    "dcgan": DCGANSpec(n_extra_layers=0, order="conv-norm-act"),
}


class NoiseToGrid(nn.Module):
    """(B, nz) or (B, nz, 1, 1) -> (B, nz, 1, 1): the first deconv reads z as a 1x1 grid."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.reshape(z.shape[0], -1, 1, 1)


class CenterCrop(nn.Module):
    """(B, C, H, W) -> (B, C, size, size), keeping the middle; the extra row/column goes on the top/left side."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = (x.shape[-2] - self.size) // 2
        left = (x.shape[-1] - self.size) // 2
        return x[..., top:top + self.size, left:left + self.size]

    def extra_repr(self) -> str:
        return f"size={self.size}"


def built_size(size: int) -> int:
    """The size the nets are built at: `size` itself when a multiple of 16, else the next multiple of 16."""
    if size < 16:
        raise UserError(f"image size {size} is too small for a DCGAN; use 16 or more")
    return -(-size // 16) * 16


def base_grid(size: int) -> int:
    """The smallest grid of the pyramid: halve `size` while it is even and at least 8 (4 for powers of 2).

    The lesson's nets stop at 4 and so only build powers of two; stopping at 5, 6, 7, 9... instead lets every
    multiple of 16 work (48 -> 6, 80 -> 5), with a first deconv and last conv whose kernel is that grid.
    """
    grid = size
    while grid % 2 == 0 and grid >= 8:
        grid //= 2
    return grid


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")


def _check_spectral_norm(spectral_norm: bool, norm: str) -> None:
    if spectral_norm and norm == "batch":
        raise UserError("a spectrally normalised critic cannot use BatchNorm (SNGAN, arXiv:1802.05957, has none): "
                        "use critic norm layer or none")


def _norm(kind: str, channels: int) -> list[nn.Module]:
    if kind == "batch":
        return [nn.BatchNorm2d(channels)]
    if kind == "layer":
        # LayerNorm over (C, H, W) per sample with a per-channel scale and shift, as in the WGAN-GP code
        # (igul222/improved_wgan_training lib/ops/layernorm.py); unlike nn.LayerNorm it is size-agnostic
        return [nn.GroupNorm(1, channels)]
    return []


def _block(conv: nn.Module, norm: str, act: nn.Module, order: str) -> nn.Sequential:
    normalise = _norm(norm, _out_channels(conv))
    layers = [conv, act, *normalise] if order == "conv-act-norm" else [conv, *normalise, act]
    return nn.Sequential(*layers)


def _out_channels(conv: nn.Module) -> int:
    return conv[-1].out_channels if isinstance(conv, nn.Sequential) else conv.out_channels


def _upsample_conv(in_channels: int, out_channels: int, upsample: str) -> nn.Module:
    """Double the grid: 4x4 stride-2 deconv (lesson) or nearest upsample + 3x3 conv (no checkerboard)."""
    if upsample == "deconv":
        return nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=False)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                         nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False))


def dcgan_generator(size: int, channels: int = 3, nz: int = 100, ngf: int = 64, n_extra_layers: int = 1,
                    upsample: str = "deconv", norm: str = "batch", order: str = "conv-act-norm") -> nn.Sequential:
    """z (B, nz) -> images (B, channels, size, size) in [-1, 1].

    Lesson DCGAN_G: a deconv from the 1x1 noise grid to the base grid at the widest width, stride-2 blocks
    halving the width until half the built size, `n_extra_layers` 3x3 blocks, a last upsampling to
    `channels`, tanh. No conv biases (the lesson, DCGAN and WassersteinGAN code all drop them).
    """
    _check("generator norm", norm, ("batch", "none"))
    _check("upsample", upsample, UPSAMPLES)
    _check("block order", order, ORDERS)
    build = built_size(size)
    base = base_grid(build)
    n_doublings = (build // base).bit_length() - 1  # build == base * 2**n_doublings
    width = ngf * 2 ** (n_doublings - 1)  # lesson: 8 * ngf = 512 at 64 px
    relu = functools.partial(nn.ReLU, inplace=True)
    layers: list[nn.Module] = [NoiseToGrid(),
                               _block(nn.ConvTranspose2d(nz, width, base, 1, 0, bias=False), norm, relu(), order)]
    grid = base  # (B, width, base, base)
    while grid < build // 2:
        layers.append(_block(_upsample_conv(width, width // 2, upsample), norm, relu(), order))
        width, grid = width // 2, grid * 2
    extra = nn.ConvTranspose2d if upsample == "deconv" else nn.Conv2d  # same shapes; the lesson used deconvs
    layers += [_block(extra(width, width, 3, 1, 1, bias=False), norm, relu(), order) for _ in range(n_extra_layers)]
    layers.append(_upsample_conv(width, channels, upsample))  # (B, channels, build, build)
    if build != size:
        layers.append(CenterCrop(size))  # (B, channels, size, size)
    layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def dcgan_critic(size: int, channels: int = 3, ndf: int = 64, n_extra_layers: int = 1, norm: str = "batch",
                 order: str = "conv-act-norm", spectral_norm: bool = False, packing: int = 1) -> nn.Sequential:
    """Images (B, channels, size, size) -> scores (B,), no sigmoid; with packing m, packed inputs
    (B / m, m * channels, size, size) -> (B / m,).

    Lesson DCGAN_D: a 4x4 stride-2 block without norm, `n_extra_layers` 3x3 blocks, 4x4 stride-2 blocks
    doubling the width down to the base grid, then a conv whose kernel is that grid, to 1 channel. The lesson
    returned the batch mean, `x.mean(0).view(1)`; here each sample keeps its score. `spectral_norm`: see
    spectral_norm_ (SNGAN's critic has no BatchNorm, so norm must be layer or none).
    """
    _check("critic norm", norm, NORMS)
    _check("block order", order, ORDERS)
    _check_spectral_norm(spectral_norm, norm)
    if packing < 1:
        raise UserError(f"packing must be 1 or more samples per critic input, not {packing}")
    build = built_size(size)
    base = base_grid(build)
    lrelu = functools.partial(nn.LeakyReLU, 0.2, inplace=True)
    layers: list[nn.Module] = []
    if build != size:
        # a constant pad is an isometry of the input space, so the Lipschitz constraint in size x size pixels
        # is the one in build x build pixels (reflect padding would weight border pixels twice)
        before = (build - size) // 2  # same side convention as CenterCrop
        after = build - size - before
        layers.append(nn.ZeroPad2d((before, after, before, after)))  # (B, channels, build, build)
    # ks 4 stride 2 pads ks // 2 // stride = 1 and ks 3 stride 1 pads 1, as the lesson's ConvBlock
    layers.append(_block(nn.Conv2d(channels * packing, ndf, 4, 2, 1, bias=False), "none", lrelu(), order))
    width, grid = ndf, build // 2
    layers += [_block(nn.Conv2d(width, width, 3, 1, 1, bias=False), norm, lrelu(), order)
               for _ in range(n_extra_layers)]
    while grid > base:
        layers.append(_block(nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), norm, lrelu(), order))
        width, grid = width * 2, grid // 2
    layers += [nn.Conv2d(width, 1, base, 1, 0, bias=False),  # (B, 1, 1, 1)
               nn.Flatten(0)]  # (B,)
    critic = nn.Sequential(*layers)
    return spectral_norm_(critic) if spectral_norm else critic


def spectral_norm_(module: nn.Module) -> nn.Module:
    """Divide the weight of every Conv2d and Linear in `module` by its largest singular value (arXiv:1802.05957).

    torch's parametrization: the weight reshaped to (out, in * kh * kw), as the paper, and one power iteration
    per forward in train mode (none in eval). Its u and v vectors are buffers, so they travel in the
    state_dict and a resumed run continues the same iterations. Initialise weights before calling this
    (dcgan_init_ refuses parametrized weights): u and v are warmed up on the weights present now.
    Returns `module`.
    """
    for layer in list(module.modules()):
        if isinstance(layer, (nn.Conv2d, nn.Linear)) and not parametrize.is_parametrized(layer, "weight"):
            _spectral_norm(layer, n_power_iterations=1)
    return module


@torch.no_grad()
def dcgan_init_(module: nn.Module) -> nn.Module:
    """DCGAN init (arXiv:1511.06434 sec. 4): conv weights N(0, 0.02); BatchNorm weight N(1, 0.02), bias 0.

    GroupNorm keeps PyTorch's weight 1, bias 0. Returns `module` so it chains after a builder.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            if parametrize.is_parametrized(layer, "weight"):
                # writing to a parametrized weight would fill a temporary; and spectral norm's u, v would go stale
                raise ValueError("dcgan_init_ must run before spectral_norm_ (the weight is already parametrized)")
            nn.init.normal_(layer.weight, 0.0, 0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)
    return module


def build_generator(spec: DCGANSpec, size: int, channels: int) -> nn.Sequential:
    """The generator of `spec` for (channels, size, size) images, DCGAN-initialised."""
    return dcgan_init_(dcgan_generator(size, channels, spec.nz, spec.ngf, spec.n_extra_layers, spec.upsample,
                                       spec.generator_norm, spec.order))


def build_critic(spec: DCGANSpec, size: int, channels: int) -> nn.Sequential:
    """The critic of `spec` for (channels, size, size) images, DCGAN-initialised (then spectrally normalised)."""
    critic = dcgan_init_(dcgan_critic(size, channels, spec.ndf, spec.n_extra_layers, spec.critic_norm, spec.order,
                                      packing=spec.packing))
    _check_spectral_norm(spec.spectral_norm, spec.critic_norm)
    return spectral_norm_(critic) if spec.spectral_norm else critic


# name -> constructor(size, channels); the noise size of a preset is DCGAN_PRESETS[name].nz
GENERATORS: dict[str, Callable[[int, int], nn.Module]] = {
    name: functools.partial(build_generator, spec) for name, spec in DCGAN_PRESETS.items()}
CRITICS: dict[str, Callable[[int, int], nn.Module]] = {
    name: functools.partial(build_critic, spec) for name, spec in DCGAN_PRESETS.items()}
