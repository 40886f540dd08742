"""Learning-rate and momentum schedules as pure functions f(step) -> value; the loops set param_group values.

one_cycle_* follow fast.ai 0.7's CircularLR_beta (`use_clr_beta=(div, pct, mom_max, mom_min)`), the
schedule lesson 12 trained with; linear/cosine are the modern record holders' shapes (airbench).
"""
from __future__ import annotations

import math


def one_cycle_c(total: int, pct: float) -> int:
    """Length of each half of the triangle: c = floor(N * (1 - pct/100) / 2)."""
    return int(total * (1 - pct / 100) / 2)


def one_cycle_lr(step: int, total: int, lr: float, div: float, pct: float) -> float:
    """lr/div -> lr over [0, c], lr -> lr/div over (c, 2c], then lr/div -> lr/(100 div) over the rest."""
    c = one_cycle_c(total, pct)
    if step > 2 * c:
        frac = (step - 2 * c) / max(1, total - 2 * c)
        return lr / div * (1 - frac * 0.99)
    if step > c:
        frac = 1 - (step - c) / c
    else:
        frac = step / max(1, c)
    return lr / div * (1 + frac * (div - 1))


def one_cycle_momentum(step: int, total: int, mom_max: float, mom_min: float, pct: float) -> float:
    """mom_max -> mom_min over [0, c], back to mom_max over (c, 2c], then constant mom_max."""
    c = one_cycle_c(total, pct)
    if step > 2 * c:
        return mom_max
    frac = 1 - (step - c) / c if step > c else step / max(1, c)
    return mom_max + frac * (mom_min - mom_max)


def warmup_linear_decay(step: int, total: int, lr: float, warmup: float, final: float = 0.0) -> float:
    """Linear warm-up over the first `warmup` fraction, then linear decay to `final * lr` (airbench's shape)."""
    w = max(1, int(total * warmup))
    if step < w:
        return lr * (step + 1) / w
    frac = (step - w) / max(1, total - w)
    return lr * (1 - frac * (1 - final))


def warmup_cosine(step: int, total: int, lr: float, warmup: float, final: float = 0.0) -> float:
    """Linear warm-up, then half-cosine decay to `final * lr`."""
    w = max(1, int(total * warmup))
    if step < w:
        return lr * (step + 1) / w
    frac = (step - w) / max(1, total - w)
    return lr * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * frac)))


def linear_decay_factor(epoch: float, constant_epochs: int, decay_epochs: int) -> float:
    """CycleGAN's rule: factor 1.0 for `constant_epochs`, then linearly to 0 over `decay_epochs`."""
    if epoch < constant_epochs:
        return 1.0
    return max(0.0, 1.0 - (epoch - constant_epochs) / max(1, decay_epochs))


def parse_sizes(spec: str) -> list[tuple[int, float]]:
    """'SIZE:EPOCHS,...' (progressive resizing) -> [(size, until_epoch), ...]; ValueError naming the bad part.

    Each stage trains at SIZE px until epoch EPOCHS (counted from the start); the net then trains at full size.
    """
    stages: list[tuple[int, float]] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        size, sep, until = part.partition(":")
        try:
            stage = (int(size), float(until))
        except ValueError:
            raise ValueError(f"'{part}' is not SIZE:EPOCHS") from None
        if not sep or stage[0] < 1 or not stage[1] > 0:
            raise ValueError(f"'{part}' is not SIZE:EPOCHS with a positive size and epoch")
        if stages and stage[1] <= stages[-1][1]:
            raise ValueError(f"'{part}' does not end after the stage before it")
        stages.append(stage)
    return stages


def size_at(stages: list[tuple[int, float]], step: int, steps_per_epoch: int) -> int | None:
    """The training image size at `step` (None: full size) for parse_sizes' stages."""
    for size, until in stages:
        if step < round(until * steps_per_epoch):
            return size
    return None
