"""The Vendi score (Friedman & Dieng 2023, arXiv:2210.02410): the effective number of distinct samples.

exp(-sum lambda log lambda) over the eigenvalues lambda of K / n, K the (n, n) similarity matrix with k(x, x) = 1.
With the cosine kernel K = X X^T for row-normalised X, whose nonzero eigenvalues are those of X^T X (D, D): the
cost is n D^2, not n^3. n identical samples score 1; n mutually orthogonal ones score n.
"""
from __future__ import annotations

import numpy as np
import torch

from darkroom.errors import UserError
from darkroom.metrics.fid import Features, as_features


def _unit_rows(features: Features) -> torch.Tensor:
    x = torch.from_numpy(as_features(features, "features", min_rows=1))
    norms = x.norm(dim=1, keepdim=True)
    if (norms == 0).any():
        raise UserError("the cosine Vendi score needs features with no all-zero row (its similarity is undefined).")
    return x / norms


def _entropy_exp(eigenvalues: torch.Tensor) -> float:
    p = eigenvalues.clamp_min(0)
    p = p / p.sum()  # the eigenvalues of K / n sum to tr(K) / n = 1; renormalise away round-off
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def vendi_score(features: Features) -> float:
    """Vendi score of (n, D) features under the cosine similarity."""
    x = _unit_rows(features)
    return _entropy_exp(torch.linalg.eigvalsh(x.T @ x / x.shape[0]))


def vendi_replicates(features: Features, counts: np.ndarray) -> np.ndarray:
    """Vendi score (B,) of each bootstrap resample; counts (B, n) say how often each sample is drawn."""
    x = _unit_rows(features)
    out = []
    for row in np.asarray(counts):
        w = torch.from_numpy(np.asarray(row, dtype=np.float64))
        out.append(_entropy_exp(torch.linalg.eigvalsh((x.T * w) @ x / w.sum())))
    return np.array(out)
