"""Curves from metrics.jsonl as PNG bytes (matplotlib, Agg): one panel per family of numbers."""
from __future__ import annotations

import io
import math

# keys that are positions or clocks, not curves
AXIS_KEYS = {"epoch", "step", "iteration", "gen_iterations", "elapsed", "train_time", "time", "wall_time"}
# CycleGAN's loss terms (darkroom/cyclegan/losses.py LOSS_TERMS): one panel, not nine
CYCLEGAN_LOSSES = {"gan_ab", "gan_ba", "cycle_a", "cycle_b", "idt_a", "idt_b", "g", "d_a", "d_b"}


def numeric_series(records: list[dict]) -> tuple[str, dict[str, list[tuple[float, float]]]]:
    """Pick the x axis (step, iteration or epoch) and collect every finite numeric key against it."""
    x_key = next((key for key in ("step", "iteration", "gen_iterations", "epoch") if any(key in r for r in records)), "")
    series: dict[str, list[tuple[float, float]]] = {}
    for index, record in enumerate(records):
        x = record.get(x_key, index)
        for key, value in record.items():
            if key in AXIS_KEYS or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                series.setdefault(key, []).append((float(x), float(value)))
    return x_key or "record", series


def group_name(key: str) -> str:
    """Losses together, accuracies together, held-out cycle errors together, everything else on its own panel."""
    if "loss" in key or key in ("wasserstein", "gp", "w_estimate") or key in CYCLEGAN_LOSSES:
        return "losses"
    if "acc" in key:
        return "accuracy"
    if key.startswith("val_cycle_"):
        return "val_cycle"
    if key in ("lambda_a", "lambda_b"):  # CycleGAN's cycle weights (fixed, or --cycle-target's)
        return "cycle weights"
    return key


def curve_panels(records: list[dict]) -> list[tuple[str, bytes]]:
    """[(title, png bytes)] for the run's curves; empty when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # imported here: training paths need no matplotlib until a report is drawn

    x_key, series = numeric_series(records)
    groups: dict[str, list[str]] = {}
    for key, points in series.items():
        if group_name(key) == key and len({y for _, y in points}) < 2:
            continue  # a constant side number (zero skipped steps, say) is a table entry, not a curve
        groups.setdefault(group_name(key), []).append(key)
    panels = []
    for title, keys in groups.items():
        figure, axis = plt.subplots(figsize=(6, 3.4))
        for key in keys:
            xs, ys = zip(*series[key])
            axis.plot(xs, ys, label=key, marker="o" if len(xs) < 30 else None, markersize=3)
        axis.set(xlabel=x_key, title=title)
        axis.grid(alpha=0.3)
        if len(keys) > 1:
            axis.legend(fontsize=8)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90)
        plt.close(figure)
        panels.append((title, buffer.getvalue()))
    return panels
