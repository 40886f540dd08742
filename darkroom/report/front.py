"""The demo's front page, one panel per run: its picture first (the GAN's last grid, CycleGAN's labelled
translations, the classifier's confusion matrix), its main curves, then its numbers, each with its floor and meaning."""
from __future__ import annotations

import html
from pathlib import Path

from darkroom import runs
from darkroom.report.figures import CONFUSION_FILE
from darkroom.report.glossary import describe
from darkroom.report.plots import curve_panels
from darkroom.report.samples import data_uri, grid_figure, image_tag, sample_history
from darkroom.report.tables import latest_values, metric_table, read_eval, row_keys

TITLES = {"classifier": "Classifier", "gan": "GAN", "cyclegan": "CycleGAN"}
# the numbers each panel shows, when the run has them (eval.json first, then the latest metrics line)
FRONT_KEYS = {
    "classifier": ("test_acc", "test_loss", "train_loss"),
    "gan": ("frechet_inception_distance", "fd_infinity", "kernel_inception_distance_mean", "precision", "recall",
            "density", "coverage", "vendi_score", "modes_hit", "mode_kl_fake_real", "mode_kl_real_fake",
            "memo_nn_ratio", "memo_copy_fraction", "memo_authentic_fraction", "toy_modes_captured", "wasserstein"),
    "cyclegan": ("translation_target_accuracy_a2b", "translation_target_accuracy_b2a", "translation_fid_a2b",
                 "translation_fid_b2a", "translation_cycle_l1_a2b", "translation_cycle_l1_b2a", "val_cycle_a",
                 "val_cycle_b"),
}


def curves_html(metrics: list[dict], keep=None) -> str:
    """The curve panels as figures; `keep(title)` picks some (the front page shows the main ones only)."""
    panels = [(title, png) for title, png in curve_panels(metrics) if keep is None or keep(title)]
    return "".join(f"<figure><img src='{data_uri(png)}' alt='{html.escape(title)} curve'><figcaption>"
                   f"{html.escape(describe(title).name)}</figcaption></figure>" for title, png in panels)


def main_curve(title: str) -> bool:
    return title in ("losses", "accuracy") or title.startswith(("val_", "toy_"))


def picture(run_dir: Path, task: str, config: dict) -> str:
    """The one figure that shows what the run learned."""
    if task == "classifier" and (run_dir / CONFUSION_FILE).is_file():
        return ("<figure class='hero'>" + image_tag(run_dir / CONFUSION_FILE, "confusion matrix") +
                "<figcaption>test predictions of the final weights: rows true class, columns predicted</figcaption>"
                "</figure>")
    history = sample_history(run_dir)
    if task in ("gan", "cyclegan") and history:
        return grid_figure(history[-1], task, config, css="hero")
    return "<p class='explain'>This run wrote no picture.</p>"


def numbers(run_dir: Path, task: str, metrics: list[dict]) -> str:
    values = {**latest_values(metrics), **read_eval(run_dir)}
    keys = [key for key in FRONT_KEYS.get(task, ()) if key in values] or row_keys(values)[0]
    floor = any(f"{key}_floor" in values for key in keys)
    note = values.get("reference_note")
    if not keys:
        return "<p class='explain'>No numbers yet.</p>"
    return (f"<p class='note'>Note: {html.escape(str(note))}</p>" if note else "") + metric_table(values, keys, floor)


def task_panel(run_dir: Path, task: str, href: str) -> str:
    """One section of the front page: title and link, picture and curves, numbers."""
    run_dir = Path(run_dir)
    config = runs.read_config(run_dir).get("config", {})
    metrics = runs.read_metrics(run_dir)
    title = TITLES.get(task, task)
    return (f"<section class='task' id='task-{html.escape(task)}'><h2>{html.escape(title)}: "
            f"<a href='{href}'>{html.escape(run_dir.name)}</a></h2><div class='grid'>{picture(run_dir, task, config)}"
            f"{curves_html(metrics, main_curve)}</div>{numbers(run_dir, task, metrics)}</section>")
