"""Memorization tests: planted copies are flagged by every test, fresh samples by none."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from darkroom.errors import UserError
from darkroom.metrics.memorization import closest_pairs, data_copying_ct, kmeans, memorization_report, nn_distances


def _mixture(rng: np.random.Generator, n: int, d: int = 8) -> np.ndarray:
    centers = np.random.default_rng(123).standard_normal((6, d)) * 4  # the same mixture every call
    return centers[rng.integers(0, 6, n)] + rng.standard_normal((n, d))


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"train": _mixture(rng, 1500), "heldout": _mixture(rng, 800), "fresh": _mixture(rng, 800)}


def test_planted_copies_are_flagged_by_every_test(data: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(1)
    copies = data["train"][rng.choice(1500, 800, replace=False)] + 1e-3 * rng.standard_normal((800, 8))
    report = memorization_report(copies, data["train"], data["heldout"], seed=0)
    assert report["memo_nn_ratio"] < 0.05
    assert report["memo_mannwhitney_p"] < 0.01
    assert report["memo_copy_fraction"] > 0.95
    assert report["memo_ct"] < -5 and report["memo_ct_cells"] >= 5
    assert report["memo_authentic_fraction"] < 0.05


def test_fresh_samples_are_not_flagged(data: dict[str, np.ndarray]) -> None:
    report = memorization_report(data["fresh"], data["train"], data["heldout"], seed=0)
    assert 0.85 < report["memo_nn_ratio"] < 1.15
    assert report["memo_mannwhitney_p"] > 0.01
    assert report["memo_copy_fraction"] < 0.05
    assert abs(report["memo_ct"]) < 3
    assert abs(report["memo_authentic_fraction"] - report["memo_authentic_fraction_heldout"]) < 0.1


def test_half_copied_samples_show_up_in_between(data: dict[str, np.ndarray]) -> None:
    mixed = np.concatenate([data["fresh"][:400], data["train"][:400]])
    report = memorization_report(mixed, data["train"], data["heldout"], seed=0)
    assert report["memo_copy_fraction"] == pytest.approx(0.5, abs=0.05)
    assert report["memo_mannwhitney_p"] < 0.01


def test_nn_distances_and_closest_pairs_match_brute_force(data: dict[str, np.ndarray]) -> None:
    queries = data["fresh"][:100].copy()
    queries[7] = data["train"][42]  # an exact copy must come out first, at distance 0
    dist, idx = nn_distances(queries, data["train"], chunk=33)
    full = cdist(queries, data["train"])
    np.testing.assert_allclose(dist, full.min(1), atol=1e-12)
    assert (idx == full.argmin(1)).all()
    fake_idx, train_idx, pair_dist = closest_pairs(queries, data["train"], n=5)
    assert fake_idx[0] == 7 and train_idx[0] == 42 and pair_dist[0] == 0
    assert (np.diff(pair_dist) >= 0).all() and np.allclose(pair_dist, full.min(1)[fake_idx])


def test_kmeans_is_seeded_and_finds_planted_clusters() -> None:
    rng = np.random.default_rng(2)
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = centers.repeat(100, 0) + 0.1 * rng.standard_normal((300, 2))
    found, labels = kmeans(x, 3, seed=0)
    again, _ = kmeans(x, 3, seed=0)
    assert np.array_equal(found, again)
    assert np.abs(np.sort(found, 0) - np.sort(centers, 0)).max() < 0.1
    assert len(set(labels[:100])) == len(set(labels[100:200])) == 1 and len(set(labels)) == 3


def test_ct_is_nan_without_populated_cells_and_width_is_checked(data: dict[str, np.ndarray]) -> None:
    c_t, used = data_copying_ct(data["fresh"][:10], data["train"], data["heldout"], n_cells=5, seed=0)
    assert np.isnan(c_t) and used == 0
    with pytest.raises(UserError, match="width"):
        memorization_report(data["fresh"][:, :4], data["train"], data["heldout"])


def test_score_features_and_floor() -> None:
    from darkroom.metrics.floor import score_features, with_floor

    rng = np.random.default_rng(3)
    train, heldout = _mixture(rng, 600), _mixture(rng, 300)
    pred_real, pred_fake = rng.integers(0, 4, 300), rng.integers(0, 2, 300)  # the fake half of the classes
    copies = train[:300] + 1e-3
    scores = score_features(copies, heldout, pred_fake, pred_real, train, n_classes=4, seed=0)
    floor = score_features(train[300:], heldout, pred_real, pred_real, None, 4, 0)
    assert all(isinstance(v, float) for v in scores.values())
    assert scores["modes_hit"] == 2 and floor["modes_hit"] == 4
    assert scores["memo_copy_fraction"] == 1.0 and "memo_copy_fraction" not in floor
    assert scores["n_fake"] == floor["n_fake"] == 300
    merged = with_floor(scores, floor)
    keys = list(merged)
    assert keys.index("frechet_inception_distance_floor") == keys.index("frechet_inception_distance") + 1
    assert merged["precision_floor"] == floor["precision"] and "memo_ct_floor" not in merged
