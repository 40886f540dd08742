"""Every sample metric on one feature set (what `darkroom eval` runs), and the floor merge: the same
metrics between two real sets of the same size, reported beside each score as `<metric>_floor`.

With resamples > 0 each metric also gets a 95% interval, `<metric>_ci_low` / `<metric>_ci_high`
(darkroom.metrics.intervals: bootstrap standard errors; subset ones for the k-NN metrics).
"""
from __future__ import annotations

import numpy as np
import torch

from darkroom.metrics.fd_infinity import fd_infinity, fd_infinity_replicates
from darkroom.metrics.fid import as_features, fid_from_features, fid_replicates, kid, kid_replicates
from darkroom.metrics.intervals import add_intervals, draw_resamples, is_interval_key, standard_error
from darkroom.metrics.manifold import prdc, prdc_standard_errors
from darkroom.metrics.memorization import memorization_with_replicates
from darkroom.metrics.modes import mode_stats, mode_stats_replicates
from darkroom.metrics.vendi import vendi_replicates, vendi_score

Array = np.ndarray | torch.Tensor
FD_INFINITY_INTERVAL_MAX_DIM = 512  # above it (Inception's 2048) 50 x 15 eigen-solves would dominate the evaluation


def score_features(fake_feats: Array, real_feats: Array, fake_pred: Array | None, real_pred: Array | None,
                   train_feats: Array | None, n_classes: int, seed: int, resamples: int = 0) -> dict[str, float]:
    """FID, FD-infinity, KID, precision/recall/density/coverage, Vendi, class-mode stats (when predictions are
    given) and memorization (when training features are given) of fake vs real features; flat dict of floats.

    real_feats must be data the model never trained on (a test split): it is also the held-out set of
    the memorization tests. Scores depend on the sample counts, so compare runs only at equal n_fake.
    For the floor, call this again with a real set of n_fake samples as `fake` (e.g. a train subsample)
    and train_feats=None: the memorization keys carry their own held-out baseline instead.
    resamples > 0 adds 95% intervals from that many bootstrap resamples of the fake and the real set.
    """
    fake = as_features(fake_feats, "fake_feats", min_rows=2)
    real = as_features(real_feats, "real_feats", min_rows=2)
    kid_mean, kid_std = kid(fake, real, seed=seed)
    k_pr, k_dc = min(3, len(fake) - 1, len(real) - 1), min(5, len(real) - 1)
    scores = {
        "n_fake": float(len(fake)),
        "n_real": float(len(real)),
        "frechet_inception_distance": fid_from_features(fake, real),
        "fd_infinity": fd_infinity(fake, real, seed=seed) if min(len(fake), len(real)) >= 4 else float("nan"),
        "kernel_inception_distance_mean": kid_mean,
        "kernel_inception_distance_std": kid_std,
        **prdc(real, fake, k_pr=k_pr, k_dc=k_dc),
        "vendi_score": vendi_score(fake),
    }
    if fake_pred is not None and real_pred is not None:
        scores.update(mode_stats(fake_pred, real_pred, n_classes))
    memorization: dict[str, np.ndarray] = {}
    resampled = draw_resamples(len(fake), len(real), resamples, seed) if resamples else None
    if train_feats is not None:
        report, memorization = memorization_with_replicates(
            fake, train_feats, real, None if resampled is None else resampled.fake,
            None if resampled is None else resampled.real, seed=seed)
        scores.update(report)
    if resampled is None:
        return scores
    errors = {key: standard_error(values) for key, values in memorization.items()}
    errors.update(_errors(fake, real, fake_pred, real_pred, n_classes, kid_std, k_pr, k_dc, resampled, seed))
    return add_intervals(scores, errors)


def _errors(fake: np.ndarray, real: np.ndarray, fake_pred: Array | None, real_pred: Array | None, n_classes: int,
            kid_std: float, k_pr: int, k_dc: int, resampled, seed: int) -> dict[str, float]:
    """Standard errors of every metric but memorization's, from one set of resamples (k-NN ones from subsets)."""
    w_fake, w_real = resampled.fake, resampled.real
    replicates = {
        "frechet_inception_distance": fid_replicates(fake, real, w_fake, w_real),
        "kernel_inception_distance_mean": kid_replicates(fake, real, w_fake, w_real, subset_std=kid_std),
        "vendi_score": vendi_replicates(fake, w_fake),
    }
    if fake.shape[1] <= FD_INFINITY_INTERVAL_MAX_DIM and min(len(fake), len(real)) >= 4:
        replicates["fd_infinity"] = fd_infinity_replicates(fake, real, w_fake, w_real, seed=seed)
    if fake_pred is not None and real_pred is not None:
        replicates.update(mode_stats_replicates(fake_pred, real_pred, n_classes, w_fake, w_real))
    errors = {key: standard_error(values) for key, values in replicates.items()}
    errors.update(prdc_standard_errors(real, fake, k_pr, k_dc, seed=seed))
    return errors


def with_floor(score_dict: dict[str, float], floor_dict: dict[str, float]) -> dict[str, float]:
    """score_dict plus `<metric>_floor` for every metric the floor also measured, each right after its metric,
    then the metric's interval and the floor's (`<metric>_floor_ci_low`, `<metric>_floor_ci_high`) when measured."""
    merged: dict[str, float] = {}
    for key, value in score_dict.items():
        if is_interval_key(key):
            continue
        merged[key] = value
        if key in floor_dict:
            merged[f"{key}_floor"] = floor_dict[key]
        for end in ("ci_low", "ci_high"):
            if f"{key}_{end}" in score_dict:
                merged[f"{key}_{end}"] = score_dict[f"{key}_{end}"]
        for end in ("ci_low", "ci_high"):
            if key in floor_dict and f"{key}_{end}" in floor_dict:
                merged[f"{key}_floor_{end}"] = floor_dict[f"{key}_{end}"]
    return merged
