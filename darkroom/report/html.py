"""report.html for a run folder and index.html for a folder of runs: self-contained, no JavaScript.

    darkroom report runs/gan-20260101-120000     # one run
    darkroom report runs/                        # the index of every run inside
"""
from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

from darkroom import atomic, runs
from darkroom.report.plots import curve_panels

STYLE = """body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:980px;
padding:12px;color:#222}h1{font-size:1.4em;word-break:break-all}h2{font-size:1.15em;margin-top:1.6em;
border-bottom:1px solid #ddd}img{max-width:100%;height:auto;image-rendering:pixelated}table{border-collapse:collapse;
width:100%;font-size:.9em}td,th{border-bottom:1px solid #eee;padding:3px 6px;text-align:left;vertical-align:top}
code,pre{background:#f6f6f6;padding:2px 4px;white-space:pre-wrap;word-break:break-all}.grid{display:flex;
flex-wrap:wrap;gap:8px}.grid figure{margin:0;flex:1 1 280px}figcaption{font-size:.8em;color:#666}
.ok{color:#070}.bad{color:#a00}"""

# the number an index shows for each task, looked up in eval.json first, then the last metrics line
HEADLINE = {"classifier": ("test_acc",), "gan": ("modes_hit", "frechet_inception_distance", "wasserstein"),
            "cyclegan": ("translation_target_accuracy_a2b", "cycle_loss")}


def data_uri(payload: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode()}"


def image_tag(path: Path, alt: str) -> str:
    return f'<img src="{data_uri(path.read_bytes())}" alt="{html.escape(alt)}" loading="lazy">'


def read_eval(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "eval.json").read_text())
    except (OSError, ValueError):
        return {}


def status_of(run_dir: Path) -> str:
    """finished / failed / running / stopped (no live process and no end status), and 'resumed' when it was."""
    status = runs.read_status(run_dir)
    state = status.get("status", "unknown")
    if state == "running" and not runs.is_live(run_dir):
        state = "stopped"
    return f"{state}, resumed {status['resumes']}x" if status.get("resumes") else state


def duration_of(run_dir: Path) -> float | None:
    status = runs.read_status(run_dir)
    if "started" in status and "updated" in status:
        return float(status["updated"]) - float(status["started"])
    return None


def headline(run_dir: Path, task: str) -> tuple[str, float] | None:
    evaluation, metrics = read_eval(run_dir), runs.read_metrics(run_dir)
    last = metrics[-1] if metrics else {}
    for key in HEADLINE.get(task, ()):
        for source in (evaluation, last):
            if isinstance(source.get(key), (int, float)):
                return key, float(source[key])
    return None


def sample_history(run_dir: Path, limit: int = 12) -> list[Path]:
    """Grids in samples/ ordered by the number in their names, thinned to `limit` (always keeping the last)."""
    files = sorted((run_dir / "samples").glob("*.png"), key=lambda p: [int(n) for n in re.findall(r"\d+", p.stem)] or [0])
    if len(files) <= limit:
        return files
    step = (len(files) - 1) / (limit - 1)
    return [files[round(i * step)] for i in range(limit)]


def table(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(json.dumps(value) if isinstance(value, (list, dict)) else str(value))


def eval_section(evaluation: dict) -> str:
    """Metric | value | real-vs-real floor, for flat eval.json keys (`x` and `x_floor`)."""
    if not evaluation:
        return "<p>No evaluation yet: run <code>darkroom eval</code> on this run.</p>"
    rows = []
    for key, value in evaluation.items():
        if key.endswith("_floor") or isinstance(value, (dict, list)):
            continue
        floor = evaluation.get(f"{key}_floor", "")
        rows.append(f"<tr><td>{html.escape(key)}</td><td>{fmt(value)}</td><td>{fmt(floor) if floor != '' else ''}</td></tr>")
    return "<table><tr><th>metric</th><th>value</th><th>floor (real train vs real test)</th></tr>" + "".join(rows) + "</table>"


def build_report(run_dir: Path) -> Path:
    """Write run_dir/report.html from what the run folder holds now; returns its path."""
    run_dir = Path(run_dir)
    record = runs.read_config(run_dir)
    task, metrics, evaluation = record.get("task", "run"), runs.read_metrics(run_dir), read_eval(run_dir)
    parts = [f"<h1>darkroom {html.escape(task)}: {html.escape(run_dir.name)}</h1>"]
    summary = [("status", html.escape(status_of(run_dir)))]
    found = headline(run_dir, task)
    if found:
        summary.append((found[0], fmt(found[1])))
    duration = duration_of(run_dir)
    if duration is not None:
        summary.append(("wall time", f"{duration:.1f} s"))
    if metrics and "train_time" in metrics[-1]:
        summary.append(("training time", f"{metrics[-1]['train_time']:.1f} s"))
    parts.append(table(summary))
    parts.append(f"<h2>Reproduce</h2><pre>{html.escape(record.get('command', ''))}</pre>")
    panels = curve_panels(metrics)
    if panels:
        parts.append("<h2>Curves</h2><div class='grid'>" + "".join(
            f"<figure><img src='{data_uri(png)}' alt='{html.escape(title)} curve'><figcaption>{html.escape(title)}"
            "</figcaption></figure>" for title, png in panels) + "</div>")
    history = sample_history(run_dir)
    if history:
        parts.append("<h2>Samples over time</h2><div class='grid'>" + "".join(
            f"<figure>{image_tag(path, path.stem)}<figcaption>{html.escape(path.stem)}</figcaption></figure>"
            for path in history) + "</div>")
    parts.append("<h2>Evaluation</h2>" + eval_section(evaluation))
    figures = sorted(run_dir.glob("eval_*.png"))
    if figures:
        parts.append("<div class='grid'>" + "".join(
            f"<figure>{image_tag(path, path.stem)}<figcaption>{html.escape(path.stem)}</figcaption></figure>"
            for path in figures) + "</div>")
    if metrics:
        last = metrics[-1]
        parts.append("<h2>Last metrics</h2>" + table([(k, fmt(v)) for k, v in last.items()]))
    parts.append("<h2>Environment</h2>" + table([(k, fmt(v)) for k, v in record.get("environment", {}).items()]))
    parts.append("<h2>Config</h2>" + table([(k, fmt(v)) for k, v in record.get("config", {}).items()]))
    return write_page(run_dir / "report.html", f"darkroom {task} {run_dir.name}", "".join(parts))


def build_index(root: Path, title: str = "darkroom runs", summary: list[tuple[str, str]] | None = None) -> Path:
    """Write root/index.html listing every run folder below root (one level or two) with its headline,
    after an optional summary table (the demo's measured numbers)."""
    root = Path(root)
    run_dirs = sorted({p.parent for p in list(root.glob("*/config.json")) + list(root.glob("*/*/config.json"))})
    rows = []
    for run_dir in run_dirs:
        try:
            task = runs.read_config(run_dir).get("task", "?")
        except (ValueError, OSError):
            continue
        report = build_report(run_dir)
        found = headline(run_dir, task)
        duration = duration_of(run_dir)
        rows.append(f"<tr><td><a href='{html.escape(str(report.relative_to(root)))}'>{html.escape(str(run_dir.relative_to(root)))}"
                    f"</a></td><td>{html.escape(task)}</td><td>{html.escape(found[0]) + ' ' + fmt(found[1]) if found else ''}"
                    f"</td><td>{f'{duration:.0f} s' if duration is not None else ''}</td>"
                    f"<td>{html.escape(status_of(run_dir))}</td></tr>")
    body = (f"<h1>{html.escape(title)}</h1>" + (table([(k, html.escape(v)) for k, v in summary]) if summary else "") +
            "<h2>Runs</h2><table><tr><th>run</th><th>task</th><th>headline</th><th>duration</th>"
            "<th>status</th></tr>" + "".join(rows) + "</table>")
    return write_page(root / "index.html", title, body)


def write_page(path: Path, title: str, body: str) -> Path:
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' "
            f"content='width=device-width,initial-scale=1'><title>{html.escape(title)}</title><style>{STYLE}</style>"
            f"</head><body>{body}</body></html>\n")
    atomic.write_text(path, page)
    return path
