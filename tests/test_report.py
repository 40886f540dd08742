"""The run report: built from a tiny real run, its content agrees with metrics.jsonl; the index lists runs;
a headless Chromium (Debian's, driven by Playwright) loads every image without a request leaving the machine."""
import json
import re
import shutil

import pytest

from conftest import needs_fashion, run_cli


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    result = run_cli(["train", "classifier", "--preset", "fashion-mnist-cpunet", "--sample", "0.03", "--test-sample", "0.1",
                      "--epochs", "2", "--batch-size", "100", "--quiet", "--out", str(root / "clf")])
    assert result.returncode == 0, result.stderr
    assert f"report: {root / 'clf' / 'report.html'}" in result.stdout
    return root


@needs_fashion
def test_report_content_matches_the_run(runs_root):
    run = runs_root / "clf"
    page = (run / "report.html").read_text()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    config = json.loads((run / "config.json").read_text())
    assert f"{metrics[-1]['test_acc']:.4g}" in page  # headline and last-metrics table
    assert config["command"] in page
    assert "fashion-mnist" in page and "cpunet" in page  # the resolved config
    assert config["environment"]["torch"] in page
    curves = re.findall(r"<img src='data:image/png;base64,[^']+' alt='(\w+) curve'", page)
    assert "losses" in curves and "accuracy" in curves
    assert "http://" not in page and "https://" not in page and "<script" not in page


@needs_fashion
def test_index_lists_runs_with_status(runs_root, tmp_path):
    shutil.copytree(runs_root / "clf", runs_root / "clf-copy")
    (runs_root / "clf-copy" / "status.json").write_text(json.dumps({"status": "running", "started": 0, "updated": 5}))
    result = run_cli(["report", str(runs_root)])
    assert result.returncode == 0, result.stderr
    index = (runs_root / "index.html").read_text()
    assert "clf/report.html" in index and "classifier" in index and "finished" in index
    assert "stopped" in index  # 'running' with no live process holding the lock


@needs_fashion
def test_report_in_headless_chromium(runs_root, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which("chromium"):
        pytest.skip("Debian chromium is not installed (.ci/run installs it)")
    run_cli(["report", str(runs_root)])
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        for page_path in (runs_root / "clf" / "report.html", runs_root / "index.html"):
            page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone's width
            errors, requests = [], []
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(page_path.as_uri())
            page.wait_for_load_state("load")
            broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length")
            assert broken == 0 and errors == []
            assert all(url.startswith(("file:", "data:")) for url in requests), requests
            assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1  # no sideways scrolling
            page.screenshot(path=str(tmp_path / f"{page_path.stem}.png"), full_page=True)
            assert (tmp_path / f"{page_path.stem}.png").stat().st_size > 5000
        browser.close()
