"""--on-bad-image for the classifier and CycleGAN trainers: one corrupt file in the data stops the run with one
sentence naming it (fail, the default), or is left out, named in the log once and counted as skipped_images in the
metrics line (skip). The classifier's resident and streamed paths (where a DataLoader worker meets the file) both."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from darkroom import cli
from test_cyclegan_train import TINY as CYCLEGAN_TINY
from test_cyclegan_train import unpaired_layout


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small nets, one torch thread


def write_classes(root: Path, per_class: int = 12, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for label in range(2):
        (root / f"class{label}").mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            pixels = rng.integers(0, 160, (16, 16, 3)) + 60 * label
            Image.fromarray(pixels.astype(np.uint8), "RGB").save(root / f"class{label}" / f"{index:03d}.png")
    return root


def last_metrics(run: Path) -> dict:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]


def classifier(data: Path, out: Path, *extra: str) -> int:
    return cli.main(["train", "classifier", "--data", str(data), "--image-size", "16", "--batch-size", "8",
                     "--tta", "none", "--quiet", "--workers", "0", "--out", str(out), *extra])


def test_classifier_stops_on_a_corrupt_file_or_skips_it_counted_and_named(tmp_path, capsys):
    data = write_classes(tmp_path / "data")
    corrupt = data / "class1" / "005.png"
    corrupt.write_bytes(b"this is not an image")
    assert classifier(data, tmp_path / "stops", "--epochs", "1") == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        f"darkroom: error: {corrupt} is not a readable image (cannot identify image file '{corrupt}') "
        "(pass --on-bad-image skip to leave such files out)"]
    assert classifier(data, tmp_path / "skips", "--epochs", "1", "--on-bad-image", "skip") == 0
    out = capsys.readouterr().out
    assert out.count(f"skipped {corrupt}") == 1 and f"skipped {corrupt} is not a readable image" in out
    assert last_metrics(tmp_path / "skips")["skipped_images"] == 1
    assert "(23 images" in out or "(21 images" in out  # 24 files, one left out, a tenth of them held out as test
    assert classifier(write_classes(tmp_path / "clean"), tmp_path / "clean-run", "--epochs", "1") == 0
    assert last_metrics(tmp_path / "clean-run")["skipped_images"] == 0


def test_classifier_streamed_skip_names_a_file_a_worker_meets_once(tmp_path, capfd):
    """The corrupt file is in test/: only the evaluation's DataLoader workers read it, at each of two epochs; it is
    named once and counted once (capfd: the workers are forked processes writing to the same stdout)."""
    data = tmp_path / "data"
    write_classes(data / "train", per_class=8)
    write_classes(data / "test", per_class=3, seed=1)
    corrupt = data / "test" / "class0" / "001.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    args = ["--epochs", "2", "--stream", "always", "--workers", "2"]
    assert classifier(data, tmp_path / "stops", *args) == 2
    assert capfd.readouterr().err.strip().splitlines()[-1] == (
        f"darkroom: error: {corrupt} is not a readable image (cannot identify image file '{corrupt}') "
        "(pass --on-bad-image skip to leave such files out)")
    assert classifier(data, tmp_path / "skips", *args, "--on-bad-image", "skip") == 0
    out = capfd.readouterr().out
    assert out.count(f"skipped {corrupt}") == 1 and f"skipped {corrupt} is not a readable image" in out
    lines = [json.loads(line) for line in (tmp_path / "skips" / "metrics.jsonl").read_text().splitlines()]
    assert [line["skipped_images"] for line in lines] == [1, 1]


def test_cyclegan_stops_on_a_corrupt_file_or_skips_it_counted_and_named(tmp_path, capsys):
    data = unpaired_layout(tmp_path / "set", "L", count=7)
    corrupt = data / "trainB" / "003.png"
    corrupt.write_bytes(b"this is not an image")
    args = ["train", "cyclegan", "--data", str(data), *CYCLEGAN_TINY, "--val-images", "0", "--load-size", "16",
            "--crop-size", "16", "--batch-size", "2", "--epochs", "1", "--epochs-decay", "0", "--log-every", "1"]
    assert cli.main([*args, "--out", str(tmp_path / "stops")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"darkroom: error: {corrupt} is not a readable image (cannot identify image "
                                        f"file '{corrupt}') (pass --on-bad-image skip to leave such files out)"]
    assert cli.main([*args, "--on-bad-image", "skip", "--out", str(tmp_path / "skips")]) == 0
    out = capsys.readouterr().out
    assert f"skipped {corrupt} is not a readable image" in out and out.count(f"skipped {corrupt}") == 1
    losses = [json.loads(line) for line in (tmp_path / "skips" / "metrics.jsonl").read_text().splitlines()
              if "gan_ab" in json.loads(line)]
    assert losses and all(line["skipped_images"] == 1 for line in losses)
