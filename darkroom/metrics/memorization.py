"""Memorization: nearest-training-neighbour distances of samples against those of held-out real data,
the data-copying test C_T (Meehan, Chaudhuri, Dasgupta 2020, arXiv:2004.05675) and authenticity
(Alaa et al. 2022, arXiv:2102.08921). All distances are exact Euclidean on features.
"""
from __future__ import annotations

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


def _ct_cells(fake: np.ndarray, train: np.ndarray, heldout: np.ndarray, n_cells: int, seed: int,
              chunk: int | None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per training k-means cell holding fake, held-out and training points: (fake indices, held-out indices,
    their NN distances to that cell's training points), the raw material of C_T and of its resamples."""
    centroids, train_cell = kmeans(train, n_cells, seed)
    centres = torch.from_numpy(centroids)
    fake_cell = _sqdist(torch.from_numpy(fake), centres).argmin(dim=1).numpy()
    held_cell = _sqdist(torch.from_numpy(heldout), centres).argmin(dim=1).numpy()
    cells = []
    for cell in range(n_cells):
        in_fake, in_held = np.flatnonzero(fake_cell == cell), np.flatnonzero(held_cell == cell)
        if not len(in_fake) or not len(in_held) or not (train_cell == cell).any():
            continue
        cell_train = train[train_cell == cell]
        cells.append((in_fake, in_held, nn_distances(fake[in_fake], cell_train, chunk)[0],
                      nn_distances(heldout[in_held], cell_train, chunk)[0]))
    return cells


def _z_u_resampled(d_fake: np.ndarray, d_held: np.ndarray, w_fake: np.ndarray, w_held: np.ndarray) -> np.ndarray:
    """Meehan's Z-scored Mann-Whitney U of fake vs held-out NN distances (continuity-corrected, no tie term;
    Z << 0 means the samples sit closer to the training data than new real data does), (B,) for the samples
    repeated by counts w_fake (B, m), w_held (B, n). U counts pairs with fake > held, ties a half (as scipy's
    mannwhitneyu statistic), from one sort of the held-out distances."""
    order = np.argsort(d_held, kind="stable")
    held = d_held[order]
    cumulative = np.concatenate([np.zeros((w_held.shape[0], 1)), np.cumsum(w_held[:, order], axis=1)], axis=1)
    below = cumulative[:, np.searchsorted(held, d_fake, "left")]  # (B, m) held-out weight under each fake
    upto = cumulative[:, np.searchsorted(held, d_fake, "right")]
    u = (w_fake * (below + upto) / 2).sum(axis=1)
    m, n = w_fake.sum(axis=1), w_held.sum(axis=1)
    return (u - m * n / 2 + 0.5) / np.sqrt(m * n * (m + n + 1) / 12)


def _ct_from_cells(cells: list, fake_counts: np.ndarray, held_counts: np.ndarray,
                   min_cell_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """C_T (B,) and cells used (B,) of resamples: counts (B, N_fake), (B, N_held) say how often each point is
    drawn (rows of ones: the sets themselves). C_T is NaN where no cell qualifies."""
    total = np.zeros(fake_counts.shape[0])
    weight = np.zeros(fake_counts.shape[0])
    used = np.zeros(fake_counts.shape[0])
    for in_fake, in_held, d_fake, d_held in cells:
        w_fake, w_held = fake_counts[:, in_fake].astype(np.float64), held_counts[:, in_held].astype(np.float64)
        ok = (w_fake.sum(axis=1) > min_cell_samples) & (w_held.sum(axis=1) > 0)
        if not ok.any():
            continue
        share = w_held.sum(axis=1) / held_counts.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = _z_u_resampled(d_fake, d_held, w_fake, w_held)
        total += np.where(ok, share * z, 0.0)
        weight += np.where(ok, share, 0.0)
        used += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(used > 0, total / weight, np.nan), used


def data_copying_ct(fake: np.ndarray, train: np.ndarray, heldout: np.ndarray, n_cells: int, seed: int,
                    min_cell_samples: int = 20, chunk: int | None = None) -> tuple[float, int]:
    """C_T (arXiv:2004.05675): training-set k-means cells; in each, Z_U of the NN distances to that cell's
    training points; averaged with weights = held-out share of the cell. Cells with at most
    min_cell_samples samples (Meehan's tau = 20 / m) or no held-out point are left out.

    Returns (C_T, cells used); C_T is NaN when no cell qualifies.
    """
    cells = _ct_cells(fake, train, heldout, n_cells, seed, chunk)
    c_t, used = _ct_from_cells(cells, np.ones((1, len(fake))), np.ones((1, len(heldout))), min_cell_samples)
    return float(c_t[0]), int(used[0])


def _checked(fake: Array, train: Array, heldout_real: Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x_fake = as_features(fake, "fake", min_rows=1)
    x_train = as_features(train, "train", min_rows=2)
    x_held = as_features(heldout_real, "heldout_real", min_rows=1)
    if not x_fake.shape[1] == x_train.shape[1] == x_held.shape[1]:
        raise UserError(f"fake, train and heldout_real features differ in width: "
                        f"{x_fake.shape[1]}, {x_train.shape[1]}, {x_held.shape[1]}.")
    return x_fake, x_train, x_held


def _scores(d_fake: np.ndarray, d_held: np.ndarray, auth_fake: np.ndarray, auth_held: np.ndarray,
            w_fake: np.ndarray, w_held: np.ndarray) -> dict[str, float]:
    """The distance-based memorization scores of one (re)sample; w_fake, w_held count how often each point is drawn."""
    fake, held = np.repeat(d_fake, w_fake), np.repeat(d_held, w_held)
    median_held = float(np.median(held))
    return {
        "memo_nn_ratio": float(np.median(fake)) / median_held if median_held > 0 else float("nan"),
        "memo_mannwhitney_p": float(mannwhitneyu(fake, held, alternative="less").pvalue),
        "memo_copy_fraction": float(np.mean(fake < np.percentile(held, 1))),
        "memo_authentic_fraction": float(np.dot(w_fake, auth_fake) / w_fake.sum()),
        "memo_authentic_fraction_heldout": float(np.dot(w_held, auth_held) / w_held.sum()),
    }


def memorization_with_replicates(fake: Array, train: Array, heldout_real: Array, fake_counts: np.ndarray | None,
                                 held_counts: np.ndarray | None, seed: int = 0, n_cells: int | None = None,
                                 chunk: int | None = None) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """`memorization_report` and each score (B,) of the bootstrap resamples of fake and held-out points (counts
    (B, N) per set; None for none). The training set stays fixed: it is what the model saw. The Mann-Whitney
    p-value gets no replicates: it is already the uncertainty statement of its test."""
    x_fake, x_train, x_held = _checked(fake, train, heldout_real)
    d_fake, i_fake = nn_distances(x_fake, x_train, chunk)
    d_held, i_held = nn_distances(x_held, x_train, chunk)
    points = prepare(x_train, "train")
    train_nn = ranked_neighbours(points, points, [1], chunk)[0][:, 0].sqrt().numpy()  # rank 0 is itself
    cells = n_cells or max(1, min(50, len(x_held) // 50, len(x_fake) // 50))
    ct_cells = _ct_cells(x_fake, x_train, x_held, min(cells, len(x_train)), seed, chunk)
    # Alaa 2022: a sample is inauthentic when it is closer to its nearest training point than that point is to
    # any other training point.
    auth_fake = (d_fake >= train_nn[i_fake]).astype(np.float64)
    auth_held = (d_held >= train_nn[i_held]).astype(np.float64)
    w_fake, w_held = np.ones((1, len(x_fake)), np.int64), np.ones((1, len(x_held)), np.int64)
    if fake_counts is not None and held_counts is not None:
        w_fake, w_held = np.concatenate([w_fake, fake_counts]), np.concatenate([w_held, held_counts])
    rows = [_scores(d_fake, d_held, auth_fake, auth_held, w_f, w_h) for w_f, w_h in zip(w_fake, w_held)]
    c_t, used = _ct_from_cells(ct_cells, w_fake, w_held, 20)
    report = {**rows[0], "memo_ct": float(c_t[0]), "memo_ct_cells": float(used[0])}
    report = {key: report[key] for key in ("memo_nn_ratio", "memo_mannwhitney_p", "memo_copy_fraction", "memo_ct",
                                           "memo_ct_cells", "memo_authentic_fraction", "memo_authentic_fraction_heldout")}
    if len(rows) == 1:
        return report, {}
    replicates = {key: np.array([row[key] for row in rows[1:]]) for key in rows[0] if key != "memo_mannwhitney_p"}
    return report, {**replicates, "memo_ct": c_t[1:]}


def memorization_report(fake: Array, train: Array, heldout_real: Array, seed: int = 0, n_cells: int | None = None,
                        chunk: int | None = None) -> dict[str, float]:
    """Every memorization test on one sample set; heldout_real must be real data the model never saw.

    n_cells defaults to min(50, N_heldout // 50, N_fake // 50), at least 1 (Meehan used 50 on MNIST).
    """
    return memorization_with_replicates(fake, train, heldout_real, None, None, seed, n_cells, chunk)[0]


def closest_pairs(fake: Array, train: Array, n: int = 8,
                  chunk: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The n samples nearest to any training point, nearest first: (fake_idx, train_idx, dist), for the picture."""
    dist, idx = nn_distances(fake, train, chunk)
    order = np.argsort(dist, kind="stable")[:n]
    return order, idx[order], dist[order]
