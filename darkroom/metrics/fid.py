"""Fréchet distance (FID, arXiv:1706.08500) and Kernel Inception Distance (KID, arXiv:1801.01401).

Staged and pure: features -> gaussian_stats -> frechet_distance, and features -> kid. Works on any
feature network; scores compare only between runs that use the same network and sample count.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from darkroom.errors import UserError

Features = np.ndarray | torch.Tensor


def as_features(features: Features, name: str, min_rows: int = 1) -> np.ndarray:
    """Return `features` as a C-contiguous float64 (N, D) array, or say which argument is malformed."""
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    array = np.ascontiguousarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise UserError(f"{name} must be a 2-D (samples, features) array, got shape {array.shape}.")
    if array.shape[0] < min_rows:
        raise UserError(f"{name} has {array.shape[0]} samples; this metric needs at least {min_rows}.")
    if not np.isfinite(array).all():
        raise UserError(f"{name} contains NaN or infinite values.")
    return array


@contextmanager
def full_float32_matmul() -> Iterator[None]:
    """Force IEEE float32 matmuls (no bf16/TF32 shortcuts) inside: the error bounds here assume them."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def gaussian_stats(features: Features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features, float64 (as TTUR/pytorch-fid's np.cov)."""
    x = torch.from_numpy(as_features(features, "features", min_rows=2))
    mu = x.mean(dim=0)
    centered = x - mu  # centring first keeps the product free of catastrophic cancellation
    sigma = centered.T @ centered / (x.shape[0] - 1)
    return mu.numpy(), sigma.numpy()


def _trace_sqrt_product(s1: torch.Tensor, s2: torch.Tensor) -> float:
    """tr((S1 S2)^(1/2)) for symmetric PSD S1, S2 (D, D) float64.

    The eigenvalues of S1 S2 equal those of the symmetric PSD matrix R^T S2 R for any R with
    R R^T = S1, so only a symmetric eigenvalue solve is needed. R is the Cholesky factor when S1 is
    numerically positive definite (cheap, backward stable) and S1^(1/2) from eigh otherwise (singular
    covariances, N < D), where scipy's sqrtm needs pytorch-fid's diagonal offset to stay finite.
    """
    factor, info = torch.linalg.cholesky_ex(s1)
    if info.item() != 0:
        eigenvalues, eigenvectors = torch.linalg.eigh(s1)
        factor = eigenvectors * eigenvalues.clamp_min(0).sqrt()  # (E diag(sqrt w)) (E diag(sqrt w))^T = S1
    middle = factor.T @ s2 @ factor
    eigenvalues = torch.linalg.eigvalsh((middle + middle.T) / 2)
    return eigenvalues.clamp_min(0).sqrt().sum().item()  # negative eigenvalues are round-off of zeros


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)) between N(mu1, S1) and N(mu2, S2) (arXiv:1706.08500)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1 = torch.as_tensor(np.asarray(sigma1, np.float64))
    s2 = torch.as_tensor(np.asarray(sigma2, np.float64))
    if mu1.ndim != 1 or mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.shape[0],) * 2:
        raise UserError(f"Gaussian statistics disagree in shape: mu {mu1.shape} vs {mu2.shape}, "
                        f"sigma {tuple(s1.shape)} vs {tuple(s2.shape)}.")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    diff = mu1 - mu2
    value = float(diff @ diff) + torch.trace(s1).item() + torch.trace(s2).item() - 2.0 * _trace_sqrt_product(s1, s2)
    # A squared distance: only round-off (order 1e-12 of the traces) can push it below 0.
    return max(value, 0.0)


def fid_from_features(a: Features, b: Features) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets."""
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


def _unbiased_mmd2(x: torch.Tensor, y: torch.Tensor, degree: int, gamma: float, coef0: float) -> float:
    """Unbiased MMD^2 with the kernel k(u, v) = (gamma u.v + coef0)^degree; x and y are (m, D) float32."""
    m = x.shape[0]

    def kernel_sums(u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # float32 Gram (the cost), float64 kernel and sums: entry errors ~1e-7 average out over m^2 terms.
        k = (u @ v.T).double().mul_(gamma).add_(coef0).pow_(degree)
        return k.sum(), k.diagonal().sum()

    (xx, xx_diag), (yy, yy_diag), (xy, _) = kernel_sums(x, x), kernel_sums(y, y), kernel_sums(x, y)
    return ((xx - xx_diag + yy - yy_diag) / (m * (m - 1)) - 2.0 * xy / (m * m)).item()


def kid(a: Features, b: Features, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
        gamma: float | None = None, coef0: float = 1.0, seed: int = 0) -> tuple[float, float]:
    """Mean and std of the unbiased polynomial-kernel MMD^2 over random subsets (Bińkowski 2018, arXiv:1801.01401).

    subset_size is clipped to the smaller sample. Subsets are drawn as torch-fidelity draws them
    (one numpy RandomState(seed), a-subset then b-subset, without replacement), so the numbers agree
    with its `kid_features_to_metric` on the same features and seed; std is the population std (ddof=0).
    """
    fa = as_features(a, "a", min_rows=2)
    fb = as_features(b, "b", min_rows=2)
    if fa.shape[1] != fb.shape[1]:
        raise UserError(f"KID features disagree in width: {fa.shape[1]} vs {fb.shape[1]}.")
    if subsets < 1 or subset_size < 2:
        raise UserError(f"KID needs subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}.")
    m = min(subset_size, fa.shape[0], fb.shape[0])
    gamma = 1.0 / fa.shape[1] if gamma is None else gamma
    xa, xb = torch.from_numpy(fa).float(), torch.from_numpy(fb).float()
    rng = np.random.RandomState(seed)
    values = np.empty(subsets)
    with full_float32_matmul():
        for i in range(subsets):
            ia = torch.from_numpy(rng.choice(fa.shape[0], m, replace=False))
            ib = torch.from_numpy(rng.choice(fb.shape[0], m, replace=False))
            values[i] = _unbiased_mmd2(xa[ia], xb[ib], degree, gamma, coef0)
    return float(values.mean()), float(values.std())


# ---------------------------------------------------------------------------------------------- bootstrap replicates
def resampled_stats(features: Features, counts: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Mean (D,) and unbiased covariance (D, D) of each bootstrap resample; counts (B, N) say how often each of the
    N samples is drawn (rows sum to N). Centred on the full mean first, so the products cancel nothing."""
    x = torch.from_numpy(as_features(features, "features", min_rows=2))
    n = x.shape[0]
    center = x.mean(dim=0)
    xc = x - center
    for row in np.asarray(counts):
        w = torch.from_numpy(np.asarray(row, dtype=np.float64))
        shift = (w @ xc) / n  # resample mean - full mean
        sigma = (xc.T * w) @ xc - n * torch.outer(shift, shift)
        yield (center + shift).numpy(), (sigma / (n - 1)).numpy()


def fid_replicates(fake: Features, real: Features, fake_counts: np.ndarray, real_counts: np.ndarray) -> np.ndarray:
    """FID (B,) of each bootstrap resample pair (fake_counts (B, N_fake), real_counts (B, N_real))."""
    return np.array([frechet_distance(mu_f, s_f, mu_r, s_r) for (mu_f, s_f), (mu_r, s_r)
                     in zip(resampled_stats(fake, fake_counts), resampled_stats(real, real_counts))])


def _weighted_kernel_sums(u: torch.Tensor, v: torch.Tensor, wu: torch.Tensor, wv: torch.Tensor, degree: int,
                          gamma: float, coef0: float, rows: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_u^T K w_v for every replicate (B,), sum_i w_u[b, i] w_v[b, i] K_ii (B,) when u is v) for the
    polynomial kernel K (N_u, N_v), built in row chunks (float32 Gram, float64 kernel and sums, as `kid`)."""
    total = torch.zeros(wu.shape[0], dtype=torch.float64)
    diagonal = torch.zeros(wu.shape[0], dtype=torch.float64)
    for start in range(0, u.shape[0], rows):
        part = slice(start, start + rows)
        k = (u[part] @ v.T).double().mul_(gamma).add_(coef0).pow_(degree)  # (rows, N_v)
        total += ((k @ wv.T) * wu[:, part].T).sum(dim=0)
        if u is v:
            index = torch.arange(part.start, min(part.stop, u.shape[0]))
            diagonal += (wu[:, index] * wv[:, index] * k[index - start, index]).sum(dim=1)
    return total, diagonal


def kid_replicates(fake: Features, real: Features, fake_counts: np.ndarray, real_counts: np.ndarray,
                   subset_std: float = 0.0, subsets: int = 100, degree: int = 3, gamma: float | None = None,
                   coef0: float = 1.0) -> np.ndarray:
    """Bootstrap replicates (B,) whose spread is the sampling spread of `kid`'s mean.

    Each replicate is the unbiased MMD^2 over all pairs of its resample (pairs of one sample with a copy of
    itself left out, so duplicates add no k(x, x) terms). `kid` averages `subsets` random subsets, which adds
    the subset noise subset_std^2 / subsets (its own std, about the full-pair U-statistic) to that spread: the
    replicates are stretched about their mean to carry it. Costs the full (N, N) kernels once, in row chunks.
    """
    fa, fb = as_features(fake, "fake", min_rows=2), as_features(real, "real", min_rows=2)
    gamma = 1.0 / fa.shape[1] if gamma is None else gamma
    x, y = torch.from_numpy(fa).float(), torch.from_numpy(fb).float()
    wx = torch.from_numpy(np.asarray(fake_counts, dtype=np.float64))
    wy = torch.from_numpy(np.asarray(real_counts, dtype=np.float64))
    with full_float32_matmul():
        xx, xx_same = _weighted_kernel_sums(x, x, wx, wx, degree, gamma, coef0)
        yy, yy_same = _weighted_kernel_sums(y, y, wy, wy, degree, gamma, coef0)
        xy, _ = _weighted_kernel_sums(x, y, wx, wy, degree, gamma, coef0)
    pairs_x = wx.sum(1) ** 2 - wx.square().sum(1)
    pairs_y = wy.sum(1) ** 2 - wy.square().sum(1)
    values = ((xx - xx_same) / pairs_x + (yy - yy_same) / pairs_y - 2 * xy / (wx.sum(1) * wy.sum(1))).numpy()
    spread = values.var(ddof=1)
    if spread > 0 and subset_std > 0:
        values = values.mean() + (values - values.mean()) * np.sqrt(1 + subset_std ** 2 / subsets / spread)
    return values
