"""Mode counting: planted collapse in class histograms, Stacked MNIST ids, the ring/grid toys."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from darkroom.errors import UserError
from darkroom.metrics.modes import (class_histogram, grid_modes, mode_stats, ring_modes, sample_toy, stack_three,
                                    stacked_mode_ids, toy_mode_coverage)
from darkroom.metrics.modes import TOYS


def test_class_histogram_counts_and_rejects_bad_labels() -> None:
    assert class_histogram(torch.tensor([0, 2, 2, 3]), 5).tolist() == [1, 0, 2, 1, 0]
    with pytest.raises(UserError, match="outside"):
        class_histogram(np.array([0, 5]), 5)
    with pytest.raises(UserError, match="integer"):
        class_histogram(np.array([0.0, 1.0]), 5)


def test_mode_stats_sees_planted_collapse() -> None:
    rng = np.random.default_rng(0)
    real = rng.integers(0, 10, 5000)
    balanced = mode_stats(rng.integers(0, 10, 5000), real, 10)
    collapsed = mode_stats(rng.integers(0, 3, 5000), real, 10)  # only classes 0, 1, 2
    assert balanced["modes_hit"] == balanced["modes_hit_real"] == 10
    assert collapsed["modes_hit"] == 3
    assert balanced["mode_kl_fake_real"] < 0.01 and balanced["mode_kl_real_fake"] < 0.01
    # KL(fake || real) with fake uniform on 3 of 10 real-uniform classes is log(10 / 3).
    assert collapsed["mode_kl_fake_real"] == pytest.approx(math.log(10 / 3), abs=0.01)
    assert collapsed["mode_kl_real_fake"] > 2.0  # missed classes cost a lot, finite by smoothing
    assert collapsed["mode_max_fraction"] == pytest.approx(1 / 3, abs=0.03)


def test_min_fraction_decides_what_counts_as_hit() -> None:
    fake = np.array([0] * 990 + [1] * 9 + [2])
    real = np.arange(10).repeat(10)
    assert mode_stats(fake, real, 10)["modes_hit"] == 1  # 1% of 1000 = 10 samples needed
    assert mode_stats(fake, real, 10, min_fraction=0.0)["modes_hit"] == 3


def test_stacked_mnist_helpers() -> None:
    images = torch.arange(6 * 4, dtype=torch.uint8).reshape(6, 1, 2, 2)
    stacked = stack_three(images)
    assert stacked.shape == (2, 3, 2, 2)
    assert torch.equal(stacked[1, 2], images[5, 0]) and torch.equal(stacked[0, 1], images[1, 0])
    ids = stacked_mode_ids(np.array([1, 9]), torch.tensor([2, 0]), np.array([3, 7]))
    assert ids.tolist() == [123, 907]
    n = np.arange(1000)
    all_ids = stacked_mode_ids(n // 100, n // 10 % 10, n % 10)
    assert all_ids.tolist() == n.tolist()
    assert mode_stats(all_ids, all_ids, 1000, min_fraction=0.0)["modes_hit"] == 1000
    with pytest.raises(UserError, match="3N"):
        stack_three(images[:5])


def test_toy_geometry() -> None:
    ring, ring_std = ring_modes()
    assert ring.shape == (8, 2) and ring_std == 0.02
    np.testing.assert_allclose(np.linalg.norm(ring, axis=1), 2.0)
    grid, grid_std = grid_modes()
    assert grid.shape == (25, 2) and grid_std == 0.05
    assert sorted(set(grid[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    with pytest.raises(UserError, match="square"):
        grid_modes(24)


@pytest.mark.parametrize("name", ["ring", "grid"])
def test_true_toy_samples_cover_everything(name: str) -> None:
    samples = sample_toy(name, 2500, torch.Generator().manual_seed(0))
    centers, std = TOYS[name]()
    scores = toy_mode_coverage(samples, centers, std)
    assert scores["toy_modes_captured"] == scores["toy_n_modes"] == len(centers)
    assert scores["toy_high_quality_fraction"] > 0.98  # 3 std in 2-D holds 1 - exp(-4.5) = 98.9%
    assert scores["toy_mode_kl_uniform"] < 0.02
    assert scores["toy_modes_20"] == len(centers) and scores["toy_reverse_kl"] < 0.02


def test_pacgan_ring_and_reverse_kl_over_high_quality_samples() -> None:
    ring, std = TOYS["ring"]()
    np.testing.assert_allclose(np.linalg.norm(ring, axis=1), 1.0)  # PacGAN's ring: unit circle, std 0.01
    assert std == 0.01
    # 2,500 samples: 1,900 on mode 0, 100 on each of modes 1-5, 1 stray on mode 6, 99 far from every mode
    points = np.concatenate([np.repeat(ring[:1], 1900, 0), np.repeat(ring[1:6], 100, 0), ring[6:7],
                             np.full((99, 2), 5.0)])
    scores = toy_mode_coverage(points, ring, std)
    assert scores["toy_modes_captured"] == 7 and scores["toy_modes_20"] == 6
    assert scores["toy_high_quality_fraction"] == pytest.approx(2401 / 2500)
    q = np.array([1900, 100, 100, 100, 100, 100, 1, 0]) / 2401
    expected = sum(v * math.log(v * 8) for v in q if v > 0)
    assert scores["toy_reverse_kl"] == pytest.approx(expected, rel=1e-12)
    nothing = toy_mode_coverage(np.full((10, 2), 5.0), ring, std)
    assert nothing["toy_modes_captured"] == 0 and nothing["toy_reverse_kl"] == pytest.approx(math.log(8))


def test_toy_planted_collapse_and_blur() -> None:
    centers, std = grid_modes()
    rng = np.random.default_rng(1)
    collapsed = centers[rng.integers(0, 5, 2500)] + std * rng.standard_normal((2500, 2))
    scores = toy_mode_coverage(collapsed, centers, std)
    assert scores["toy_modes_captured"] == 5
    assert scores["toy_mode_kl_uniform"] == pytest.approx(math.log(5), abs=0.02)
    blurred = centers[rng.integers(0, 25, 2500)] + 10 * std * rng.standard_normal((2500, 2))
    blur = toy_mode_coverage(blurred, centers, std)
    assert blur["toy_high_quality_fraction"] < 0.1 and blur["toy_modes_captured"] > 20
    with pytest.raises(UserError, match="unknown toy"):
        sample_toy("spiral", 10, torch.Generator())
