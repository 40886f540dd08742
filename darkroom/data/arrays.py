"""In-memory image sets: uint8 images (N, C, H, W) with int64 labels, the currency of the data layer."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ImageArrays:
    images: torch.Tensor  # (N, C, H, W) uint8, C in {1, 3}
    labels: torch.Tensor  # (N,) int64 in [0, len(classes)); -1 where a set has no labels
    classes: list[str] = field(default_factory=list)
    source: str = ""  # human-readable origin, used in messages and reports

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"{self.source}: images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"{self.source}: {self.images.shape[0]} images but labels of shape {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index: torch.Tensor) -> "ImageArrays":
        return ImageArrays(self.images[index], self.labels[index], list(self.classes), self.source)
