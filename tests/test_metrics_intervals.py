"""95% intervals: coverage of closed-form values in planted Gaussians, replicates that reduce to the metric on the
full sets, the eval.json key layout and the compare verdicts."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from darkroom.errors import UserError
from darkroom.metrics.fid import fid_from_features, fid_replicates, kid, kid_replicates
from darkroom.metrics.intervals import (add_intervals, draw_resamples, normal_interval, separated,
                                        standard_error)


def _mean_kernel(a: np.ndarray, A: np.ndarray, b: np.ndarray, B: np.ndarray, gamma: float, c: float) -> float:
    """E (gamma x.y + c)^3 for independent x ~ N(a, A), y ~ N(b, B), from the Gaussian moments:
    E x.y = a.b, E (x.y)^2 = tr((A + aa^T)(B + bb^T)), and E (x.y)^3 = sum_ijk E[x_i x_j x_k] E[y_i y_j y_k]
    with E[x_i x_j x_k] = a_i a_j a_k + a_i A_jk + a_j A_ik + a_k A_ij."""
    ab = a @ b
    m2 = np.trace((A + np.outer(a, a)) @ (B + np.outer(b, b)))
    m3 = ab ** 3 + 3 * ab * (a @ B @ a) + 3 * ab * (b @ A @ b) + 3 * ab * np.trace(A @ B) + 6 * (b @ A @ B @ a)
    return gamma ** 3 * m3 + 3 * gamma ** 2 * c * m2 + 3 * gamma * c ** 2 * ab + c ** 3


D = 4
MU_P, COV_P = np.zeros(D), np.eye(D)
MU_Q = np.array([0.6, -0.3, 0.2, 0.0])
COV_Q = np.diag([0.7, 1.3, 1.0, 0.8]) + 0.2


def _draw(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.multivariate_normal(MU_P, COV_P, n), rng.multivariate_normal(MU_Q, COV_Q, n)


def test_closed_form_mmd_matches_a_large_sample() -> None:
    """The closed form the coverage test relies on, against 10^5-sample means of the kernel (an independent check)."""
    rng = np.random.default_rng(0)
    x, y = rng.multivariate_normal(MU_P, COV_P, 200_000), rng.multivariate_normal(MU_Q, COV_Q, 100_000)
    cross = ((x[:100_000] * y).sum(1) / D + 1) ** 3  # k(x_i, y_i) of independent pairs
    within = ((x[:100_000] * x[100_000:]).sum(1) / D + 1) ** 3
    assert cross.mean() == pytest.approx(_mean_kernel(MU_P, COV_P, MU_Q, COV_Q, 1 / D, 1.0), rel=0.01)
    assert within.mean() == pytest.approx(_mean_kernel(MU_P, COV_P, MU_P, COV_P, 1 / D, 1.0), rel=0.01)
    assert abs(cross.mean() - _mean_kernel(MU_P, COV_P, MU_P, COV_P, 1 / D, 1.0)) > 0.05  # the check can tell them apart


def test_kid_interval_covers_the_closed_form_mmd_in_planted_gaussians() -> None:
    """KID is an unbiased estimate of the population MMD^2 of its cubic kernel, whose value between two Gaussians is
    known in closed form: its 95% interval (bootstrap over all pairs plus kid's subset noise) must cover it in at
    least 90 of 100 independent draws. And it must not do so by being huge: its mean half-width stays below twice
    1.96 x the spread of KID over the 100 draws (the bootstrap of this second-order statistic measured 1.3-1.6x
    the true spread near the null, so the intervals are conservative, never absurd)."""
    truth = (_mean_kernel(MU_P, COV_P, MU_P, COV_P, 1 / D, 1.0) + _mean_kernel(MU_Q, COV_Q, MU_Q, COV_Q, 1 / D, 1.0)
             - 2 * _mean_kernel(MU_P, COV_P, MU_Q, COV_Q, 1 / D, 1.0))
    values, halves, covered = [], [], 0
    for seed in range(100):
        x, y = _draw(seed, 400)
        mean, std = kid(x, y, subsets=20, subset_size=200, seed=seed)
        resampled = draw_resamples(400, 400, 50, seed)
        error = standard_error(kid_replicates(x, y, resampled.fake, resampled.real, subset_std=std, subsets=20))
        low, high = normal_interval(mean, error)
        covered += low <= truth <= high
        values.append(mean)
        halves.append((high - low) / 2)
    assert truth > 0.05  # a real difference, not the degenerate null
    assert covered >= 90, f"covered {covered}/100"
    assert np.mean(halves) < 2 * 1.96 * np.std(values, ddof=1)


def test_fid_interval_covers_the_expected_fid_at_that_n() -> None:
    """FID is biased at finite n (E FID_n > FD), so its interval is for the value FID averages to at that n, the
    quantity two runs evaluated at the same n compare. That expectation has no closed form; it is measured here by
    2000 independent draws (its Monte Carlo error, about 2% of the interval's half-width, is negligible). The 95%
    interval must cover it in at least 90 of 100 draws, with a mean half-width below twice the true one."""
    n = 300
    draws = np.array([fid_from_features(*_draw(10_000 + i, n)) for i in range(2000)])
    expected, spread = draws.mean(), draws.std(ddof=1)
    covered, halves = 0, []
    for seed in range(100):
        x, y = _draw(seed, n)
        resampled = draw_resamples(n, n, 50, seed)
        low, high = normal_interval(fid_from_features(x, y), standard_error(fid_replicates(x, y, resampled.fake,
                                                                                             resampled.real)), 0.0)
        covered += low <= expected <= high
        halves.append((high - low) / 2)
    assert covered >= 90, f"covered {covered}/100"
    assert np.mean(halves) < 2 * 1.96 * spread


def test_rows_of_ones_give_back_the_full_sample_values() -> None:
    """A resample that draws every sample once is the sample: each replicate function then returns the metric."""
    from darkroom.metrics.memorization import memorization_report, memorization_with_replicates
    from darkroom.metrics.modes import mode_stats, mode_stats_replicates
    from darkroom.metrics.vendi import vendi_replicates, vendi_score

    rng = np.random.default_rng(1)
    x, y, train = rng.standard_normal((300, 6)), rng.standard_normal((250, 6)) + 0.3, rng.standard_normal((400, 6))
    px, py = rng.integers(0, 4, 300), rng.integers(0, 4, 250)
    ones_x, ones_y = np.ones((2, 300), np.int64), np.ones((2, 250), np.int64)
    assert fid_replicates(x, y, ones_x, ones_y) == pytest.approx([fid_from_features(x, y)] * 2, rel=1e-10)
    full_kid = kid(x[:250], y, subsets=1, subset_size=1000)[0]  # one subset of all of both sets: the full U-statistic
    assert kid_replicates(x[:250], y, ones_y, ones_y) == pytest.approx([full_kid] * 2, rel=1e-9)
    assert vendi_replicates(x, ones_x) == pytest.approx([vendi_score(x)] * 2, rel=1e-10)
    modes = mode_stats_replicates(px, py, 4, ones_x, ones_y)
    assert {key: values[0] for key, values in modes.items()} == pytest.approx(mode_stats(px, py, 4))
    report, replicates = memorization_with_replicates(x, train, y, ones_x, ones_y, seed=0)
    assert report == memorization_report(x, train, y, seed=0)
    assert {key: values[1] for key, values in replicates.items()} == pytest.approx(
        {key: report[key] for key in replicates})
    assert "memo_mannwhitney_p" not in replicates  # a p-value is already the test's uncertainty statement


def test_resamples_are_seeded_multinomial_counts() -> None:
    first = draw_resamples(500, 300, 20, seed=4)
    assert first.fake.shape == (20, 500) and first.real.shape == (20, 300) and first.count == 20
    assert (first.fake.sum(1) == 500).all() and (first.real.sum(1) == 300).all()
    assert np.array_equal(first.fake, draw_resamples(500, 300, 20, seed=4).fake)
    assert not np.array_equal(first.fake, draw_resamples(500, 300, 20, seed=5).fake)
    # each sample is drawn Binomial(n, 1/n) times: mean 1, a share of about e^-1 never drawn
    assert first.fake.mean() == 1.0 and abs((first.fake == 0).mean() - math.exp(-1)) < 0.02
    with pytest.raises(UserError, match="at least 2 resamples"):
        draw_resamples(10, 10, 1)


def test_intervals_are_clipped_to_each_metric_range_and_nan_safe() -> None:
    replicates = np.array([0.0, 0.2, 0.4])  # std 0.2: half-width 0.392
    assert normal_interval(0.5, standard_error(replicates)) == pytest.approx((0.108, 0.892), abs=1e-3)
    out = add_intervals({"coverage": 0.9, "frechet_inception_distance": 0.1, "n_fake": 3.0},
                        {"coverage": 0.2, "frechet_inception_distance": 0.2})
    assert list(out) == ["coverage", "coverage_ci_low", "coverage_ci_high", "frechet_inception_distance",
                         "frechet_inception_distance_ci_low", "frechet_inception_distance_ci_high", "n_fake"]
    assert out["coverage_ci_high"] == 1.0 and out["frechet_inception_distance_ci_low"] == 0.0
    assert all(math.isnan(v) for v in normal_interval(float("nan"), 0.1))
    assert math.isnan(standard_error(np.array([1.0, float("nan")])))


def test_separated_means_no_overlap() -> None:
    assert separated(0.0, 1.0, 1.5, 2.0) and separated(1.5, 2.0, 0.0, 1.0)
    assert not separated(0.0, 1.0, 0.9, 2.0)
    assert not separated(0.0, float("nan"), 3.0, 4.0)


def test_knn_subset_errors_match_the_spread_over_independent_draws() -> None:
    """The k-NN metrics' standard errors (from disjoint folds with radii of their own) against the standard
    deviation of each metric over 40 independent planted draws: within 0.6x-1.6x (the spread itself is known
    to about 11% from 40 draws)."""
    from darkroom.metrics.manifold import prdc, prdc_standard_errors

    values, errors = [], []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        real, fake = rng.standard_normal((1000, 8)), rng.standard_normal((1000, 8)) * 1.1 + 0.1
        scores = prdc(real, fake)
        values.append([scores[key] for key in ("precision", "recall", "density", "coverage")])
        se = prdc_standard_errors(real, fake, seed=seed)
        errors.append([se[key] for key in ("precision", "recall", "density", "coverage")])
    ratio = np.mean(errors, axis=0) / np.std(values, axis=0, ddof=1)
    assert ((ratio > 0.6) & (ratio < 1.6)).all(), ratio


def test_score_features_with_intervals_and_the_floor_layout() -> None:
    from darkroom.metrics.floor import score_features, with_floor

    rng = np.random.default_rng(3)
    train, real, fake = (rng.standard_normal((600, 8)) for _ in range(3))
    pred = rng.integers(0, 4, 600)
    scores = score_features(fake, real, pred, pred, train, 4, 0, resamples=20)
    floor = score_features(train, real, pred, pred, None, 4, 0, resamples=20)
    for key in ("frechet_inception_distance", "fd_infinity", "kernel_inception_distance_mean", "precision", "recall",
                "density", "coverage", "vendi_score", "modes_hit", "mode_kl_fake_real", "memo_nn_ratio",
                "memo_copy_fraction", "memo_ct", "memo_authentic_fraction"):
        low, high = scores[f"{key}_ci_low"], scores[f"{key}_ci_high"]
        assert low <= scores[key] <= high, key
    assert "memo_mannwhitney_p_ci_low" not in scores
    merged = with_floor(scores, floor)
    keys = list(merged)
    start = keys.index("frechet_inception_distance")
    assert keys[start:start + 6] == ["frechet_inception_distance", "frechet_inception_distance_floor",
                                     "frechet_inception_distance_ci_low", "frechet_inception_distance_ci_high",
                                     "frechet_inception_distance_floor_ci_low", "frechet_inception_distance_floor_ci_high"]
    assert merged["precision_floor_ci_high"] == floor["precision_ci_high"]
    assert "memo_ct_floor_ci_low" not in merged and "memo_ct_ci_low" in merged
    assert scores == score_features(fake, real, pred, pred, train, 4, 0, resamples=20)  # seeded
    # the planted difference: the same sets are within the intervals, a shifted fake set is beyond them
    shifted = score_features(fake + 1.0, real, pred, pred, None, 4, 0, resamples=20)
    assert separated(floor["frechet_inception_distance_ci_low"], floor["frechet_inception_distance_ci_high"],
                     shifted["frechet_inception_distance_ci_low"], shifted["frechet_inception_distance_ci_high"])


def _write_eval(folder, fid: float, half: float, network: str = "net", n: float = 1000.0):
    folder.mkdir()
    (folder / "eval.json").write_text(json.dumps({
        "feature_network": network, "n_fake": n, "frechet_inception_distance": fid,
        "frechet_inception_distance_floor": 0.5, "frechet_inception_distance_ci_low": fid - half,
        "frechet_inception_distance_ci_high": fid + half, "memo_mannwhitney_p": 0.3}))
    return str(folder)


def test_compare_runs_says_which_differences_are_beyond_the_intervals(tmp_path) -> None:
    from darkroom.evaluate.commands import compare_runs

    a = _write_eval(tmp_path / "a", 10.0, 1.0)
    b = _write_eval(tmp_path / "b", 14.0, 1.0)  # [13, 15] vs [9, 11]: beyond
    c = _write_eval(tmp_path / "c", 11.5, 1.0)  # [10.5, 12.5] overlaps a's
    lines = compare_runs([a, b, c])
    assert len(lines) == 3  # one metric with intervals (the p-value has none), three pairs
    assert lines[0].startswith(f"frechet_inception_distance: {a} 10 [9, 11] vs {b} 14 [13, 15]")
    assert lines[0].endswith(f"{b} higher, beyond the intervals")
    assert lines[1].endswith("within the intervals") and f"vs {c}" in lines[1]
    assert lines[2].endswith(f"{c} lower, beyond the intervals")
    other = _write_eval(tmp_path / "d", 10.0, 1.0, network="inception")
    assert compare_runs([a, other]) == [f"{other} and {a} differ in feature_network (inception vs net): "
                                        "their scores do not compare"]
    with pytest.raises(UserError, match="no eval.json"):
        compare_runs([a, str(tmp_path / "missing")])
    with pytest.raises(UserError, match="at least two"):
        compare_runs([a])
