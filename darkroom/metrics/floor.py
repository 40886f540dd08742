"""Every sample metric on one feature set (what `darkroom eval` runs), and the floor merge: the same
metrics between two real sets of the same size, reported beside each score as `<metric>_floor`."""
from __future__ import annotations

import numpy as np
import torch

from darkroom.metrics.fid import as_features, fid_from_features, kid
from darkroom.metrics.manifold import prdc
from darkroom.metrics.memorization import memorization_report
from darkroom.metrics.modes import mode_stats

Array = np.ndarray | torch.Tensor


def score_features(fake_feats: Array, real_feats: Array, fake_pred: Array | None, real_pred: Array | None,
                   train_feats: Array | None, n_classes: int, seed: int) -> dict[str, float]:
    """FID, KID, precision/recall/density/coverage, class-mode stats (when predictions are given) and
    memorization (when training features are given) of fake vs real features; flat dict of floats.

    real_feats must be data the model never trained on (a test split): it is also the held-out set of
    the memorization tests. Scores depend on the sample counts, so compare runs only at equal n_fake.
    For the floor, call this again with a real set of n_fake samples as `fake` (e.g. a train subsample)
    and train_feats=None: the memorization keys carry their own held-out baseline instead.
    """
    fake = as_features(fake_feats, "fake_feats", min_rows=2)
    real = as_features(real_feats, "real_feats", min_rows=2)
    kid_mean, kid_std = kid(fake, real, seed=seed)
    scores = {
        "n_fake": float(len(fake)),
        "n_real": float(len(real)),
        "frechet_inception_distance": fid_from_features(fake, real),
        "kernel_inception_distance_mean": kid_mean,
        "kernel_inception_distance_std": kid_std,
        **prdc(real, fake, k_pr=min(3, len(fake) - 1, len(real) - 1), k_dc=min(5, len(real) - 1)),
    }
    if fake_pred is not None and real_pred is not None:
        scores.update(mode_stats(fake_pred, real_pred, n_classes))
    if train_feats is not None:
        scores.update(memorization_report(fake, train_feats, real, seed=seed))
    return scores


def with_floor(score_dict: dict[str, float], floor_dict: dict[str, float]) -> dict[str, float]:
    """score_dict plus `<metric>_floor` for every metric the floor also measured, each after its metric."""
    merged: dict[str, float] = {}
    for key, value in score_dict.items():
        merged[key] = value
        if key in floor_dict:
            merged[f"{key}_floor"] = floor_dict[key]
    return merged
