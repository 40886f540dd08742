"""The pictures a run writes, as labelled HTML figures: sample grids in time order, each task's caption, and
CycleGAN's column header (the grid's columns come from darkroom/cyclegan/records.py draw_grid)."""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

# draw_grid's six columns, left to right: real_a, fake_b, rec_a, real_b, fake_a, rec_b
CYCLEGAN_COLUMNS = ("real A", "A→B", "A→B→A", "real B", "B→A", "B→A→B")


def data_uri(payload: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode()}"


def image_tag(path: Path, alt: str) -> str:
    return f'<img src="{data_uri(Path(path).read_bytes())}" alt="{html.escape(alt)}">'


def step_of(path: Path) -> int | None:
    """The step or iteration in a grid's name (iter_000200.png, step-0000050.png); None for final.png and the like."""
    numbers = re.findall(r"\d+", Path(path).stem)
    return int(numbers[-1]) if numbers else None


def time_order(path: Path) -> tuple:
    """Numbered grids by their number, then the unnumbered ones (CycleGAN's final.png is drawn last: it goes last)."""
    step = step_of(path)
    return (0, step, "") if step is not None else (1, 0, Path(path).stem)


def sample_history(run_dir: Path, limit: int = 12) -> list[Path]:
    """Grids in samples/ in time order, thinned to `limit` (always keeping the first and the last)."""
    files = sorted((Path(run_dir) / "samples").glob("*.png"), key=time_order)
    if len(files) <= limit:
        return files
    step = (len(files) - 1) / (limit - 1)
    return [files[round(i * step)] for i in range(limit)]


def domain_names(config: dict) -> tuple[str, str]:
    """What domains A and B are: the two classes of 'fashion-mnist:sneaker,ankle-boot', or the folders' names."""
    if config.get("data_a") and config.get("data_b"):
        return Path(str(config["data_a"])).name, Path(str(config["data_b"])).name
    _, _, classes = str(config.get("data", "")).rpartition(":")
    pair = [name for name in classes.split(",") if name]
    return (pair[0], pair[1]) if len(pair) == 2 else ("trainA", "trainB")


def caption(path: Path, task: str, config: dict) -> str:
    """One line saying what the grid shows and when it was drawn."""
    step = step_of(path)
    if task == "gan":
        what = "scatter of samples (blue) over real points (red)" if str(config.get("data", "")).startswith("toy:") \
            else f"{config.get('n_samples', 64)} samples"
        when = f"after iteration {step}" if step is not None else f"({Path(path).stem})"
        return f"{what} from the same fixed noise, {when}"
    if task == "cyclegan":
        a, b = domain_names(config)
        when = f"step {step}" if step is not None else "end of training" if Path(path).stem == "final" else Path(path).stem
        return f"{when}: one held-out image per row; A = {a}, B = {b}"
    return Path(path).stem


def column_header(task: str) -> str:
    """The labels drawn over a grid's columns (CycleGAN only: real, translated, reconstructed per domain)."""
    if task != "cyclegan":
        return ""
    return "<div class='columns'>" + "".join(f"<span>{html.escape(label)}</span>" for label in CYCLEGAN_COLUMNS) + "</div>"


def grid_figure(path: Path, task: str, config: dict, css: str = "sample") -> str:
    """One grid as a figure: the column labels, the image, the caption; every figure of a class the same width."""
    text = caption(path, task, config)
    return (f"<figure class='{css}' data-step='{step_of(path) if step_of(path) is not None else 'end'}'>"
            f"{column_header(task)}{image_tag(path, text)}<figcaption>{html.escape(text)}</figcaption></figure>")


def sample_section(run_dir: Path, task: str, config: dict) -> str:
    history = sample_history(run_dir)
    if not history:
        return ""
    return ("<h2>Samples over time</h2><div class='grid'>" +
            "".join(grid_figure(path, task, config) for path in history) + "</div>")
