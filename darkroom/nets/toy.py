"""MLP generator and critic for 2-D toy data (8-Gaussian ring, 25-Gaussian grid), as in WGAN-GP's
toy experiments (arXiv:1704.00028 sec. 5.1, which used 3 hidden ReLU layers of 512), and PacGAN's toy nets
(arXiv:1712.04086; fjxmlzn/PacGAN synthetic_data_experiments). Critics take `packing` m: PacGAN inputs of m
points concatenated, (B / m, m * 2) (gan.augment.pack), one score each."""
from __future__ import annotations

import torch
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


def mlp_critic(in_features: int = 2, hidden: int = 256, layers: int = 3, packing: int = 1) -> nn.Sequential:
    """Points (B, in_features) -> scores (B,); no normalisation, so the gradient penalty stays per sample.

    packing m: packed inputs (B / m, m * in_features) -> (B / m,).
    """
    return nn.Sequential(*_mlp(in_features * packing, hidden, layers, 1), nn.Flatten(0))  # (B, 1) -> (B,)


class LinearMaxout(nn.Module):
    """Maxout units (arXiv:1302.4389) as Blocks' LinearMaxout: h_k = max_p (W_{k,p} x + b_{k,p}).

    One Linear to out_features * pieces; unit k takes outputs k * pieces ... k * pieces + pieces - 1.
    """

    def __init__(self, in_features: int, out_features: int, pieces: int) -> None:
        super().__init__()
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)  # (B, out * pieces)
        return h.view(*h.shape[:-1], self.out_features, self.pieces).amax(-1)  # (B, out)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


@torch.no_grad()
def pacgan_init_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """PacGAN's toy init (its config: IsotropicGaussian(0.02), Constant(0)): Linear weights N(0, std), biases 0.
    BatchNorm keeps scale 1, shift 0. Returns `module`."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


def pacgan_generator(nz: int = 2, hidden: int = 400, layers: int = 4, out_features: int = 2) -> nn.Sequential:
    """PacGAN's toy generator: z (B, nz) -> points (B, out_features), N(0, 0.02)-initialised.

    `layers` blocks of Linear (no bias: BatchNorm's shift replaces it) -> BatchNorm1d -> ReLU, then a Linear
    with bias. BatchNorm as Blocks': eps 1e-4, population statistics updated 0.95 old + 0.05 new.
    """
    widths = [nz] + [hidden] * layers
    body: list[nn.Module] = []
    for width_in, width_out in zip(widths, widths[1:]):
        body += [nn.Linear(width_in, width_out, bias=False), nn.BatchNorm1d(width_out, eps=1e-4, momentum=0.05),
                 nn.ReLU(inplace=True)]
    return pacgan_init_(nn.Sequential(*body, nn.Linear(widths[-1], out_features)))


def pacgan_critic(in_features: int = 2, hidden: int = 200, layers: int = 3, pieces: int = 5,
                  packing: int = 1) -> nn.Sequential:
    """PacGAN's toy discriminator: `layers` LinearMaxout layers of `hidden` units with `pieces` pieces, then a
    Linear to one logit (no sigmoid): points (B, in_features) -> (B,), or packed (B / m, m * in_features) -> (B / m,).
    N(0, 0.02)-initialised, biases 0; no normalisation.
    """
    widths = [in_features * packing] + [hidden] * layers
    body = [LinearMaxout(width_in, width_out, pieces) for width_in, width_out in zip(widths, widths[1:])]
    return pacgan_init_(nn.Sequential(*body, nn.Linear(widths[-1], 1), nn.Flatten(0)))
