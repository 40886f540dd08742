"""darkroom lr-find: an exponential learning-rate sweep (Smith 2015, arXiv:1506.01186; fast.ai's lr_find).

The LR grows geometrically from `start` to `end`; the sweep stops when the smoothed loss passes 4x
its minimum; the plot of smoothed loss against LR (log scale) is saved as a PNG.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from darkroom import dist, precision
from darkroom.data.resident import Augment, ResidentImages, channel_stats
from darkroom.errors import UserError
from darkroom.nets import CLASSIFIERS
from darkroom.optim import param_groups, set_lr_momentum


def lr_find(cfg, start: float, end: float, steps: int, plot_path: Path) -> dict:
    from darkroom.classifier.train import load_data

    if not 0 < start < end:
        raise UserError(f"lr-find needs 0 < --start < --end, got {start} and {end}")
    info = dist.setup(cfg.device)
    torch.manual_seed(cfg.seed)
    train, _ = load_data(cfg)
    mean, std = channel_stats(train.images)
    data = ResidentImages(train, info.device, mean, std, cfg.batch_size)
    model = CLASSIFIERS[cfg.arch](train.images.shape[1], len(train.classes)).to(info.device)
    optimizer = torch.optim.SGD(param_groups(model, cfg.weight_decay, cfg.exempt_norm_bias, 1.0), lr=start,
                                momentum=cfg.mom_max, nesterov=cfg.nesterov)
    generator = torch.Generator(device=info.device).manual_seed(cfg.seed)
    order = data.epoch_order(generator)
    lrs, losses, smoothed, best = [], [], 0.0, math.inf
    for step in range(steps):
        lr = start * (end / start) ** (step / max(1, steps - 1))
        set_lr_momentum(optimizer, lr, None)
        index = step % data.steps_per_epoch()
        x, y = data.train_batch(order, index, 0, Augment(pad=cfg.pad, flip=cfg.flip), generator)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        smoothed = 0.98 * smoothed + 0.02 * loss.item()
        value = smoothed / (1 - 0.98 ** (step + 1))  # bias-corrected exponential average
        lrs.append(lr)
        losses.append(value)
        best = min(best, value)
        if not math.isfinite(value) or value > 4 * best:
            break
    suggested = steepest(lrs, losses)
    save_plot(lrs, losses, suggested, plot_path)
    return {"lrs": lrs, "losses": losses, "suggested_lr": suggested}


def steepest(lrs: list[float], losses: list[float]) -> float:
    """The LR where the smoothed loss falls fastest per log-LR step."""
    if len(lrs) < 3:
        return lrs[0]
    slopes = [(losses[i + 1] - losses[i]) / (math.log(lrs[i + 1]) - math.log(lrs[i])) for i in range(len(lrs) - 1)]
    return lrs[min(range(len(slopes)), key=slopes.__getitem__)]


def save_plot(lrs: list[float], losses: list[float], suggested: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(lrs, losses)
    axis.axvline(suggested, color="tab:red", linestyle="--", label=f"steepest {suggested:.3g}")
    axis.set(xscale="log", xlabel="learning rate", ylabel="smoothed training loss", title="lr-find")
    axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
