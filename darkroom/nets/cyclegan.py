"""CycleGAN nets (arXiv:1703.10593): the ResNet generator of Johnson et al. (arXiv:1603.08155) and the
70x70 PatchGAN discriminator (arXiv:1611.07004), layer for layer as the reference junyanz code with
instance norm, so parameter counts match (11,378,179 and 2,764,737 at 64 filters, 3 channels).
`translate_any_size` runs a generator on any H x W; `set_checkpointing_` trades compute for memory.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from darkroom.errors import UserError

UPSAMPLES = ("deconv", "nearest-conv")
PADDINGS = ("reflect", "zero")


def instance_norm(channels: int) -> nn.InstanceNorm2d:
    """Per-image, per-channel normalisation with no affine and no running stats (the reference's 'instance')."""
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


# Every conv followed by instance_norm keeps its bias, as the reference does (use_bias = norm is
# InstanceNorm2d). The norm's mean subtraction cancels that bias, so it never trains; it is kept so that
# parameter counts and state dicts line up with the reference.


def _pad(width: int, padding: str) -> nn.Module:
    """The reference's reflection padding before a stride-1 conv; with "zero" the conv pads itself (_conv) and an
    nn.Identity holds the pad's place, so state dicts keep the reference's keys."""
    return nn.ReflectionPad2d(width) if padding == "reflect" else nn.Identity()


def _conv(in_channels: int, out_channels: int, kernel: int, padding: str) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel, padding=0 if padding == "reflect" else kernel // 2, bias=True)


class ResidualBlock(nn.Module):
    """x + [reflect-pad 1, 3x3 conv, IN, ReLU, reflect-pad 1, 3x3 conv, IN](x); (B, C, H, W) -> same. With padding
    "zero" each conv pads its input with zeros itself.

    With `checkpoint` set, the branch's activations are recomputed in backward instead of stored
    (torch.utils.checkpoint, non-reentrant): the 9 blocks at 1/4 resolution dominate the generator's memory.
    """

    def __init__(self, channels: int, checkpoint: bool = False, padding: str = "reflect") -> None:
        super().__init__()
        self.branch = nn.Sequential(
            _pad(1, padding), _conv(channels, channels, 3, padding), instance_norm(channels), nn.ReLU(inplace=True),
            _pad(1, padding), _conv(channels, channels, 3, padding), instance_norm(channels),
        )
        self.checkpoint = checkpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpoint and torch.is_grad_enabled():
            return x + checkpoint(self.branch, x, use_reentrant=False)
        return x + self.branch(x)  # out-of-place: x is saved for the first conv's backward


def _upsample_block(in_channels: int, out_channels: int, upsample: str) -> nn.Sequential:
    """Double H and W: 3x3 stride-2 deconv with output_padding 1 (reference) or nearest + 3x3 conv."""
    if upsample == "deconv":
        conv: list[nn.Module] = [nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1,
                                                    output_padding=1, bias=True)]
    else:
        # distill.pub 2016 "Deconvolution and checkerboard artifacts": no uneven kernel overlap
        conv = [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(in_channels, out_channels, 3, padding=1,
                                                                        bias=True)]
    return nn.Sequential(*conv, instance_norm(out_channels), nn.ReLU(inplace=True))


def resnet_generator(in_channels: int, out_channels: int, ngf: int = 64, n_blocks: int = 9,
                     upsample: str = "deconv", checkpoint_blocks: bool = False, input_norm: bool = True,
                     padding: str = "reflect") -> nn.Sequential:
    """(B, in_channels, H, W) -> (B, out_channels, H, W) in [-1, 1], for H and W multiples of 4.

    c7s1-ngf, two stride-2 3x3 downsamplings (2 ngf, 4 ngf), `n_blocks` ResidualBlocks at 4 ngf, two
    upsamplings back to ngf, c7s1-out_channels, tanh. Use translate_any_size for other sizes.

    input_norm (the reference): the first conv is instance-normalised too. Then the whole generator is blind to its
    input's contrast: x -> -1 + s (x + 1) scales every channel of the first conv by s (reflection padding and
    all), and the norm divides it out. The output cannot follow how bright or faint the input was, and a cycle
    cannot carry an image's contrast through the other domain. input_norm=False keeps that first conv's output
    as is (an nn.Identity holds the norm's place, so state dicts keep the reference's keys).

    padding "zero": every stride-1 conv after the first pads with zeros itself instead of after a ReflectionPad2d
    (the image is still reflected for the first). On the CPU in bf16 each reflection pad is a float32 copy in NCHW
    that the next conv casts back: at 28 px, batch 16, 2 cores, the step runs 9-16% more images a second
    (alternating runs).
    """
    if upsample not in UPSAMPLES:
        raise UserError(f"upsample must be one of {', '.join(UPSAMPLES)}, not {upsample!r}")
    if padding not in PADDINGS:
        raise UserError(f"padding must be one of {', '.join(PADDINGS)}, not {padding!r}")
    layers: list[nn.Module] = [nn.Sequential(
        nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=True),
        instance_norm(ngf) if input_norm else nn.Identity(), nn.ReLU(inplace=True))]  # (B, ngf, H, W)
    for mult in (1, 2):  # zero padding here, as the reference
        layers.append(nn.Sequential(
            nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=True),
            instance_norm(ngf * mult * 2), nn.ReLU(inplace=True)))
    # (B, 4 ngf, H/4, W/4)
    layers += [ResidualBlock(ngf * 4, checkpoint_blocks, padding) for _ in range(n_blocks)]
    layers += [_upsample_block(ngf * 4, ngf * 2, upsample), _upsample_block(ngf * 2, ngf, upsample)]
    layers.append(nn.Sequential(  # (B, out_channels, H, W)
        _pad(3, padding), _conv(ngf, out_channels, 7, padding), nn.Tanh()))
    return nn.Sequential(*layers)


def set_checkpointing_(module: nn.Module, enabled: bool) -> nn.Module:
    """Switch activation checkpointing of every ResidualBlock in `module`; the parameters are untouched."""
    for layer in module.modules():
        if isinstance(layer, ResidualBlock):
            layer.checkpoint = enabled
    return module


def translate_any_size(G: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """G(x) for any H, W >= 5: reflect-pad H and W up to multiples of 4, translate, crop back to H x W.

    The generator downsamples twice by stride 2, so other sizes come back a few pixels off (30 -> 32);
    the padding is split between both sides so the crop keeps the centre of the receptive field.
    """
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % 4, -width % 4
    if height + pad_h < 8 or width + pad_w < 8:
        raise UserError(f"image of {height}x{width} px is too small to translate; use 5 px or more a side")
    top, left = pad_h // 2, pad_w // 2
    padded = F.pad(x, (left, pad_w - left, top, pad_h - top), mode="reflect") if pad_h or pad_w else x
    y = G(padded)  # (B, C', H + pad_h, W + pad_w)
    return y[..., top:top + height, left:left + width]


def patchgan_discriminator(in_channels: int, ndf: int = 64, n_layers: int = 3) -> nn.Sequential:
    """(B, in_channels, H, W) -> patch logits (B, 1, H', W'); n_layers 3 sees 70x70 patches (30x30 at 256 px).

    4x4 convs padding 1: ndf stride 2 without norm, then widths doubling (capped at 8 ndf) stride 2 for
    n_layers - 1 layers, one more doubling at stride 1, then 1 channel at stride 1. LeakyReLU 0.2.
    """
    layers: list[nn.Module] = [nn.Sequential(
        nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1, bias=True), nn.LeakyReLU(0.2, inplace=True))]
    width = ndf
    for n in range(1, n_layers + 1):
        stride = 2 if n < n_layers else 1
        next_width = ndf * min(2 ** n, 8)
        layers.append(nn.Sequential(
            nn.Conv2d(width, next_width, 4, stride=stride, padding=1, bias=True), instance_norm(next_width),
            nn.LeakyReLU(0.2, inplace=True)))
        width = next_width
    layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1, bias=True))  # (B, 1, H', W')
    return nn.Sequential(*layers)


@torch.no_grad()
def cyclegan_init_(module: nn.Module) -> nn.Module:
    """The reference's 'normal' init: conv and deconv weights N(0, 0.02), biases 0; BatchNorm weight N(1, 0.02).

    Returns `module` so it chains after a builder.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(layer.weight, 0.0, 0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)
    return module


# name -> constructor(in_channels, out_channels), initialised; the reference's names. resnet_6blocks is
# the paper's choice for 128x128 images. Memory-lean mode: set_checkpointing_(G, True) afterwards.
GENERATORS: dict[str, Callable[[int, int], nn.Module]] = {
    "resnet_9blocks": lambda in_channels, out_channels: cyclegan_init_(
        resnet_generator(in_channels, out_channels, ngf=64, n_blocks=9)),
    "resnet_6blocks": lambda in_channels, out_channels: cyclegan_init_(
        resnet_generator(in_channels, out_channels, ngf=64, n_blocks=6)),
}
# name -> constructor(in_channels), initialised
DISCRIMINATORS: dict[str, Callable[[int], nn.Module]] = {
    "basic": lambda in_channels: cyclegan_init_(patchgan_discriminator(in_channels, ndf=64, n_layers=3)),
}
