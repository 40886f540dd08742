"""report.html for a run folder and index.html for a folder of runs: self-contained, no JavaScript.

    darkroom report runs/gan-20260101-120000     # one run
    darkroom report runs/                        # the index of every run inside
"""
from __future__ import annotations

import html
from pathlib import Path

from darkroom import atomic, runs
from darkroom.report.figures import CONFUSION_FILE
from darkroom.report.front import curves_html, task_panel
from darkroom.report.glossary import describe
from darkroom.report.samples import image_tag, sample_section
from darkroom.report.tables import eval_section, fmt, last_metrics_section, latest_values, read_eval

# every sample figure the same fixed width (the last one of a row must not stretch), columns labelled above it
STYLE = """body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:980px;
padding:12px;color:#222}h1{font-size:1.4em;word-break:break-all}h2{font-size:1.15em;margin-top:1.6em;
border-bottom:1px solid #ddd}h3{font-size:1em}img{max-width:100%;height:auto;image-rendering:pixelated}
table{border-collapse:collapse;width:100%;font-size:.9em}td,th{border-bottom:1px solid #eee;padding:3px 6px;
text-align:left;vertical-align:top}code,pre{background:#f6f6f6;padding:2px 4px;white-space:pre-wrap;
word-break:break-all}.grid{display:flex;flex-wrap:wrap;gap:8px}.grid figure{margin:0;flex:0 0 auto;width:310px;max-width:100%}
.grid figure.sample{width:300px}.grid figure.hero{width:440px}.task .grid figure:not(.hero){width:245px}
figure img{display:block;width:100%}figcaption{font-size:.8em;color:#666}.columns{display:flex;font-size:.7em;
color:#444;text-align:center}.columns span{flex:1 1 0;overflow:hidden;white-space:nowrap}
.key{display:block;font-size:.75em;color:#888;background:none;padding:0}.ci{color:#777;font-size:.9em}
.meaning{color:#444;font-size:.92em}.explain,.note{font-size:.85em;color:#555}.note{color:#a50}
td{overflow-wrap:break-word}table:not(.metrics) td{overflow-wrap:anywhere}td.value,td.floor{white-space:nowrap}@media(max-width:600px){td.value,td.floor{white-space:normal}}.ok{color:#070}.bad{color:#a00}"""

# the number an index shows for each task, looked up in eval.json first, then the last metrics line
HEADLINE = {"classifier": ("test_acc",), "gan": ("modes_hit", "frechet_inception_distance", "wasserstein"),
            "cyclegan": ("translation_target_accuracy_a2b", "val_cycle_a")}


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
    evaluation, last = read_eval(run_dir), latest_values(runs.read_metrics(run_dir))
    for key in HEADLINE.get(task, ()):
        for source in (evaluation, last):
            if isinstance(source.get(key), (int, float)):
                return key, float(source[key])
    return None


def table(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def summary_rows(run_dir: Path, task: str, metrics: list[dict]) -> list[tuple[str, str]]:
    summary = [("status", html.escape(status_of(run_dir)))]
    found = headline(run_dir, task)
    if found:
        summary.append((describe(found[0]).name, fmt(found[1])))
    duration = duration_of(run_dir)
    if duration is not None:
        summary.append(("wall time", f"{duration:.1f} s"))
    if metrics and "train_time" in metrics[-1]:
        summary.append(("training time", f"{metrics[-1]['train_time']:.1f} s"))
    return summary


def build_report(run_dir: Path) -> Path:
    """Write run_dir/report.html from what the run folder holds now; returns its path."""
    run_dir = Path(run_dir)
    record = runs.read_config(run_dir)
    task, metrics, evaluation = record.get("task", "run"), runs.read_metrics(run_dir), read_eval(run_dir)
    parts = [f"<h1>darkroom {html.escape(task)}: {html.escape(run_dir.name)}</h1>", table(summary_rows(run_dir, task, metrics))]
    parts.append(f"<h2>Reproduce</h2><pre>{html.escape(record.get('command', ''))}</pre>")
    curves = curves_html(metrics)
    if curves:
        parts.append("<h2>Curves</h2><div class='grid'>" + curves + "</div>")
    parts.append(sample_section(run_dir, task, record.get("config", {})))
    if (run_dir / CONFUSION_FILE).is_file():
        parts.append("<h2>Test predictions</h2><div class='grid'><figure class='hero'>" +
                     image_tag(run_dir / CONFUSION_FILE, "confusion matrix") + "<figcaption>confusion matrix of the "
                     "final weights on the test split: rows true class, columns predicted</figcaption></figure></div>")
    parts.append("<section id='evaluation'><h2>Evaluation</h2>" + eval_section(evaluation) + "</section>")
    figures = sorted(run_dir.glob("eval_*.png"))
    if figures:
        parts.append("<div class='grid'>" + "".join(
            f"<figure>{image_tag(path, path.stem)}<figcaption>{html.escape(path.stem)}</figcaption></figure>"
            for path in figures) + "</div>")
    parts.append(last_metrics_section(metrics))
    for heading, values in (("Environment", record.get("environment", {})), ("Config", record.get("config", {}))):
        parts.append(f"<h2>{heading}</h2>" + table([(k, fmt(v) if v is not None else "none") for k, v in values.items()]))
    return write_page(run_dir / "report.html", f"darkroom {task} {run_dir.name}", "".join(parts))


def run_folders(root: Path) -> list[tuple[Path, str]]:
    """(run folder, task) for every run one or two levels below root."""
    found = []
    for run_dir in sorted({p.parent for p in list(root.glob("*/config.json")) + list(root.glob("*/*/config.json"))}):
        try:
            found.append((run_dir, runs.read_config(run_dir).get("task", "?")))
        except (ValueError, OSError):
            continue
    return found


SHOWCASE_ORDER = ("classifier", "gan", "cyclegan")  # the demo's order: the judge first, then what it judges


def build_index(root: Path, title: str = "darkroom runs", summary: list[tuple[str, str]] | None = None,
                showcase: bool = False) -> Path:
    """Write root/index.html listing every run folder below root (one level or two) with its headline; with
    `showcase` (the demo's front page) each run's picture, curves and numbers come first; `summary` rows last."""
    root = Path(root)
    rows, panels = [], []
    for run_dir, task in run_folders(root):
        report = build_report(run_dir)
        href = html.escape(str(report.relative_to(root)))
        if showcase:
            panels.append((SHOWCASE_ORDER.index(task) if task in SHOWCASE_ORDER else len(SHOWCASE_ORDER),
                           task_panel(run_dir, task, href)))
        found = headline(run_dir, task)
        duration = duration_of(run_dir)
        rows.append(f"<tr><td><a href='{href}'>{html.escape(str(run_dir.relative_to(root)))}</a></td>"
                    f"<td>{html.escape(task)}</td><td>{html.escape(describe(found[0]).name) + ' ' + fmt(found[1]) if found else ''}"
                    f"</td><td>{f'{duration:.0f} s' if duration is not None else ''}</td>"
                    f"<td>{html.escape(status_of(run_dir))}</td></tr>")
    body = (f"<h1>{html.escape(title)}</h1>" + "".join(panel for _, panel in sorted(panels, key=lambda p: p[0])) +
            "<h2>Runs</h2><table><tr><th>run</th><th>task</th><th>headline</th><th>duration</th>"
            "<th>status</th></tr>" + "".join(rows) + "</table>" +
            ("<h2>Summary</h2><p class='explain'>What the command printed at its end.</p>" + table([(k, html.escape(v)) for k, v in summary]) if summary else ""))
    return write_page(root / "index.html", title, body)


def write_page(path: Path, title: str, body: str) -> Path:
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' "
            f"content='width=device-width,initial-scale=1'><title>{html.escape(title)}</title><style>{STYLE}</style>"
            f"</head><body>{body}</body></html>\n")
    atomic.write_text(path, page)
    return path
