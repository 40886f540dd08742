"""The classifier's picture for its run page and the demo's front page: a confusion matrix PNG (matplotlib, Agg).

    save_confusion(matrix, classes, run_dir / "confusion.png")   # matrix (K, K): rows true class, columns predicted
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from darkroom import atomic

CONFUSION_FILE = "confusion.png"


def confusion_png(matrix: np.ndarray, classes: list[str]) -> bytes:
    """Each row normalised to the share of that true class (the diagonal is per-class accuracy), counts written in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # here: training needs no matplotlib until a picture is drawn

    counts = np.asarray(matrix, dtype=np.int64)  # (K, K)
    shares = counts / np.maximum(1, counts.sum(axis=1, keepdims=True))
    k = len(classes)
    figure, axis = plt.subplots(figsize=(2.2 + 0.5 * k, 1.8 + 0.5 * k))
    axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for row in range(k):
        for column in range(k):
            if counts[row, column] or row == column:
                axis.text(column, row, str(counts[row, column]), ha="center", va="center", fontsize=7,
                          color="white" if shares[row, column] > 0.5 else "#222")
    axis.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
    axis.set_yticks(range(k), classes, fontsize=8)
    accuracy = float(np.trace(counts) / max(1, counts.sum()))
    axis.set(xlabel="predicted class", ylabel="true class", title=f"test set: {counts.sum()} images, accuracy {accuracy:.3f}")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def save_confusion(matrix: np.ndarray, classes: list[str], path: Path) -> Path:
    atomic.write_bytes(Path(path), confusion_png(matrix, classes))
    return Path(path)
