"""Metric tables for the run pages and the front page: readable name (raw key beside it), value with its 95%
interval, the real-vs-real floor with its interval, and a one-line meaning from darkroom.report.glossary."""
from __future__ import annotations

import html
import json
from pathlib import Path

from darkroom.metrics.intervals import is_interval_key
from darkroom.report.glossary import FLOOR, describe


def read_eval(run_dir: Path) -> dict:
    try:
        return json.loads((Path(run_dir) / "eval.json").read_text())
    except (OSError, ValueError):
        return {}


def fmt(value: object) -> str:
    if value is None:
        return "<span title='not finite or not measured'>n/a</span>"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return html.escape(", ".join(describe(str(item)).name for item in value))
    return html.escape(json.dumps(value) if isinstance(value, dict) else str(value))


def with_interval(values: dict, key: str) -> str:
    """'value [low, high]' when `<key>_ci_low` and `<key>_ci_high` are numbers, else the value alone."""
    if key not in values:
        return ""
    low, high = values.get(f"{key}_ci_low"), values.get(f"{key}_ci_high")
    shown = fmt(values[key])
    if isinstance(low, (int, float)) and isinstance(high, (int, float)):
        shown += f" <span class='ci'>[{low:.4g}, {high:.4g}]</span>"
    return shown


def name_cell(key: str) -> str:
    term = describe(key)
    raw = f"<code class='key'>{html.escape(key)}</code>" if term.name != key else ""
    return f"<td title='{html.escape(key)}'><span class='name'>{html.escape(term.name)}</span>{raw}</td>"


def metric_row(values: dict, key: str, floor: bool) -> str:
    """One <tr class='metric'>: name, value [interval], (floor [interval],) meaning."""
    floor_cell = f"<td class='floor'>{with_interval(values, f'{key}_floor')}</td>" if floor else ""
    return (f"<tr class='metric'>{name_cell(key)}<td class='value'>{with_interval(values, key)}</td>{floor_cell}"
            f"<td class='meaning'>{html.escape(describe(key).meaning)}</td></tr>")


def metric_table(values: dict, keys: list[str], floor: bool, first: str = "metric") -> str:
    interval = " <span class='ci'>[95% interval]</span>" if any(f"{key}_ci_low" in values for key in keys) else ""
    head = (f"<tr><th>{first}</th><th>value{interval}</th>" + (f"<th>floor{interval}</th>" if floor else "") +
            "<th>meaning</th></tr>")
    return "<table class='metrics'>" + head + "".join(metric_row(values, key, floor) for key in keys) + "</table>"


def row_keys(values: dict) -> tuple[list[str], list[str]]:
    """(score keys, setting keys) of a flat dict: a floor goes beside its metric and intervals beside their value,
    so neither gets a row of its own."""
    scores, settings = [], []
    for key, value in values.items():
        if is_interval_key(key) or key == "reference_note" or isinstance(value, dict):
            continue
        if key.endswith("_floor") and key[:-len("_floor")] in values:
            continue
        term = describe(key)
        numeric = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
        (scores if term.score and numeric else settings).append(key)
    return scores, settings


def eval_section(evaluation: dict) -> str:
    """The evaluation's scores (with intervals and floors), then what they were measured with."""
    if not evaluation:
        return "<p>No evaluation yet: run <code>darkroom eval</code> on this run.</p>"
    scores, settings = row_keys(evaluation)
    has_floor = any(f"{key}_floor" in evaluation for key in scores)
    parts = []
    if evaluation.get("reference_note"):
        parts.append(f"<p class='note'>Note: {html.escape(str(evaluation['reference_note']))}</p>")
    if has_floor:
        parts.append(f"<p class='explain'>Floor: {html.escape(FLOOR)}.</p>")
    parts.append(metric_table(evaluation, scores, has_floor))
    if settings:
        parts.append("<h3>Measured with</h3>" + metric_table(evaluation, settings, False, "setting"))
    return "".join(parts)


def latest_values(records: list[dict]) -> dict:
    """The last value of every key across the metrics lines (CycleGAN writes losses and validation on separate lines)."""
    latest: dict = {}
    for record in records:
        latest.update(record)
    return latest


def last_metrics_section(records: list[dict]) -> str:
    if not records:
        return ""
    latest = latest_values(records)
    return ("<section id='last-metrics'><h2>Last metrics</h2><p class='explain'>The latest value of each number in "
            "metrics.jsonl.</p>" + metric_table(latest, list(latest), False, "number") + "</section>")
