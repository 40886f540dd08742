"""The run report and the demo's front page: built from tiny real runs of all three trainers and their evaluations,
every metric key has a readable name and a meaning, intervals and floors sit beside their values, grids come in
time order with labelled columns; the glossary's rules on planted keys. (Browser checks: test_report_browser.py.)"""
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from conftest import needs_fashion, run_cli

CLASSIFIER_KEYS = ("test_loss", "test_acc", "n")  # darkroom eval classifier, besides acc_<class> (evaluate_run)


class Node:
    def __init__(self, tag: str, attrs: dict, parent=None):
        self.tag, self.attrs, self.parent, self.children, self.texts = tag, attrs, parent, [], []

    def text(self) -> str:
        return "".join(part if isinstance(part, str) else part.text() for part in self.texts).strip()

    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def find(self, tag: str | None = None, cls: str | None = None) -> list["Node"]:
        found = []
        for child in self.children:
            if (tag is None or child.tag == tag) and (cls is None or cls in child.classes()):
                found.append(child)
            found += child.find(tag, cls)
        return found


class Tree(HTMLParser):
    """A page as a tree of Nodes (enough for darkroom's own markup: it closes every element it opens)."""
    VOID = {"img", "meta", "br", "link", "input", "hr"}

    def __init__(self, page: str):
        super().__init__()
        self.root = self.current = Node("document", {})
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.current)
        self.current.children.append(node)
        self.current.texts.append(node)
        if tag not in self.VOID:
            self.current = node

    def handle_endtag(self, tag):
        node = self.current
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.current = node.parent

    def handle_data(self, data):
        self.current.texts.append(data)


def parse(page: str) -> Node:
    return Tree(page).root


def by_id(node: Node, name: str) -> Node:
    return next(child for child in node.find() if child.attrs.get("id") == name)


def metric_rows(node: Node) -> dict[str, Node]:
    """Raw key -> its <tr class='metric'> (the key is the name cell's title)."""
    return {row.find("td")[0].attrs["title"]: row for row in node.find("tr", "metric")}


_BUILT: dict = {}


def build_task_runs(factory) -> dict:
    """Tiny real runs in one folder (classifier with its confusion matrix, WGAN-GP, CycleGAN), the GAN and the
    CycleGAN evaluated by the classifier, the demo's front page over them; and a toy GAN beside. Built once per
    session for this module and test_report_browser.py."""
    if _BUILT:
        return _BUILT
    from darkroom import cli
    from darkroom.demo import classifier_picture
    from darkroom.evaluate import commands as evaluate
    from darkroom.report.html import build_index

    root = factory.mktemp("demo")
    clf, gan, cg, toy = root / "classifier", root / "gan", root / "cyclegan", factory.mktemp("toy") / "toy"
    for argv in (["classifier", "--preset", "fashion-mnist-cpunet", "--sample", "0.03", "--test-sample", "0.1",
                  "--epochs", "2", "--batch-size", "100"],
                 ["gan", "--preset", "fashion-mnist-cpu", "--nz", "8", "--ngf", "4", "--ndf", "4", "--batch-size", "8",
                  "--n-samples", "16", "--iterations", "4", "--log-every", "1", "--sample-every", "2",
                  "--checkpoint-every", "4", "--warmup-critic", "off", "--n-critic", "2", "--sample", "0.01"],
                 ["cyclegan", "--preset", "fashion-mnist-shoes", "--ngf", "4", "--ndf", "4", "--d-layers", "2",
                  "--workers", "0", "--val-images", "4", "--stop-after", "2", "--log-every", "1", "--sample-every", "1",
                  "--batch-size", "4"],
                 ["gan", "--preset", "toy", "--iterations", "2", "--batch-size", "16", "--n-samples", "50"]):
        out = {"classifier": clf, "cyclegan": cg}.get(argv[0], toy if "toy" in argv else gan)
        assert cli.main(["train", *argv, "--quiet", "--out", str(out)]) == 0
    matrix = classifier_picture(clf, torch.device("cpu"))
    with pytest.MonkeyPatch.context() as patch:  # 3 bootstrap resamples instead of 50: the same keys, in seconds
        patch.setattr("darkroom.evaluate.score.RESAMPLES", 3)
        evaluate.eval_gan(str(gan), 200, str(clf), None, 0, torch.device("cpu"))
    evaluate.eval_cyclegan(str(cg), str(clf), None, 0, torch.device("cpu"))
    build_index(root, "darkroom demo", [("time: total", "1 s")], showcase=True)
    _BUILT.update(root=root, clf=clf, gan=gan, cg=cg, toy=toy, matrix=matrix)
    return _BUILT


@pytest.fixture(scope="module")
def task_runs(tmp_path_factory):
    return build_task_runs(tmp_path_factory)


def read_lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# -- the glossary's rules, on planted keys -------------------------------------------------------------------

def test_glossary_rules_name_suffixes_and_leave_unknown_keys_raw():
    from darkroom.report.glossary import describe

    floor = describe("translation_fid_a2b_floor")
    assert floor.known and "translation FID" in floor.name and "A→B" in floor.name and "floor" in floor.name
    assert "real train vs real test" in floor.meaning
    low = describe("frechet_inception_distance_floor_ci_low")
    assert low.known and not low.score and "lower end" in low.name and "floor" in low.name
    assert describe("cycle_b").name.endswith("domain B") and describe("val_cycle_a").known
    assert "sneaker" in describe("acc_sneaker").meaning
    assert "lower is better" in describe("frechet_inception_distance").meaning
    assert "higher is better" in describe("coverage").meaning
    unknown = describe("made_up_metric")
    assert (unknown.known, unknown.name, unknown.meaning) == (False, "made_up_metric", "")
    assert not describe("made_up_metric_a2b").known and not describe("x_a").known  # rules never invent a base


def test_eval_table_puts_intervals_and_floor_beside_the_value():
    from darkroom.report.tables import eval_section

    planted = {"feature_network": "net", "n_fake": 100.0, "frechet_inception_distance": 12.5,
               "frechet_inception_distance_floor": 1.25, "frechet_inception_distance_ci_low": 10.0,
               "frechet_inception_distance_ci_high": 15.0, "frechet_inception_distance_floor_ci_low": 0.5,
               "frechet_inception_distance_floor_ci_high": 2.0, "memo_ct": None, "mystery_score": 3.0}
    rows = metric_rows(parse(eval_section(planted)))
    assert set(rows) == {"feature_network", "n_fake", "frechet_inception_distance", "memo_ct", "mystery_score"}
    fid = rows["frechet_inception_distance"]
    assert fid.find("td", "value")[0].text() == "12.5 [10, 15]"
    assert fid.find("td", "floor")[0].text() == "1.25 [0.5, 2]"
    assert fid.find("span", "name")[0].text() == "FID" and "Fréchet" in fid.find("td", "meaning")[0].text()
    assert rows["memo_ct"].find("td", "value")[0].text() == "n/a"  # NaN is null in eval.json
    mystery = rows["mystery_score"]  # unknown: still shown, under its raw key, with no meaning
    assert mystery.find("span", "name")[0].text() == "mystery_score" and mystery.find("td", "meaning")[0].text() == ""
    untested = parse(eval_section({"precision": 0.5, "reference_note": "the reference is the training data",
                                   "not_measurable": ["memo_nn_ratio", "precision_floor"]}))
    assert untested.find("p", "note")[0].text() == "Note: the reference is the training data"
    shown = metric_rows(untested)["not_measurable"].find("td", "value")[0].text()
    assert shown == "nearest-train distance ratio, precision: floor (real vs real)"
    assert "floor" not in [cell.text() for cell in untested.find("th")]  # no floor measured: no floor column


def test_grids_in_time_order_final_last_with_cyclegan_columns(tmp_path):
    from PIL import Image

    from darkroom.report.html import build_report
    from darkroom.report.samples import CYCLEGAN_COLUMNS

    run = tmp_path / "cg"
    (run / "samples").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"task": "cyclegan", "command": "darkroom train cyclegan",
                                                 "config": {"data": "fashion-mnist:sneaker,ankle-boot"}}))
    for name in ("final", "step-0000010", "step-0000002", "step-0000100", "step-0000001"):
        Image.new("L", (60, 20), 128).save(run / "samples" / f"{name}.png")
    page = parse(build_report(run).read_text())
    figures = page.find("figure", "sample")
    assert [figure.attrs["data-step"] for figure in figures] == ["1", "2", "10", "100", "end"]
    for figure in figures:
        assert [span.text() for span in figure.find("div", "columns")[0].find("span")] == list(CYCLEGAN_COLUMNS)
    assert "A = sneaker, B = ankle-boot" in figures[-1].find("figcaption")[0].text()
    assert "end of training" in figures[-1].find("figcaption")[0].text()
    assert ".grid figure.sample{width:300px}" in page.find("style")[0].text()  # one width for every grid


# -- tiny real runs ----------------------------------------------------------------------------------------

@needs_fashion
@pytest.mark.slow
def test_every_key_real_runs_and_evaluations_write_has_a_meaning(task_runs):
    from darkroom.report.glossary import describe

    keys = {key for run in ("clf", "gan", "cg", "toy") for line in read_lines(task_runs[run]) for key in line}
    for run in ("gan", "cg"):
        keys |= set(json.loads((task_runs[run] / "eval.json").read_text()))
    from darkroom.classifier.predict import load_run
    classes = load_run(str(task_runs["clf"]), torch.device("cpu"))[2]["classes"]
    keys |= {*CLASSIFIER_KEYS, *(f"acc_{name}" for name in classes)}
    assert {"test_acc", "wasserstein", "val_cycle_a", "toy_modes_captured", "frechet_inception_distance_ci_low",
            "translation_fid_b2a_floor", "memo_ct_cells", "heldout_is_unseen"} <= keys  # the walk saw every source
    missing = sorted(key for key in keys if not (describe(key).known and describe(key).meaning))
    assert not missing, f"keys without a meaning in darkroom/report/glossary.py: {missing}"


@needs_fashion
@pytest.mark.slow
def test_run_pages_show_names_intervals_floors_and_labelled_grids(task_runs):
    evaluation = json.loads((task_runs["gan"] / "eval.json").read_text())
    gan = parse((task_runs["gan"] / "report.html").read_text())
    rows = metric_rows(gan)
    assert not [key for key in rows if key.endswith(("_ci_low", "_ci_high"))]
    fid = rows["frechet_inception_distance"]
    low, high = evaluation["frechet_inception_distance_ci_low"], evaluation["frechet_inception_distance_ci_high"]
    assert f"[{low:.4g}, {high:.4g}]" in fid.find("td", "value")[0].text()
    assert f"{evaluation['frechet_inception_distance_floor']:.4g}" in fid.find("td", "floor")[0].text()
    assert all(row.find("td", "meaning")[0].text() for row in rows.values())
    captions = [figure.find("figcaption")[0].text() for figure in gan.find("figure", "sample")]
    assert captions == ["16 samples from the same fixed noise, after iteration 2",
                        "16 samples from the same fixed noise, after iteration 4"]
    cg = parse((task_runs["cg"] / "report.html").read_text())
    steps = [figure.attrs["data-step"] for figure in cg.find("figure", "sample")]
    assert steps == ["1", "2", "end"]
    last = metric_rows(by_id(cg, "last-metrics"))  # Last metrics: the latest of each key, losses and validation alike
    assert {"gan_ab", "val_cycle_b", "held_out"} <= set(last) and all(r.find("td", "meaning")[0].text() for r in last.values())
    clf_page = (task_runs["clf"] / "report.html").read_text()
    assert "alt=\"confusion matrix\"" in clf_page and "http://" not in clf_page and "<script" not in clf_page
    metrics = read_lines(task_runs["clf"])
    assert f"{metrics[-1]['test_acc']:.4g}" in clf_page
    assert json.loads((task_runs["clf"] / "config.json").read_text())["command"] in clf_page


@needs_fashion
@pytest.mark.slow
def test_front_page_shows_each_task_picture_then_numbers_with_floors(task_runs):
    page = parse((task_runs["root"] / "index.html").read_text())
    sections = page.find("section", "task")
    assert [section.attrs["id"] for section in sections] == ["task-classifier", "task-gan", "task-cyclegan"]
    for section in sections:
        grid = section.find("div", "grid")[0]
        hero = grid.children[0]
        assert hero.tag == "figure" and "hero" in hero.classes() and hero.find("img")  # the picture comes first
        assert any("curve" in img.attrs.get("alt", "") for img in grid.find("img"))
        rows = metric_rows(section)
        assert rows and all(row.find("td", "meaning")[0].text() for row in rows.values())
    clf, gan, cyclegan = sections
    assert clf.find("img")[0].attrs["alt"] == "confusion matrix"
    assert "after iteration 4" in gan.find("figcaption")[0].text()
    gan_rows = metric_rows(gan)
    assert gan_rows["frechet_inception_distance"].find("td", "floor")[0].text()  # with its floor ...
    assert "[" in gan_rows["frechet_inception_distance"].find("td", "value")[0].text()  # ... and its interval
    assert cyclegan.find("div", "columns") and "end of training" in cyclegan.find("figcaption")[0].text()
    assert metric_rows(cyclegan)["translation_fid_a2b"].find("td", "floor")[0].text()


@needs_fashion
@pytest.mark.slow
def test_confusion_matrix_agrees_with_the_logged_test_accuracy(task_runs):
    matrix = task_runs["matrix"]
    assert matrix.shape == (10, 10) and (task_runs["clf"] / "confusion.png").stat().st_size > 2000
    assert matrix.sum() == 1000  # --test-sample 0.1 of 10,000
    assert matrix.trace().item() / matrix.sum().item() == pytest.approx(read_lines(task_runs["clf"])[-1]["test_acc"], abs=1e-9)


@needs_fashion
def test_index_lists_runs_with_status(tmp_path):
    result = run_cli(["train", "classifier", "--preset", "fashion-mnist-cpunet", "--sample", "0.02", "--test-sample", "0.05",
                      "--epochs", "1", "--batch-size", "100", "--quiet", "--out", str(tmp_path / "clf")])
    assert result.returncode == 0, result.stderr
    assert f"report: {tmp_path / 'clf' / 'report.html'}" in result.stdout
    shutil.copytree(tmp_path / "clf", tmp_path / "clf-copy")
    (tmp_path / "clf-copy" / "status.json").write_text(json.dumps({"status": "running", "started": 0, "updated": 5}))
    result = run_cli(["report", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    index = (tmp_path / "index.html").read_text()
    assert "clf/report.html" in index and "classifier" in index and "finished" in index and "test accuracy" in index
    assert "stopped" in index  # 'running' with no live process holding the lock
