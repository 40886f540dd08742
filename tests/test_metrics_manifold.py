"""k-NN manifold metrics: planted mode collapse, exactness against float64 brute force, the prdc package."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from darkroom.errors import UserError
from darkroom.metrics.manifold import density_coverage, knn_distances, prdc, precision_recall


def _modes(rng: np.random.Generator, n_per_mode: int, modes: list[int], d: int = 16) -> np.ndarray:
    centers = np.eye(10, d) * 20.0  # 10 modes, 28 apart, unit std: well separated
    return np.concatenate([centers[m] + rng.standard_normal((n_per_mode, d)) for m in modes])


def _brute_force(real: np.ndarray, fake: np.ndarray, k_pr: int, k_dc: int) -> dict[str, float]:
    """The definitions in float64 with closed balls (<=), full distance matrices."""
    rr, ff, rf = cdist(real, real), cdist(fake, fake), cdist(real, fake)
    r_pr, r_dc = np.sort(rr, 1)[:, k_pr], np.sort(rr, 1)[:, k_dc]
    f_pr = np.sort(ff, 1)[:, k_pr]
    return {"precision": (rf <= r_pr[:, None]).any(0).mean(), "recall": (rf <= f_pr[None, :]).any(1).mean(),
            "density": (rf <= r_dc[:, None]).sum(0).mean() / k_dc, "coverage": (rf <= r_dc[:, None]).any(1).mean()}


def test_planted_mode_collapse_is_seen_by_recall_and_coverage_only() -> None:
    rng = np.random.default_rng(0)
    real = _modes(rng, 100, list(range(10)))
    fake = _modes(rng, 1000, [0])  # every sample from one of the ten modes
    scores = prdc(real, fake)
    assert scores["precision"] > 0.7
    assert scores["recall"] < 0.2
    assert scores["coverage"] < 0.2


def test_same_distribution_scores_near_one() -> None:
    rng = np.random.default_rng(1)
    real, fake = _modes(rng, 100, list(range(10))), _modes(rng, 100, list(range(10)))
    scores = prdc(real, fake)
    assert scores["precision"] > 0.6 and scores["recall"] > 0.6
    assert 0.7 < scores["density"] < 1.3 and scores["coverage"] > 0.85
    identical = prdc(real, real)
    assert identical["precision"] == identical["recall"] == identical["coverage"] == 1.0


def test_split_functions_match_prdc() -> None:
    rng = np.random.default_rng(2)
    real, fake = rng.standard_normal((300, 8)), rng.standard_normal((250, 8)) + 0.3
    both = prdc(real, fake, k_pr=4, k_dc=6)
    assert precision_recall(real, fake, k=4) == {k: both[k] for k in ("precision", "recall")}
    assert density_coverage(real, fake, k=6) == {k: both[k] for k in ("density", "coverage")}


@pytest.mark.parametrize("chunk", [None, 7])
def test_exact_on_ties_and_large_offsets(chunk: int | None) -> None:
    # Integer lattice points far from the origin: many exactly tied distances and large norms, where
    # float32 alone would misjudge ball membership.
    rng = np.random.default_rng(3)
    real = rng.integers(0, 3, (200, 6)).astype(np.float64) + 1e4
    fake = rng.integers(0, 3, (150, 6)).astype(np.float64) + 1e4
    expected = _brute_force(real, fake, 3, 5)
    assert prdc(real, fake, chunk=chunk) == pytest.approx(expected, abs=1e-12)


def test_exact_in_high_dimension() -> None:
    rng = np.random.default_rng(4)
    real, fake = rng.standard_normal((400, 512)), rng.standard_normal((300, 512)) * 1.02 + 0.01
    assert prdc(real, fake) == pytest.approx(_brute_force(real, fake, 3, 5), abs=1e-12)


def test_exact_with_widely_varying_norms() -> None:
    # A tight cluster plus far outliers: error bounds differ by orders of magnitude between neighbours.
    rng = np.random.default_rng(8)
    real = np.concatenate([rng.standard_normal((250, 32)) * 0.01, rng.standard_normal((50, 32)) * 100])
    fake = np.concatenate([rng.standard_normal((200, 32)) * 0.01, rng.standard_normal((40, 32)) * 100])
    assert prdc(real, fake) == pytest.approx(_brute_force(real, fake, 3, 5), abs=1e-12)
    dist, _ = knn_distances(fake, real, k=4)
    np.testing.assert_allclose(dist, np.sort(cdist(fake, real), 1)[:, :4], rtol=1e-12, atol=1e-15)


def test_knn_distances_match_brute_force_with_duplicates() -> None:
    rng = np.random.default_rng(5)
    points = rng.standard_normal((120, 10))
    points[60:] = points[:60]  # every point has an exact duplicate
    queries = np.concatenate([points[:10], rng.standard_normal((30, 10))])
    dist, idx = knn_distances(queries, points, k=3, chunk=16)
    full = cdist(queries, points)
    np.testing.assert_allclose(dist, np.sort(full, 1)[:, :3], atol=1e-12)
    np.testing.assert_allclose(np.take_along_axis(full, idx, 1), dist, atol=1e-12)
    assert (dist[:10, :2] == 0).all()


def test_agrees_with_prdc_package() -> None:
    compute_prdc = pytest.importorskip("prdc", reason="pip install prdc scikit-learn").compute_prdc
    rng = np.random.default_rng(6)
    real = np.abs(rng.standard_normal((500, 64))).astype(np.float32)
    fake = (np.abs(rng.standard_normal((400, 64))) * 1.1).astype(np.float32)
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the sample counts
        pr, dc = compute_prdc(real, fake, 3), compute_prdc(real, fake, 5)
    ours = prdc(real, fake)
    expected = {"precision": pr["precision"], "recall": pr["recall"], "density": dc["density"], "coverage": dc["coverage"]}
    assert ours == pytest.approx({k: float(v) for k, v in expected.items()}, abs=1e-6)


def test_rejects_mismatched_widths_and_large_k() -> None:
    rng = np.random.default_rng(7)
    with pytest.raises(UserError, match="features per sample"):
        prdc(rng.standard_normal((20, 4)), rng.standard_normal((20, 5)))
    with pytest.raises(UserError, match="ranks"):
        prdc(rng.standard_normal((4, 4)), rng.standard_normal((20, 4)), k_dc=5)
