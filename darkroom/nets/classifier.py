"""Classifier nets: the lesson's Darknet, Wide-ResNet (wrn_22 for DAWNBench), and speed presets.

Builders return nn.Sequential; ResLayer and PreActBlock are classes because their forward adds a branch.
Any input channel count and image size: the head pools adaptively to 1x1.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def conv_layer(ni: int, nf: int, ks: int = 3, stride: int = 1) -> nn.Sequential:
    """Lesson 12: conv (no bias) -> BatchNorm (PyTorch momentum 0.01) -> LeakyReLU(0.1)."""
    return nn.Sequential(
        nn.Conv2d(ni, nf, ks, stride=stride, padding=ks // 2, bias=False),
        nn.BatchNorm2d(nf, momentum=0.01),
        nn.LeakyReLU(0.1, inplace=True),
    )


class ResLayer(nn.Module):
    """x + conv_layer(mid -> ni, ks)(conv_layer(ni -> mid, 1)(x)), mid = ni * bottleneck (lesson: 0.5)."""

    def __init__(self, ni: int, bottleneck: float = 0.5, ks: int = 3) -> None:
        super().__init__()
        mid = max(1, int(ni * bottleneck))
        self.branch = nn.Sequential(conv_layer(ni, mid, ks=1), conv_layer(mid, ni, ks=ks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)  # out-of-place: the lesson's in-place add broke autograd in 2018


def group_layer(ni: int, n_blocks: int, stride: int, bottleneck: float = 0.5, ks: int = 3) -> nn.Sequential:
    """A 3x3 conv_layer ni -> 2 ni with `stride`, then `n_blocks` ResLayers at 2 ni channels."""
    return nn.Sequential(conv_layer(ni, ni * 2, ks=3, stride=stride),
                         *[ResLayer(ni * 2, bottleneck, ks) for _ in range(n_blocks)])


def darknet(groups: list[int], num_classes: int = 10, nf: int = 32, in_channels: int = 3,
            bottleneck: float = 0.5, ks: int = 3, lesson_strides: bool = False) -> nn.Sequential:
    """Darknet(groups, nf): stem conv_layer in -> nf, one group per entry doubling channels, pool, linear.

    Strides: the lesson meant 1 for the first group and 2 after (the default here); its code's
    `2 - (i == 1)` gave 2, 1, 2, 2, 2, available as lesson_strides=True. Parameter counts are equal.
    """
    layers: list[nn.Module] = [conv_layer(in_channels, nf, ks=3)]
    for i, n_blocks in enumerate(groups):
        stride = (2 - (i == 1)) if lesson_strides else (1 if i == 0 else 2)
        layers.append(group_layer(nf, n_blocks, stride, bottleneck, ks))
        nf *= 2
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(nf, num_classes)]
    return nn.Sequential(*layers)


class PreActBlock(nn.Module):
    """Wide-ResNet basic block (arXiv:1605.07146): BN-ReLU-conv twice, 1x1 conv shortcut where width changes."""

    def __init__(self, ni: int, nf: int, stride: int, ks: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(ni)
        self.conv1 = nn.Conv2d(ni, nf, ks, stride=stride, padding=ks // 2, bias=False)
        self.bn2 = nn.BatchNorm2d(nf)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(nf, nf, ks, padding=ks // 2, bias=False)
        self.shortcut = nn.Conv2d(ni, nf, 1, stride=stride, bias=False) if (ni != nf or stride != 1) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = torch.relu(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(self.drop(torch.relu(self.bn2(y))))
        # the shortcut reads the pre-activated input when it projects, the raw input otherwise (WRN code)
        return y + (self.shortcut(o) if self.shortcut is not None else x)


def wide_resnet(depth: int = 22, widen: int = 6, num_classes: int = 10, in_channels: int = 3,
                base_widths: tuple[int, ...] = (16, 32, 64), strides: tuple[int, ...] = (1, 2, 2),
                ks: int = 3, dropout: float = 0.0) -> nn.Sequential:
    """WRN-depth-widen: (depth - 4) / 6 blocks per group; widths base * widen after a 16-channel stem."""
    if (depth - 4) % (2 * len(base_widths)) != 0:
        raise ValueError(f"wide_resnet depth {depth} must be 4 + 2 * groups * blocks")
    n_blocks = (depth - 4) // (2 * len(base_widths))
    layers: list[nn.Module] = [nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)]
    ni = 16
    for width, stride in zip(base_widths, strides):
        nf = width * widen
        for block in range(n_blocks):
            layers.append(PreActBlock(ni, nf, stride if block == 0 else 1, ks, dropout))
            ni = nf
    layers += [nn.BatchNorm2d(ni), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ni, num_classes)]
    net = nn.Sequential(*layers)
    wrn_init_(net)
    return net


def wrn_init_(net: nn.Module) -> None:
    """DAWNBench WRN init: conv N(0, sqrt(2 / (k * k * out_channels))), BN weight 1 bias 0, linear bias 0."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
            nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / k))
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)


def conv_group(ni: int, nf: int) -> nn.Sequential:
    """airbench94's group: conv -> max-pool -> BN -> GELU -> conv -> BN -> GELU (BN momentum 0.4, PyTorch's sense)."""
    return nn.Sequential(
        nn.Conv2d(ni, nf, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(nf, momentum=0.4), nn.GELU(),
        nn.Conv2d(nf, nf, 3, padding=1, bias=False), nn.BatchNorm2d(nf, momentum=0.4), nn.GELU(),
    )


def fastnet(widths: tuple[int, ...] = (64, 256, 256), num_classes: int = 10, in_channels: int = 3,
            whiten_width: int | None = None, scale: float = 1 / 9) -> nn.Sequential:
    """airbench94-style net: 2x2 whitening conv stem, conv-pool-BN-GELU groups, global max-pool head.

    `whiten_init_` sets the stem from the data's patch statistics; 3x3 convs start as identity (dirac);
    logits are scaled by `scale` as airbench does (a temperature at initialisation). The stem has 2 * whiten_width
    channels, by default one per eigenvector of the C*2*2 patch covariance and its negative (airbench's 24 for
    C = 3, 8 for grey images): more would only repeat them.
    """
    kernel = 2
    whiten_width = in_channels * kernel * kernel if whiten_width is None else whiten_width
    stem = nn.Conv2d(in_channels, 2 * whiten_width, kernel, padding=0, bias=True)
    layers: list[nn.Module] = [stem, nn.GELU()]
    ni = 2 * whiten_width
    for nf in widths:
        layers.append(conv_group(ni, nf))
        ni = nf
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(ni, num_classes, bias=False), Scale(scale)]
    net = nn.Sequential(*layers)
    for module in net.modules():
        if isinstance(module, nn.Conv2d) and module is not stem:
            dirac_init_(module)
    return net


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def dirac_init_(conv: nn.Conv2d) -> None:
    """Identity init for the first in_channels filters (airbench), default init elsewhere."""
    with torch.no_grad():
        n = min(conv.in_channels, conv.out_channels)
        nn.init.dirac_(conv.weight[:n])


def whiten_init_(stem: nn.Conv2d, images: torch.Tensor, eps: float = 5e-4) -> None:
    """Set a 2x2 stem to the eigenvectors of the patch covariance, scaled to whiten, and their negatives.

    images: (N, C, H, W) float, already normalised. Follows airbench's whitening layer (Page 2018).
    """
    c, k = stem.in_channels, stem.kernel_size[0]
    patches = images.unfold(2, k, 1).unfold(3, k, 1).transpose(1, 3).reshape(-1, c * k * k).double()
    patches = patches - patches.mean(0)
    covariance = patches.T @ patches / patches.shape[0]
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).flip(0)  # largest first
    half = stem.out_channels // 2
    filters = filters[:half].reshape(-1, c, k, k).float()
    if filters.shape[0] < half:  # fewer patch dimensions than filters: repeat
        filters = filters.repeat(-(-half // filters.shape[0]), 1, 1, 1)[:half]
    with torch.no_grad():
        stem.weight.copy_(torch.cat([filters, -filters]))
        if stem.bias is not None:
            stem.bias.zero_()


def cpunet(num_classes: int = 10, in_channels: int = 1, widths: tuple[int, int, int] = (32, 64, 128)) -> nn.Sequential:
    """darkroom's CPU preset: a small fastnet (whitened 2x2 stem, three groups) sized for 2 cores."""
    return fastnet(widths, num_classes, in_channels, whiten_width=8)
