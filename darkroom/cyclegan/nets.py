"""CycleGAN's four nets built from a (saved) config: two ResNet generators, two PatchGAN discriminators."""
from __future__ import annotations

import torch
from torch import nn

from darkroom import precision
from darkroom.config import to_dict
from darkroom.cyclegan.config import GENERATOR_BLOCKS
from darkroom.nets.cyclegan import cyclegan_init_, patchgan_discriminator, resnet_generator


def build_generator(cfg_values: dict, in_channels: int, out_channels: int) -> nn.Module:
    """A ResNet generator from a (saved) config dict; memory-lean mode checkpoints its residual blocks."""
    return cyclegan_init_(resnet_generator(in_channels, out_channels, ngf=cfg_values["ngf"],
                                           n_blocks=cfg_values.get("blocks") or GENERATOR_BLOCKS[cfg_values["generator"]],
                                           upsample=cfg_values["upsample"],
                                           checkpoint_blocks=cfg_values.get("memory_lean", False),
                                           input_norm=cfg_values.get("input_norm", True),
                                           padding=cfg_values.get("padding", "reflect")))  # runs saved before it: True


def build_nets(cfg, channels_a: int, channels_b: int, device: torch.device) -> dict[str, nn.Module]:
    values = to_dict(cfg)
    nets = {"g_ab": build_generator(values, channels_a, channels_b), "g_ba": build_generator(values, channels_b, channels_a),
            "d_a": cyclegan_init_(patchgan_discriminator(channels_a, cfg.ndf, cfg.d_layers)),
            "d_b": cyclegan_init_(patchgan_discriminator(channels_b, cfg.ndf, cfg.d_layers))}
    return {name: precision.to_memory_format(net.to(device), cfg.channels_last) for name, net in nets.items()}
