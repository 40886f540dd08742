"""MLP generator and critic for 2-D toy data (8-Gaussian ring, 25-Gaussian grid), as in WGAN-GP's
toy experiments (arXiv:1704.00028 sec. 5.1, which used 3 hidden ReLU layers of 512)."""
from __future__ import annotations

from torch import nn


def _mlp(in_features: int, hidden: int, layers: int, out_features: int) -> list[nn.Module]:
    widths = [in_features] + [hidden] * layers
    body: list[nn.Module] = []
    for width_in, width_out in zip(widths, widths[1:]):
        body += [nn.Linear(width_in, width_out), nn.ReLU(inplace=True)]
    return body + [nn.Linear(widths[-1], out_features)]


def mlp_generator(nz: int = 2, hidden: int = 256, layers: int = 3, out_features: int = 2) -> nn.Sequential:
    """z (B, nz) -> points (B, out_features); `layers` hidden Linear + ReLU layers.

    The output is linear, not tanh: toy data lives outside [-1, 1] (the ring has radius 2 before scaling).
    """
    return nn.Sequential(*_mlp(nz, hidden, layers, out_features))


def mlp_critic(in_features: int = 2, hidden: int = 256, layers: int = 3) -> nn.Sequential:
    """Points (B, in_features) -> scores (B,); no normalisation, so the gradient penalty stays per sample."""
    return nn.Sequential(*_mlp(in_features, hidden, layers, 1), nn.Flatten(0))  # (B, 1) -> (B,)
