"""The Vendi score against its closed forms (identical, orthogonal and grouped points; the n x n definition) and
FD-infinity against the Fréchet distance of Gaussians known in closed form."""
from __future__ import annotations

import math

import numpy as np
import pytest

from darkroom.errors import UserError
from darkroom.metrics.fd_infinity import extrapolate, fd_infinity, fid_curve, subset_sizes
from darkroom.metrics.fid import fid_from_features, frechet_distance
from darkroom.metrics.vendi import vendi_score


def _rotation(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q


@pytest.mark.parametrize("k", [1, 2, 7])
def test_vendi_of_k_identical_points_is_one(k: int) -> None:
    direction = np.random.default_rng(k).standard_normal(16)
    scales = np.linspace(0.5, 3.0, k)[:, None]  # cosine similarity: only directions count
    assert vendi_score(scales * direction) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("k", [2, 5, 12])
def test_vendi_of_k_orthogonal_points_is_k(k: int) -> None:
    points = np.eye(16)[:k] * np.arange(1, k + 1)[:, None] @ _rotation(16, k)  # rotated, scaled: still orthogonal
    assert vendi_score(points) == pytest.approx(float(k), rel=1e-9)


def test_vendi_of_two_orthogonal_groups_is_the_exponential_of_their_entropy() -> None:
    """n1 copies of one direction and n2 of an orthogonal one: K / n has eigenvalues n1 / n and n2 / n, so the
    score is exp(H(p)) with p = n1 / n (Friedman & Dieng's 'effective number')."""
    n1, n2 = 30, 10
    points = np.concatenate([np.tile(np.eye(8)[0], (n1, 1)), np.tile(np.eye(8)[3], (n2, 1))])
    p = np.array([n1, n2]) / (n1 + n2)
    assert vendi_score(points) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-9)


def test_vendi_equals_the_n_by_n_definition() -> None:
    x = np.abs(np.random.default_rng(0).standard_normal((200, 12)))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    eigenvalues = np.clip(np.linalg.eigvalsh(unit @ unit.T / len(x)), 0, None)
    p = eigenvalues[eigenvalues > 1e-15]
    assert vendi_score(x) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-8)
    with pytest.raises(UserError, match="all-zero"):
        vendi_score(np.zeros((3, 4)))


def test_extrapolation_recovers_an_exact_line_in_one_over_n() -> None:
    sizes = np.array([100, 250, 400, 700, 1000])
    intercept, slope = extrapolate(sizes, 2.5 + 300.0 / sizes)
    assert intercept == pytest.approx(2.5, abs=1e-10) and slope == pytest.approx(300.0, rel=1e-10)
    assert list(subset_sizes(10_000, 128)) == list(np.linspace(1000, 10_000, 15).round().astype(int))
    assert subset_sizes(10_000, 2048)[0] == 4098  # at least twice the width, where the 1/N law holds


def test_fid_curve_ends_at_the_full_sets_fid() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((600, 5)), rng.standard_normal((400, 5)) + 0.2
    sizes, values = fid_curve(x, y, points=6, seed=0)
    assert sizes[-1] == 600 and values[-1] == pytest.approx(fid_from_features(x, y), rel=1e-9)
    assert values[0] > values[-1]  # fewer samples, more bias


def test_fd_infinity_removes_the_sample_count_bias_of_gaussians_with_known_fd() -> None:
    """Two Gaussians whose Fréchet distance is known in closed form. FID at n = 1000 in 32 dimensions sits well
    above it (its bias, about tr-terms / n: 0.67 on 3.73 here); FD-infinity, over 40 independent draws, is within
    3 standard errors of the true FD and at most a fifth as far from it as FID."""
    d, draws = 32, 40
    mu_q = np.full(d, 0.1)
    var_p, var_q = np.linspace(0.5, 2.0, d), np.linspace(1.5, 0.7, d)
    truth = frechet_distance(np.zeros(d), np.diag(var_p), mu_q, np.diag(var_q))
    fids, infinities = [], []
    for seed in range(draws):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((1000, d)) * np.sqrt(var_p)
        y = mu_q + rng.standard_normal((1000, d)) * np.sqrt(var_q)
        fids.append(fid_from_features(x, y))
        infinities.append(fd_infinity(x, y, seed=seed))
    fid_bias = np.mean(fids) - truth
    inf_bias, inf_se = np.mean(infinities) - truth, np.std(infinities, ddof=1) / math.sqrt(draws)
    assert fid_bias > 5 * np.std(fids, ddof=1) / math.sqrt(draws)  # the bias FD-infinity exists to remove
    assert abs(inf_bias) < 3 * inf_se
    assert abs(inf_bias) < fid_bias / 5
