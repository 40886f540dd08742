"""Mode counting: a classifier's class histogram of samples against the data's, Stacked MNIST's 1000
modes (three digits as the channels of one image; Metz 2016, arXiv:1611.02163, and VEEGAN, arXiv:1705.07761),
and the 2-D Gaussian-mixture toys (ring of 8, grid of 25) with VEEGAN's counts.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from darkroom.errors import UserError


def _labels(pred: np.ndarray | torch.Tensor, n_classes: int, name: str) -> np.ndarray:
    if isinstance(pred, torch.Tensor):
        pred = pred.detach().cpu().numpy()
    labels = np.asarray(pred).reshape(-1)
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{name} must hold integer class labels, got dtype {labels.dtype}.")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise UserError(f"{name} holds labels outside [0, {n_classes - 1}]: {labels.min()}..{labels.max()}.")
    return labels.astype(np.int64)


def class_histogram(pred_labels: np.ndarray | torch.Tensor, n_classes: int) -> np.ndarray:
    """Counts (n_classes,) int64 of each predicted class."""
    return np.bincount(_labels(pred_labels, n_classes, "pred_labels"), minlength=n_classes)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0  # 0 log 0 = 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def mode_stats(pred_fake: np.ndarray | torch.Tensor, pred_real: np.ndarray | torch.Tensor, n_classes: int,
               min_fraction: float = 0.01) -> dict[str, float]:
    """Classes hit, KL between class histograms both ways, and the largest class share of the samples.

    A class is hit when it holds at least min_fraction of the samples, and at least one sample
    (min_fraction=0 gives the Stacked MNIST count of modes with any sample). Both KLs smooth the
    counts by adding 1/2 to every class (Krichevsky-Trofimov), so a missed class gives a large
    finite KL(real || fake) rather than infinity.
    """
    fake = np.bincount(_labels(pred_fake, n_classes, "pred_fake"), minlength=n_classes)
    real = np.bincount(_labels(pred_real, n_classes, "pred_real"), minlength=n_classes)
    if fake.sum() == 0 or real.sum() == 0:
        raise UserError("mode_stats needs at least one fake and one real prediction.")
    return _histogram_stats(fake, real, n_classes, min_fraction)


def _histogram_stats(fake: np.ndarray, real: np.ndarray, n_classes: int, min_fraction: float) -> dict[str, float]:
    def hit(counts: np.ndarray) -> float:
        return float(np.sum(counts >= max(1.0, min_fraction * counts.sum())))

    p_fake = (fake + 0.5) / (fake.sum() + 0.5 * n_classes)
    p_real = (real + 0.5) / (real.sum() + 0.5 * n_classes)
    return {
        "modes_hit": hit(fake),
        "modes_hit_real": hit(real),
        "mode_kl_fake_real": _kl(p_fake, p_real),
        "mode_kl_real_fake": _kl(p_real, p_fake),
        "mode_max_fraction": float(fake.max() / fake.sum()),
    }


def mode_stats_replicates(pred_fake: np.ndarray | torch.Tensor, pred_real: np.ndarray | torch.Tensor, n_classes: int,
                          fake_counts: np.ndarray, real_counts: np.ndarray,
                          min_fraction: float = 0.01) -> dict[str, np.ndarray]:
    """`mode_stats` (B,) of each bootstrap resample; counts (B, N) say how often each prediction is drawn."""
    fake = _labels(pred_fake, n_classes, "pred_fake")
    real = _labels(pred_real, n_classes, "pred_real")
    rows = [_histogram_stats(np.bincount(fake, weights=w_f, minlength=n_classes),
                             np.bincount(real, weights=w_r, minlength=n_classes), n_classes, min_fraction)
            for w_f, w_r in zip(np.asarray(fake_counts), np.asarray(real_counts))]
    return {key: np.array([row[key] for row in rows]) for key in rows[0]}


def stack_three(images_1ch: torch.Tensor) -> torch.Tensor:
    """(3N, 1, H, W) grayscale images -> (N, 3, H, W): images 3i, 3i+1, 3i+2 become the channels of image i."""
    if images_1ch.ndim != 4 or images_1ch.shape[1] != 1 or images_1ch.shape[0] % 3:
        raise UserError(f"stack_three needs (3N, 1, H, W) images, got shape {tuple(images_1ch.shape)}.")
    return images_1ch.reshape(-1, 3, *images_1ch.shape[2:])


def stacked_mode_ids(pred_c0: np.ndarray | torch.Tensor, pred_c1: np.ndarray | torch.Tensor,
                     pred_c2: np.ndarray | torch.Tensor) -> np.ndarray:
    """One of 1000 Stacked MNIST modes per image from the digit classified in each channel: 100 a + 10 b + c."""
    a, b, c = (_labels(p, 10, f"pred_c{i}") for i, p in enumerate((pred_c0, pred_c1, pred_c2)))
    if not a.shape == b.shape == c.shape:
        raise UserError(f"channel predictions differ in length: {a.shape[0]}, {b.shape[0]}, {c.shape[0]}.")
    return 100 * a + 10 * b + c


def ring_modes(n: int = 8, radius: float = 2.0, std: float = 0.02) -> tuple[np.ndarray, float]:
    """Centres (n, 2) evenly spaced on a circle, and the per-mode std: defaults are the unrolled-GAN
    ring (Metz 2016, arXiv:1611.02163); VEEGAN's and PacGAN's code use radius 1, std 0.01."""
    angles = 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1), std


def grid_modes(n: int = 25, spacing: float = 2.0, std: float = 0.05) -> tuple[np.ndarray, float]:
    """Centres (n, 2) of a square grid centred on 0 and the per-mode std: the defaults are the VEEGAN
    (arXiv:1705.07761) and PacGAN (arXiv:1712.04086) grid, centres -4..4 in steps of 2, std 0.05."""
    side = math.isqrt(n)
    if side * side != n:
        raise UserError(f"grid_modes needs a square number of modes, got n = {n}.")
    axis = (np.arange(side) - (side - 1) / 2) * spacing
    x, y = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([x.ravel(), y.ravel()], axis=1), std


def pacgan_ring_modes() -> tuple[np.ndarray, float]:
    """PacGAN's and VEEGAN's ring: 8 modes on the unit circle, std 0.01 (fjxmlzn/PacGAN 2DRing config)."""
    return ring_modes(8, radius=1.0, std=0.01)


MODE_MIN_SAMPLES = 20  # of PacGAN's 2,500 evaluation samples: 0.8%, a fifth of a uniform mode's share on the grid
TOYS: dict[str, Callable[[], tuple[np.ndarray, float]]] = {"ring": pacgan_ring_modes, "grid": grid_modes,
                                                           "ring-r2": ring_modes}


def sample_toy(name: str, n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 2) float32 samples of toy `name` (ring or grid) with default settings: a uniform mode plus noise."""
    if name not in TOYS:
        raise UserError(f"unknown toy distribution {name!r}; choose one of {', '.join(TOYS)}.")
    centers, std = TOYS[name]()
    modes = torch.randint(len(centers), (n,), generator=generator)
    noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return (torch.from_numpy(centers)[modes] + std * noise).float()


def toy_mode_coverage(samples: np.ndarray | torch.Tensor, centers: np.ndarray, std: float) -> dict[str, float]:
    """VEEGAN's and PacGAN's toy metrics (arXiv:1705.07761; fjxmlzn/PacGAN MetricLogger): a sample is high quality
    when within 3 std of its nearest centre; a mode is captured when it is the nearest centre of at least one
    high-quality sample (`toy_modes_captured`, PacGAN's count), or of at least `MODE_MIN_SAMPLES` of them
    (`toy_modes_20`, a stricter count that a stray sample cannot inflate).

    `toy_reverse_kl` is PacGAN's reverse KL: KL(q || uniform) of the histogram q of high-quality samples over
    their modes (0 for perfect balance, log(n_modes) for collapse onto one mode). `toy_mode_kl_uniform` is the
    same over every sample's nearest centre.
    """
    x = torch.as_tensor(np.asarray(samples, dtype=np.float64))
    c = torch.as_tensor(np.asarray(centers, dtype=np.float64))
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != c.shape[1]:
        raise UserError(f"toy samples must be (N, {c.shape[1]}) with N > 0, got shape {tuple(x.shape)}.")
    dist, nearest = torch.cdist(x, c).min(dim=1)
    quality = dist <= 3 * std
    captured = torch.bincount(nearest[quality], minlength=c.shape[0])
    share = torch.bincount(nearest, minlength=c.shape[0]).double() / x.shape[0]
    uniform = np.full(c.shape[0], 1.0 / c.shape[0])
    return {
        "toy_modes_captured": float((captured > 0).sum()),
        "toy_n_modes": float(c.shape[0]),
        "toy_high_quality_fraction": quality.double().mean().item(),
        "toy_mode_kl_uniform": _kl(share.numpy(), uniform),
        "toy_modes_20": float((captured >= MODE_MIN_SAMPLES).sum()),
        "toy_reverse_kl": _kl((captured.double() / captured.sum()).numpy(), uniform) if captured.sum() else math.log(c.shape[0]),
    }
