"""The demo's front page and each run page in headless Chromium (Debian's; .ci/run installs it): the DOM Chromium
builds keeps every image (each a data: URI that decodes to a real picture), a meaning in every metric row and the
grids' labels; the screenshot is not blank; with Playwright, every image has loaded, every grid renders at one
size and no request leaves the machine."""
import base64
import io
import os
import shutil
import subprocess

import pytest
from PIL import Image

from conftest import needs_fashion
from test_report import build_task_runs, metric_rows, parse

CHROMIUM = shutil.which("chromium")
pytestmark = [pytest.mark.slow, needs_fashion,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (.ci/run installs it)")]
FLAGS = ["--headless=new", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--virtual-time-budget=5000",
         *(["--no-sandbox"] if os.geteuid() == 0 else [])]  # Chromium refuses to run as root inside its sandbox


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    runs = build_task_runs(tmp_path_factory)
    return {"front": runs["root"] / "index.html", **{task: runs[key] / "report.html"
                                                     for task, key in (("classifier", "clf"), ("gan", "gan"), ("cyclegan", "cg"))}}


def chromium(*args: str, cwd) -> subprocess.CompletedProcess:
    profile = cwd / "profile"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def decoded(src: str) -> Image.Image:
    assert src.startswith("data:image/png;base64,"), src[:40]
    image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    image.load()  # a truncated or corrupt PNG raises here
    return image


@pytest.mark.parametrize("name", ["front", "classifier", "gan", "cyclegan"])
def test_page_in_chromium_dom_and_screenshot(pages, name, tmp_path):
    page = pages[name]
    result = chromium("--dump-dom", page.as_uri(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = parse(result.stdout)
    images = dom.find("img")
    assert images, "no image in the page Chromium built"
    for image in images:
        picture = decoded(image.attrs["src"])
        assert picture.width >= 16 and picture.height >= 16 and len(set(picture.convert("L").getextrema())) > 1
        assert image.attrs.get("alt")
    rows = metric_rows(dom)
    assert rows and not [key for key, row in rows.items() if not row.find("td", "meaning")[0].text()]
    captions = [caption.text() for caption in dom.find("figcaption")]
    if name in ("front", "cyclegan"):
        labels = [[span.text() for span in columns.find("span")] for columns in dom.find("div", "columns")]
        assert labels and all(row == ["real A", "A→B", "A→B→A", "real B", "B→A", "B→A→B"] for row in labels)
    if name in ("front", "gan"):
        assert any("from the same fixed noise, after iteration 4" in caption for caption in captions)
    if name in ("front", "classifier"):
        assert any(image.attrs["alt"] == "confusion matrix" for image in images)
    shot = tmp_path / f"{name}.png"
    result = chromium(f"--screenshot={shot}", "--window-size=1000,2400", page.as_uri(), cwd=tmp_path)
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    screen = Image.open(shot).convert("L")
    assert screen.size == (1000, 2400)
    dark = sum(count for value, count in enumerate(screen.histogram()) if value < 200)
    assert dark > 0.02 * 1000 * 2400 and len(screen.getcolors(256)) > 32  # text and pictures, not a blank page


def test_images_load_and_grids_share_one_size_at_a_phone_width(pages):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        for name, path in pages.items():
            for width in (390, 1000):  # a phone's width and a laptop's
                page = browser.new_page(viewport={"width": width, "height": 844})
                errors, requests = [], []
                page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.on("request", lambda request: requests.append(request.url))
                page.goto(path.as_uri())
                page.wait_for_load_state("load")
                broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
                                       ".map(i => i.alt)")
                assert broken == [] and errors == [], (name, broken, errors)
                assert all(url.startswith(("file:", "data:")) for url in requests), requests
                assert page.evaluate("document.documentElement.scrollWidth") <= width + 1, name  # no sideways scroll
                widths = page.evaluate("Array.from(document.querySelectorAll('figure.sample img'))"
                                       ".map(i => Math.round(i.getBoundingClientRect().width))")
                assert len(set(widths)) <= 1, (name, width, widths)  # every grid, the last one too, at one size
                if name in ("gan", "cyclegan"):
                    assert widths and widths[0] >= min(280, width - 40)
                page.close()
        browser.close()
