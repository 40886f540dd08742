"""Domain feature networks: the penultimate layer and the predicted class of a darkroom classifier run.

The built-in Fashion-MNIST network is trained once with the `fashion-mnist-cpunet` preset and cached;
scores from it compare only with scores from the same network (REFERENCE.md section 4).
"""
from __future__ import annotations

import fcntl
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from darkroom.data.download import cache_dir
from darkroom.errors import UserError
from darkroom.classifier import load_run


def builtin_feature_run(dataset: str = "fashion-mnist") -> Path:
    """The cached built-in classifier run for `dataset`, trained on first use (about 5 minutes on 2 cores)."""
    if dataset != "fashion-mnist":
        raise UserError(f"there is no built-in feature network for {dataset}; pass --features RUN (a classifier run)")
    run_dir = cache_dir() / "feature-nets" / "fashion-mnist-cpunet"
    if _ready(run_dir):
        return run_dir
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir.parent / "fashion-mnist-cpunet.lock", "a+") as lock:  # one trainer; other processes wait for it
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another darkroom process to finish training the built-in feature network in {run_dir}")
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if not _ready(run_dir):  # (the process waited for may have finished it)
            from darkroom import classifier, config

            print(f"training the built-in Fashion-MNIST feature network once; it is cached in {run_dir}")
            overrides = dict(out=str(run_dir), quiet=False, resume=(run_dir / "checkpoints" / "last.pt").exists())
            classifier.run(config.layered(classifier.CONFIG, classifier.PRESETS, "fashion-mnist-cpunet", None, overrides))
    return run_dir


def _ready(run_dir: Path) -> bool:
    return (run_dir / "checkpoints" / "last.pt").exists() and not _unfinished(run_dir)


def _unfinished(run_dir: Path) -> bool:
    import json

    try:
        return json.loads((run_dir / "status.json").read_text()).get("status") != "finished"
    except (OSError, ValueError):
        return True


def penultimate_split(model: nn.Sequential) -> int:
    """Index of the last Linear layer: model[:i] gives features, model[i:] the logits."""
    for index in range(len(model) - 1, -1, -1):
        if isinstance(model[index], nn.Linear):
            return index
    raise UserError("the feature network has no final Linear layer to take features before")


class DomainFeatures:
    """Features (penultimate activations) and predicted classes from a classifier run."""

    def __init__(self, run_dir: Path, device: torch.device) -> None:
        self.run_dir = Path(run_dir)
        self.model, self.config, self.meta = load_run(str(run_dir), device)
        self.split = penultimate_split(self.model)
        self.device = device
        self.classes: list[str] = list(self.meta["classes"])
        self.name = f"darkroom classifier {self.config['arch']} ({self.run_dir.name}, trained on {self.config['data']})"

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) of any channel count and size -> the network's normalised input."""
        channels, size = self.meta["channels"], self.meta["image_size"]
        x = images.to(self.device).float() / 255
        if x.shape[1] == 3 and channels == 1:
            x = (x * torch.tensor([0.299, 0.587, 0.114], device=self.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
        elif x.shape[1] == 1 and channels == 3:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        mean = self.meta["mean"].to(self.device).view(1, -1, 1, 1)
        std = self.meta["std"].to(self.device).view(1, -1, 1, 1)
        return (x - mean) / std

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
        """(features float64 (N, D), predicted class int64 (N,))."""
        features, predictions = [], []
        for start in range(0, images.shape[0], batch_size):
            x = self.prepare(images[start:start + batch_size])
            h = self.model[:self.split](x)
            logits = self.model[self.split:](h)
            features.append(h.double().cpu())
            predictions.append(logits.argmax(1).cpu())
        return torch.cat(features).numpy(), torch.cat(predictions).numpy()
