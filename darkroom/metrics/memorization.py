"""Memorization: nearest-training-neighbour distances of samples against those of held-out real data,
the data-copying test C_T (Meehan, Chaudhuri, Dasgupta 2020, arXiv:2004.05675) and authenticity
(Alaa et al. 2022, arXiv:2102.08921). All distances are exact Euclidean on features.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import mannwhitneyu

from darkroom.errors import UserError
from darkroom.metrics.fid import as_features
from darkroom.metrics.manifold import knn_distances, prepare, ranked_neighbours

Array = np.ndarray | torch.Tensor


def nn_distances(queries: Array, train: Array, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distance (N,) float64 from each query to its nearest training sample, and that sample's index (N,)."""
    dist, idx = knn_distances(queries, train, 1, chunk)
    return dist[:, 0], idx[:, 0]


def _sqdist(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return (x.square().sum(1, keepdim=True) - 2 * x @ c.T + c.square().sum(1)).clamp_min(0)


def kmeans(x: np.ndarray, k: int, seed: int, iters: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Seeded k-means++ then Lloyd iterations on (N, D) float64; returns centroids (k, D) and labels (N,)."""
    points = torch.from_numpy(x)
    generator = torch.Generator().manual_seed(seed)
    centroids = points[torch.randint(points.shape[0], (1,), generator=generator)]
    closest = _sqdist(points, centroids)[:, 0]
    for _ in range(1, k):  # k-means++ seeding (Arthur & Vassilvitskii 2007)
        weights = closest if closest.sum() > 0 else torch.ones_like(closest)
        pick = torch.multinomial(weights, 1, generator=generator)
        centroids = torch.cat([centroids, points[pick]])
        closest = torch.minimum(closest, _sqdist(points, points[pick])[:, 0])
    for _ in range(iters):
        labels = _sqdist(points, centroids).argmin(dim=1)
        counts = torch.bincount(labels, minlength=k).unsqueeze(1)
        sums = torch.zeros_like(centroids).index_add_(0, labels, points)
        updated = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)  # empty cells keep their centre
        if torch.equal(updated, centroids):
            break
        centroids = updated
    return centroids.numpy(), _sqdist(points, centroids).argmin(dim=1).numpy()


def _z_u(fake_dist: np.ndarray, held_dist: np.ndarray) -> float:
    """Meehan's Z-scored Mann-Whitney U of fake vs held-out NN distances (continuity-corrected, no tie
    term); Z << 0 means the samples sit closer to the training data than new real data does."""
    m, n = len(fake_dist), len(held_dist)
    u = mannwhitneyu(fake_dist, held_dist, alternative="less").statistic  # pairs with fake > held
    return float((u - m * n / 2 + 0.5) / math.sqrt(m * n * (m + n + 1) / 12))


def data_copying_ct(fake: np.ndarray, train: np.ndarray, heldout: np.ndarray, n_cells: int, seed: int,
                    min_cell_samples: int = 20, chunk: int | None = None) -> tuple[float, int]:
    """C_T (arXiv:2004.05675): training-set k-means cells; in each, Z_U of the NN distances to that cell's
    training points; averaged with weights = held-out share of the cell. Cells with at most
    min_cell_samples samples (Meehan's tau = 20 / m) or no held-out point are left out.

    Returns (C_T, cells used); C_T is NaN when no cell qualifies.
    """
    centroids, train_cell = kmeans(train, n_cells, seed)
    centres = torch.from_numpy(centroids)
    fake_cell = _sqdist(torch.from_numpy(fake), centres).argmin(dim=1).numpy()
    held_cell = _sqdist(torch.from_numpy(heldout), centres).argmin(dim=1).numpy()
    weights, scores = [], []
    for cell in range(n_cells):
        in_fake, in_held = fake_cell == cell, held_cell == cell
        if in_fake.sum() <= min_cell_samples or not in_held.any() or not (train_cell == cell).any():
            continue
        cell_train = train[train_cell == cell]
        scores.append(_z_u(nn_distances(fake[in_fake], cell_train, chunk)[0],
                           nn_distances(heldout[in_held], cell_train, chunk)[0]))
        weights.append(in_held.mean())
    if not scores:
        return float("nan"), 0
    return float(np.dot(weights, scores) / np.sum(weights)), len(scores)


def _authentic(dist: np.ndarray, idx: np.ndarray, train_nn: np.ndarray) -> float:
    """Alaa 2022: a sample is inauthentic when it is closer to its nearest training point than that
    point is to any other training point; returns the authentic fraction."""
    return float(np.mean(dist >= train_nn[idx]))


def memorization_report(fake: Array, train: Array, heldout_real: Array, seed: int = 0, n_cells: int | None = None,
                        chunk: int | None = None) -> dict[str, float]:
    """Every memorization test on one sample set; heldout_real must be real data the model never saw.

    n_cells defaults to min(50, N_heldout // 50, N_fake // 50), at least 1 (Meehan used 50 on MNIST).
    """
    x_fake = as_features(fake, "fake", min_rows=1)
    x_train = as_features(train, "train", min_rows=2)
    x_held = as_features(heldout_real, "heldout_real", min_rows=1)
    if not x_fake.shape[1] == x_train.shape[1] == x_held.shape[1]:
        raise UserError(f"fake, train and heldout_real features differ in width: "
                        f"{x_fake.shape[1]}, {x_train.shape[1]}, {x_held.shape[1]}.")
    d_fake, i_fake = nn_distances(x_fake, x_train, chunk)
    d_held, i_held = nn_distances(x_held, x_train, chunk)
    points = prepare(x_train, "train")
    train_nn = ranked_neighbours(points, points, [1], chunk)[0][:, 0].sqrt().numpy()  # rank 0 is itself
    cells = n_cells or max(1, min(50, len(x_held) // 50, len(x_fake) // 50))
    c_t, used = data_copying_ct(x_fake, x_train, x_held, min(cells, len(x_train)), seed, chunk=chunk)
    median_held = float(np.median(d_held))
    return {
        "memo_nn_ratio": float(np.median(d_fake)) / median_held if median_held > 0 else float("nan"),
        "memo_mannwhitney_p": float(mannwhitneyu(d_fake, d_held, alternative="less").pvalue),
        "memo_copy_fraction": float(np.mean(d_fake < np.percentile(d_held, 1))),
        "memo_ct": c_t,
        "memo_ct_cells": float(used),
        "memo_authentic_fraction": _authentic(d_fake, i_fake, train_nn),
        "memo_authentic_fraction_heldout": _authentic(d_held, i_held, train_nn),
    }


def closest_pairs(fake: Array, train: Array, n: int = 8,
                  chunk: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The n samples nearest to any training point, nearest first: (fake_idx, train_idx, dist), for the picture."""
    dist, idx = nn_distances(fake, train, chunk)
    order = np.argsort(dist, kind="stable")[:n]
    return order, idx[order], dist[order]
