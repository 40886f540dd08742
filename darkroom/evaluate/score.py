"""Score a set of generated images against real ones: features -> darkroom.metrics -> flat dict, floor beside.

The floor is every metric between a real training subsample of the same size and the same real
reference set: the value a perfect generator would get at this n.
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


def score_images(fake: torch.Tensor, real: torch.Tensor, train: torch.Tensor, judges: Judges, seed: int,
                 figures_dir: Path | None) -> dict:
    """All metrics of `fake` (uint8 N,C,H,W) vs held-out `real`, memorization against `train`, with floors."""
    f_fake, p_fake = judges(fake)
    f_real, p_real = judges(real)
    f_train, p_train = judges(train)
    n_classes = len(judges.domain.classes)
    scores = score_features(f_fake, f_real, p_fake, p_real, f_train, n_classes, seed)
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 1))[:len(fake)].numpy()
    floor = score_features(f_train[pick], f_real, p_train[pick], p_real, None, n_classes, seed)
    result = {"feature_network": judges.name, "classifier": judges.domain.name, "n_train_reference": float(len(train)),
              **with_floor(scores, floor)}
    if figures_dir is not None:
        class_histogram_figure(p_fake, p_real, judges.domain.classes, figures_dir / "eval_class_histogram.png")
        fake_index, train_index, _ = closest_pairs(f_fake, f_train, n=8)
        nearest_pairs_figure(fake, train, fake_index, train_index, figures_dir / "eval_nearest_train.png")
    return result


def print_table(result: dict) -> None:
    print(f"feature network: {result.get('feature_network', '?')}")
    print(f"{'metric':40s} {'value':>12s} {'floor':>12s}")
    for key, value in result.items():
        if key.endswith("_floor") or not isinstance(value, (int, float)):
            continue
        floor = result.get(f"{key}_floor")
        print(f"{key:40s} {value:12.5g} {'' if floor is None else format(floor, '12.5g'):>12s}")


def write_json(result: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    finite = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in result.items()}
    tmp.write_text(json.dumps(finite, indent=2, allow_nan=False) + "\n")  # NaN (e.g. C_T with no usable cell) -> null
    tmp.replace(path)
    return path
