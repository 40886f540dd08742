"""Evaluation figures for the report: class histograms (samples vs reference) and closest sample-train pairs."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from darkroom.report.grid import save_grid  # noqa: E402


def class_histogram_figure(fake_pred: np.ndarray, real_pred: np.ndarray, classes: list[str], path: Path) -> Path:
    """Bars of each class's share among samples and among real reference images."""
    k = len(classes)
    fake = np.bincount(fake_pred, minlength=k) / max(1, len(fake_pred))
    real = np.bincount(real_pred, minlength=k) / max(1, len(real_pred))
    figure, axis = plt.subplots(figsize=(7, 3.2))
    positions = np.arange(k)
    axis.bar(positions - 0.2, fake, width=0.4, label="samples")
    axis.bar(positions + 0.2, real, width=0.4, label="real (reference)")
    axis.set_xticks(positions, classes, rotation=45, ha="right", fontsize=8)
    axis.set(ylabel="share of images", title="class histogram by the feature network")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def nearest_pairs_figure(fake: torch.Tensor, train: torch.Tensor, fake_index: np.ndarray, train_index: np.ndarray,
                         path: Path) -> Path:
    """Top row: the samples closest to a training image; bottom row: those training images (uint8 images)."""
    top = fake[torch.as_tensor(fake_index, dtype=torch.long)]
    bottom = train[torch.as_tensor(train_index, dtype=torch.long)]
    if top.shape[1] != bottom.shape[1]:
        top, bottom = top.expand(-1, 3, -1, -1) if top.shape[1] == 1 else top, \
            bottom.expand(-1, 3, -1, -1) if bottom.shape[1] == 1 else bottom
    if top.shape[-2:] != bottom.shape[-2:]:
        bottom = torch.nn.functional.interpolate(bottom.float(), size=top.shape[-2:], mode="bilinear").round().to(torch.uint8)
    return save_grid(torch.cat([top, bottom]), path, nrow=len(top), scale=max(1, 64 // top.shape[-1]))
