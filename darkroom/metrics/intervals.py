"""Bootstrap intervals for the sample metrics (Efron & Tibshirani, An Introduction to the Bootstrap, 1993).

Features are computed once; each replicate redraws the fake and the real set with replacement (multinomial
counts per sample, the training set held fixed: it is what the model saw) and recomputes the statistic from the
counts. With 50 replicates a standard error is estimated to about 10% (a 95% percentile interval would need
about a thousand), so the interval is estimate +- 1.96 bootstrap standard errors, clipped to the metric's range.
It covers the value the estimator averages to at this sample count: the population value for unbiased
estimators (KID), the expected value at n for biased ones (FID, and the k-NN metrics, whose radii shrink with n).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from darkroom.errors import UserError

RESAMPLES = 50  # replicates per interval: the standard error to ~10% (1 / sqrt(2 * 49)) at a bounded cost
LEVEL = 0.95
_Z = {0.9: 1.6448536269514722, 0.95: 1.959963984540054, 0.99: 2.5758293035489004}


@dataclass(frozen=True)
class Resamples:
    """Bootstrap counts: row b says how often replicate b draws each sample (every row sums to n)."""
    fake: np.ndarray  # (B, n_fake) int64
    real: np.ndarray  # (B, n_real) int64

    @property
    def count(self) -> int:
        return int(self.fake.shape[0])


def draw_resamples(n_fake: int, n_real: int, resamples: int = RESAMPLES, seed: int = 0) -> Resamples:
    """Multinomial(n, 1/n) counts for `resamples` replicates of a fake set and a real set, from one seed."""
    if resamples < 2:
        raise UserError(f"a bootstrap interval needs at least 2 resamples, got {resamples}.")
    if n_fake < 2 or n_real < 2:
        raise UserError(f"a bootstrap interval needs at least 2 samples per set, got {n_fake} and {n_real}.")
    rng = np.random.default_rng([seed, 24])

    def counts(n: int) -> np.ndarray:
        draws = rng.integers(0, n, size=(resamples, n))
        out = np.zeros((resamples, n), dtype=np.int64)
        np.add.at(out, (np.arange(resamples)[:, None], draws), 1)
        return out

    return Resamples(counts(n_fake), counts(n_real))


def z_value(level: float = LEVEL) -> float:
    if level not in _Z:
        raise UserError(f"interval level must be one of {sorted(_Z)}, got {level}.")
    return _Z[level]


def standard_error(replicates: np.ndarray) -> float:
    """Sample std of the finite bootstrap replicates (NaN without two of them)."""
    values = np.asarray(replicates, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.std(ddof=1)) if values.size >= 2 else float("nan")


def normal_interval(estimate: float, error: float, low: float = -math.inf, high: float = math.inf,
                    level: float = LEVEL) -> tuple[float, float]:
    """estimate -+ z * standard error, clipped to [low, high]; NaN when either is not finite."""
    if not (math.isfinite(estimate) and math.isfinite(error)):
        return float("nan"), float("nan")
    half = z_value(level) * error
    return max(low, estimate - half), min(high, estimate + half)


# The range each metric's interval is clipped to (fractions in [0, 1], distances and KLs non-negative).
BOUNDS: dict[str, tuple[float, float]] = {
    "frechet_inception_distance": (0.0, math.inf),
    "fd_infinity": (-math.inf, math.inf),  # an extrapolation: it may fall below 0 by its own noise
    "kernel_inception_distance_mean": (-math.inf, math.inf),  # unbiased: below 0 by chance
    "precision": (0.0, 1.0), "recall": (0.0, 1.0), "coverage": (0.0, 1.0), "density": (0.0, math.inf),
    "vendi_score": (1.0, math.inf),
    "modes_hit": (0.0, math.inf), "modes_hit_real": (0.0, math.inf),
    "mode_kl_fake_real": (0.0, math.inf), "mode_kl_real_fake": (0.0, math.inf), "mode_max_fraction": (0.0, 1.0),
    "memo_nn_ratio": (0.0, math.inf), "memo_copy_fraction": (0.0, 1.0), "memo_ct": (-math.inf, math.inf),
    "memo_authentic_fraction": (0.0, 1.0), "memo_authentic_fraction_heldout": (0.0, 1.0),
}


def add_intervals(scores: dict[str, float], errors: dict[str, float], level: float = LEVEL) -> dict[str, float]:
    """scores with `<metric>_ci_low` and `<metric>_ci_high` after each metric that has a standard error."""
    out: dict[str, float] = {}
    for key, value in scores.items():
        out[key] = value
        if key in errors:
            low, high = BOUNDS.get(key, (-math.inf, math.inf))
            out[f"{key}_ci_low"], out[f"{key}_ci_high"] = normal_interval(value, errors[key], low, high, level)
    return out


def is_interval_key(key: str) -> bool:
    return key.endswith(("_ci_low", "_ci_high"))


def separated(low_a: float, high_a: float, low_b: float, high_b: float) -> bool:
    """True when two intervals do not overlap: the difference is beyond both (for two equal-width 95% intervals
    of independent estimates that is a two-sided test at about p < 0.006)."""
    if not all(math.isfinite(v) for v in (low_a, high_a, low_b, high_b)):
        return False
    return high_a < low_b or high_b < low_a
