"""FD-infinity (Chong & Forsyth 2020, arXiv:1911.07023): FID free of its sample-count bias.

FID at N samples is biased upward by about k / N; computing it at several N and fitting FID_N = FD_inf + k / N
by least squares in 1/N extrapolates to infinitely many samples. Both sets are subsampled (in proportion), so
neither side's bias is left in; the N are nested prefixes of one seeded permutation, so the whole line costs
one pass of covariance products.
"""
from __future__ import annotations

import numpy as np
import torch

from darkroom.errors import UserError
from darkroom.metrics.fid import Features, as_features, frechet_distance

POINTS = 15  # FIDs on the line, as Chong & Forsyth and dgm-eval


def subset_sizes(n: int, dim: int, points: int = POINTS) -> np.ndarray:
    """points sizes from max(n / 10, min(2 dim, n / 2)) to n, evenly spaced (the paper: 5k to 50k, a factor 10);
    at least 2 dim where the set allows, as the k / N law holds for N well above the feature width."""
    smallest = max(n // 10, min(2 * dim + 2, n // 2), 2)
    if n < 4 or points < 2:
        raise UserError(f"FD-infinity needs at least 4 samples and 2 points, got {n} and {points}.")
    return np.unique(np.linspace(smallest, n, points).round().astype(np.int64))


def extrapolate(sizes: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line values = intercept + slope / sizes."""
    slope, intercept = np.polyfit(1.0 / np.asarray(sizes, np.float64), np.asarray(values, np.float64), 1)
    return float(intercept), float(slope)


def _prefix_stats(x: torch.Tensor, order: torch.Tensor, sizes: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Mean and unbiased covariance of x[order[:N]] for each N in sizes (ascending), from running sums."""
    center = x.mean(dim=0)
    xc = x[order] - center  # centred: the running products then cancel nothing
    moment = torch.zeros(x.shape[1], x.shape[1], dtype=x.dtype)
    total = torch.zeros(x.shape[1], dtype=x.dtype)
    stats, done = [], 0
    for size in sizes.tolist():
        block = xc[done:size]
        moment += block.T @ block
        total += block.sum(dim=0)
        done = size
        shift = total / size
        stats.append(((center + shift).numpy(), ((moment - size * torch.outer(shift, shift)) / (size - 1)).numpy()))
    return stats


def fid_curve(fake: Features, real: Features, points: int = POINTS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(fake subset sizes, FID at each): nested seeded subsets of both sets, the real one in proportion."""
    x = torch.from_numpy(as_features(fake, "fake", min_rows=4))
    y = torch.from_numpy(as_features(real, "real", min_rows=4))
    if x.shape[1] != y.shape[1]:
        raise UserError(f"FD-infinity features disagree in width: {x.shape[1]} vs {y.shape[1]}.")
    sizes = subset_sizes(x.shape[0], x.shape[1], points)
    real_sizes = np.maximum(2, (sizes * y.shape[0] / x.shape[0]).round().astype(np.int64))
    generator = torch.Generator().manual_seed(seed)
    fake_stats = _prefix_stats(x, torch.randperm(x.shape[0], generator=generator), sizes)
    real_stats = _prefix_stats(y, torch.randperm(y.shape[0], generator=generator), real_sizes)
    values = np.array([frechet_distance(mf, sf, mr, sr) for (mf, sf), (mr, sr) in zip(fake_stats, real_stats)])
    return sizes, values


def fd_infinity(fake: Features, real: Features, points: int = POINTS, seed: int = 0) -> float:
    """FD-infinity of fake vs real (N, D) features: the 1/N -> 0 intercept of the FID line."""
    return extrapolate(*fid_curve(fake, real, points, seed))[0]


def fd_infinity_replicates(fake: Features, real: Features, fake_counts: np.ndarray, real_counts: np.ndarray,
                           points: int = POINTS, seed: int = 0) -> np.ndarray:
    """FD-infinity (B,) of each bootstrap resample (counts (B, N) per set), subsets drawn within the resample."""
    x, y = as_features(fake, "fake", min_rows=4), as_features(real, "real", min_rows=4)
    out = []
    for b, (wf, wr) in enumerate(zip(np.asarray(fake_counts), np.asarray(real_counts))):
        out.append(fd_infinity(np.repeat(x, wf, axis=0), np.repeat(y, wr, axis=0), points, seed + 1 + b))
    return np.array(out)
