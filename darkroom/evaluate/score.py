"""Score a set of generated images against real ones: features -> darkroom.metrics -> flat dict, floor beside.

The floor is every metric between a real training subsample of the same size and the same real
reference set: the value a perfect generator would get at this n. Every metric and floor carries a 95%
interval (`<metric>_ci_low`, `<metric>_ci_high`, `<metric>_floor_ci_low`, `<metric>_floor_ci_high`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from darkroom.evaluate.features import DomainFeatures
from darkroom.evaluate.figures import class_histogram_figure, nearest_pairs_figure
from darkroom.metrics.floor import score_features, with_floor
from darkroom.metrics.intervals import LEVEL, RESAMPLES, is_interval_key
from darkroom.metrics.memorization import closest_pairs


@dataclass
class Judges:
    """Feature vectors from `inception` when given, else from the domain classifier; classes always from it."""
    domain: DomainFeatures
    inception: torch.nn.Module | None = None
    device: torch.device = torch.device("cpu")

    @property
    def name(self) -> str:
        return "Inception-v3 (FID weights) pool features" if self.inception is not None else self.domain.name

    def __call__(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        features, predicted = self.domain(images)
        if self.inception is not None:
            from darkroom.metrics.features import inception_features
            features = inception_features(self.inception, images, 100, self.device)
        return features, predicted


# what memorization.memorization_with_replicates reports (tests check the two lists agree)
MEMORIZATION_KEYS = ("memo_nn_ratio", "memo_mannwhitney_p", "memo_copy_fraction", "memo_ct", "memo_ct_cells",
                     "memo_authentic_fraction", "memo_authentic_fraction_heldout")


def score_images(fake: torch.Tensor, real: torch.Tensor, train: torch.Tensor | None, judges: Judges, seed: int,
                 figures_dir: Path | None) -> dict:
    """All metrics of `fake` (uint8 N,C,H,W) vs held-out `real`, memorization against `train`, with floors.

    train None: `real` is itself the training data (no held-out images exist), so the scores that compare with
    held-out images, memorization and the floor, are not computed; the nearest-image figure uses `real`."""
    f_fake, p_fake = judges(fake)
    f_real, p_real = judges(real)
    n_classes = len(judges.domain.classes)
    if train is None:
        scores = score_features(f_fake, f_real, p_fake, p_real, None, n_classes, seed, resamples=RESAMPLES)
        result = {"feature_network": judges.name, "classifier": judges.domain.name, "interval_level": LEVEL,
                  "interval_resamples": float(RESAMPLES), **scores}
        train, f_train = real, f_real
    else:
        f_train, p_train = judges(train)
        scores = score_features(f_fake, f_real, p_fake, p_real, f_train, n_classes, seed, resamples=RESAMPLES)
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 1))[:len(fake)].numpy()
        floor = score_features(f_train[pick], f_real, p_train[pick], p_real, None, n_classes, seed, resamples=RESAMPLES)
        result = {"feature_network": judges.name, "classifier": judges.domain.name, "n_train_reference": float(len(train)),
                  "interval_level": LEVEL, "interval_resamples": float(RESAMPLES), **with_floor(scores, floor)}
    if figures_dir is not None:
        class_histogram_figure(p_fake, p_real, judges.domain.classes, figures_dir / "eval_class_histogram.png")
        fake_index, train_index, _ = closest_pairs(f_fake, f_train, n=8)
        nearest_pairs_figure(fake, train, fake_index, train_index, figures_dir / "eval_nearest_train.png")
    return result


def not_measurable_keys(result: dict) -> list[str]:
    """The keys a held-out reference would have added to `result` (scored with train None): the memorization
    scores and every metric's floor."""
    metrics = [key for key, value in result.items() if isinstance(value, float) and not is_interval_key(key)
               and not key.startswith("n_") and key not in ("interval_level", "interval_resamples")]
    return [*MEMORIZATION_KEYS, *(f"{key}_floor" for key in metrics)]


def _with_interval(result: dict, key: str) -> str:
    value = result.get(key)
    if not isinstance(value, (int, float)):
        return ""
    low, high = result.get(f"{key}_ci_low"), result.get(f"{key}_ci_high")
    if isinstance(low, float) and isinstance(high, float) and np.isfinite(low) and np.isfinite(high):
        return f"{value:.5g} [{low:.4g}, {high:.4g}]"
    return f"{value:.5g}"


def print_table(result: dict) -> None:
    """metric | value [95% interval] | floor [95% interval], one row per metric."""
    print(f"feature network: {result.get('feature_network', '?')}")
    print(f"{'metric':36s} {'value [95% interval]':>34s} {'floor [95% interval]':>34s}")
    for key, value in result.items():
        if key.endswith("_floor") or is_interval_key(key) or not isinstance(value, (int, float)):
            continue
        print(f"{key:36s} {_with_interval(result, key):>34s} {_with_interval(result, f'{key}_floor'):>34s}")


def write_json(result: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    finite = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in result.items()}
    tmp.write_text(json.dumps(finite, indent=2, allow_nan=False) + "\n")  # NaN (e.g. C_T with no usable cell) -> null
    tmp.replace(path)
    return path
