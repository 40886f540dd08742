"""What a batch goes through between the data (or G) and the critic: DiffAugment (Zhao et al. 2020,
arXiv:2006.10738), the same kind of random transform for real and fake images, differentiable so G learns
through it; and PacGAN packing (arXiv:1712.04086), m samples concatenated into one critic input.

    x_for_critic = pack(diff_augment(x, "color,translation,cutout", generator), m)
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from darkroom.errors import UserError

OPS = ("color", "translation", "cutout")  # "color" = brightness, saturation, contrast, in that order
TRANSLATION = 0.125  # the paper's code: shifts of up to 1/8 of the height and width, zero padded
CUTOUT = 0.5  # a zeroed square (rectangle for non-square images) of 1/2 the height and width


def parse_policy(policy: str) -> tuple[str, ...]:
    """'color,translation,cutout' -> ('color', 'translation', 'cutout'); '' or 'none' -> () (no augmentation)."""
    names = tuple(name.strip() for name in policy.split(",") if name.strip() and name.strip() != "none")
    for name in names:
        if name not in OPS:
            raise UserError(f"DiffAugment policy {policy!r}: {name!r} is not one of {', '.join(OPS)}")
    return names


@dataclass(frozen=True)
class AugmentDraws:
    """One batch's random parameters; None where the op is not in the policy. Every tensor has the batch first."""
    policy: tuple[str, ...]
    brightness: torch.Tensor | None = None  # (B,) added to every pixel
    saturation: torch.Tensor | None = None  # (B,) factor on the deviation from the channel mean
    contrast: torch.Tensor | None = None  # (B,) factor on the deviation from the image mean
    shift: torch.Tensor | None = None  # (B, 2) int64 (dy, dx): content moves down dy, right dx
    cutout_top_left: torch.Tensor | None = None  # (B, 2) int64, may lie outside the image
    cutout_size: torch.Tensor | None = None  # (B, 2) int64 (h, w); 0 where the sample is not cut

    def rows(self, start: int, stop: int) -> AugmentDraws:
        """Samples start:stop (a rank's slice of a global draw, as the trainer's noise)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "policy"}
        return AugmentDraws(self.policy, **{k: None if v is None else v[start:stop] for k, v in values.items()})


def draw_augment(policy: str, batch: int, height: int, width: int, generator: torch.Generator,
                 strength: float = 1.0, probability: float = 1.0) -> AugmentDraws:
    """The random parameters for `batch` images of height x width, all drawn from `generator` on its device.

    strength scales every range (1 = the paper's: brightness U[-0.5, 0.5), saturation U[0, 2), contrast
    U[0.5, 1.5), translation 1/8, cutout 1/2); probability: each op is applied to each sample with this
    chance (the paper: 1). Either at 0 gives the identity. Draws, in the order of OPS: brightness, its
    probability, saturation, its probability, contrast, its probability, dy, dx, their probability, cutout
    centre rows, columns, its probability (B values each); so a generator state fixes the result.
    """
    names = parse_policy(policy)
    device = generator.device

    def uniform() -> torch.Tensor:
        return torch.rand(batch, generator=generator, device=device)

    def applied() -> torch.Tensor:  # (B,) 1.0 where the op acts on the sample
        return (uniform() < probability).float()

    draws: dict[str, torch.Tensor] = {}
    if "color" in names:
        draws["brightness"] = (uniform() - 0.5) * strength * applied()
        draws["saturation"] = 1 + (2 * uniform() - 1) * strength * applied()
        draws["contrast"] = 1 + (uniform() - 0.5) * strength * applied()
    if "translation" in names:
        max_dy, max_dx = int(height * TRANSLATION * strength), int(width * TRANSLATION * strength)
        dy = torch.randint(-max_dy, max_dy + 1, (batch,), generator=generator, device=device)
        dx = torch.randint(-max_dx, max_dx + 1, (batch,), generator=generator, device=device)
        draws["shift"] = torch.stack([dy, dx], 1) * applied().long()[:, None]
    if "cutout" in names:
        size_h, size_w = int(height * CUTOUT * strength), int(width * CUTOUT * strength)
        # centre in [0, size + 1 - s % 2), as the paper's code: border squares are clipped equally on both sides
        cy = torch.randint(0, height + 1 - size_h % 2, (batch,), generator=generator, device=device)
        cx = torch.randint(0, width + 1 - size_w % 2, (batch,), generator=generator, device=device)
        draws["cutout_top_left"] = torch.stack([cy - size_h // 2, cx - size_w // 2], 1)
        # (B, 2), filled on the device: no host copy per step
        size = torch.stack([torch.full((batch,), size_h, device=device), torch.full((batch,), size_w, device=device)],
                           1)
        draws["cutout_size"] = size * applied().long()[:, None]
    return AugmentDraws(names, **draws)


def brightness(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """x + shift per sample; x (B, C, H, W), shift (B,)."""
    return x + shift.to(x.dtype).view(-1, 1, 1, 1)


def saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale each pixel's deviation from its channel mean (the identity for 1 channel)."""
    mean = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
    return (x - mean) * factor.to(x.dtype).view(-1, 1, 1, 1) + mean


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale each pixel's deviation from the image's mean over (C, H, W)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return (x - mean) * factor.to(x.dtype).view(-1, 1, 1, 1) + mean


def translate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """out[b, :, i, j] = x[b, :, i - dy_b, j - dx_b], zero where that lies outside; shift (B, 2) int (dy, dx)."""
    batch, _, height, width = x.shape
    rows = torch.arange(height, device=x.device)[None, :] - shift[:, :1]  # (B, H) source rows
    cols = torch.arange(width, device=x.device)[None, :] - shift[:, 1:]  # (B, W)
    inside = (((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :])  # (B, H, W)
    index = torch.arange(batch, device=x.device)[:, None, None]
    moved = x[index, :, rows.clamp(0, height - 1)[:, :, None], cols.clamp(0, width - 1)[:, None, :]]  # (B, H, W, C)
    out = moved.permute(0, 3, 1, 2) * inside[:, None].to(x.dtype)  # (B, C, H, W)
    return out.contiguous(memory_format=_memory_format(x))


def cutout(x: torch.Tensor, top_left: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Zero rows [top, top + h) x columns [left, left + w) of each sample (the part inside the image).

    top_left (B, 2) int, size (B, 2) int (h, w).
    """
    _, _, height, width = x.shape
    rows = torch.arange(height, device=x.device)[None, :]  # (1, H)
    cols = torch.arange(width, device=x.device)[None, :]
    top, left = top_left[:, :1], top_left[:, 1:]  # (B, 1)
    in_rows = (rows >= top) & (rows < top + size[:, :1])  # (B, H)
    in_cols = (cols >= left) & (cols < left + size[:, 1:])  # (B, W)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])  # (B, H, W)
    return x * keep[:, None].to(x.dtype)


def apply_augment(x: torch.Tensor, draws: AugmentDraws) -> torch.Tensor:
    """The policy's ops with these parameters, in policy order; differentiable in x (B, C, H, W)."""
    for name in draws.policy:
        if name == "color":
            x = contrast(saturation(brightness(x, draws.brightness), draws.saturation), draws.contrast)
        elif name == "translation":
            x = translate(x, draws.shift)
        else:
            x = cutout(x, draws.cutout_top_left, draws.cutout_size)
    return x


def diff_augment(x: torch.Tensor, policy: str, generator: torch.Generator, strength: float = 1.0,
                 probability: float = 1.0) -> torch.Tensor:
    """DiffAugment of a batch x (B, C, H, W) with fresh draws from `generator`, which must be on x's device."""
    if not parse_policy(policy):
        return x
    if generator.device.type != x.device.type:
        raise ValueError(f"diff_augment: the generator is on {generator.device}, the batch on {x.device}")
    return apply_augment(x, draw_augment(policy, x.shape[0], x.shape[2], x.shape[3], generator, strength, probability))


def pack(x: torch.Tensor, m: int) -> torch.Tensor:
    """PacGAN packing: (B, C, ...) -> (B / m, m * C, ...); (B, F) points -> (B / m, m * F).

    Packed row i holds samples i*m, i*m + 1, ..., i*m + m - 1 (consecutive, so a plain view of a contiguous
    batch), sample i*m + j in channels [j*C, (j + 1)*C). PacGAN concatenates m independently drawn batches;
    on an i.i.d. batch consecutive groups are the same distribution. m = 1 returns x.
    """
    if m == 1:
        return x
    if m < 1 or x.shape[0] % m:
        raise ValueError(f"pack: a batch of {x.shape[0]} does not split into groups of {m}")
    return x.reshape(x.shape[0] // m, m * x.shape[1], *x.shape[2:])


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
