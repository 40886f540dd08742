"""The classifier's streaming path (--stream): a class folder and a CSV list written here, read by DataLoader
workers, give the resident path's files, pixels, batches and weights exactly; a streamed run killed mid-epoch
resumes to the uninterrupted run's weights; auto keeps a small set resident; a bad file is one sentence.
Runs are forked from test_faults_kill's zygote (torch imported once).
"""
from __future__ import annotations

import json
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from darkroom import checkpoint, dist
from darkroom.data import sources
from darkroom.data.resident import Augment
from darkroom.classifier import data as classifier_data
from darkroom.classifier.data import DataSettings, FileImages, StreamedImages, list_split
from test_faults_kill import TIMING, Watch, assert_same, metric_lines, wait_for, zygote  # noqa: F401 (fixture)


def write_classes(root: Path, classes: int = 4, per_class: int = 16, seed: int = 0) -> Path:
    """Noise images of assorted sizes and modes, each class a little brighter than the one before."""
    rng = np.random.default_rng(seed)
    for label in range(classes):
        for index in range(per_class):
            width, height = int(rng.integers(16, 24)), int(rng.integers(16, 24))
            pixels = rng.integers(0, 160, (height, width, 3)) + 30 * label
            image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")
            (root / f"class{label}").mkdir(parents=True, exist_ok=True)
            (image.convert("L") if index % 5 == 0 else image).save(root / f"class{label}" / f"{index:03d}.png")
    return root


def write_csv(root: Path) -> Path:
    """A CSV list (with a header) of the class folder's files, labelled by class name."""
    rows = ["file,label"] + [f"{path.relative_to(root)},{path.parent.name}" for path in sorted(root.rglob("*.png"))]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def train_args(data: Path, *extra: str) -> list[str]:
    return ["train", "classifier", "--data", str(data), "--image-size", "16", "--batch-size", "8", "--epochs", "2",
            "--tta", "flip", "--checkpoint-every", "1", "--deterministic", "--quiet", "--workers", "0", *extra]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_classes(tmp_path_factory.mktemp("data") / "shapes")


@pytest.mark.parametrize("kind", ["folder", "csv"])
def test_streamed_items_are_the_resident_images(folder, kind):
    spec = str(folder if kind == "folder" else write_csv(folder))
    for split in ("train", "test"):
        resident = sources.load(spec, split, None, 1.0, 0, 16)
        files = list_split(spec, split, 1.0, 0)
        items = [FileImages(files, resident.images.shape[1], 16, (16, 16))[i] for i in range(len(files))]
        assert torch.equal(torch.stack([x for x, _ in items]), resident.images), split
        assert torch.equal(torch.stack([y for _, y in items]), resident.labels) and files.classes == resident.classes


def test_streamed_batches_are_the_resident_batches_on_every_rank(folder):
    settings = DataSettings(str(folder), None, 1.0, 1.0, 0, 16, "always", 0, 8, False)
    streamed = classifier_data.load(settings, dist.DistInfo(0, 1, 0, torch.device("cpu")))
    resident = classifier_data.load(replace(settings, stream="never"), dist.DistInfo(0, 1, 0, torch.device("cpu")))
    assert streamed.streamed and not resident.streamed
    assert torch.equal(streamed.mean, resident.mean) and torch.equal(streamed.std, resident.std)
    assert torch.equal(streamed.whiten_images, resident.whiten_images)
    augment = Augment(pad=2, flip=True, alternating_flip=True)
    order = torch.randperm(len(resident.train), generator=torch.Generator().manual_seed(1))
    for step in (3, 0, 1, 5):  # out of order: each jump restarts the reading at that step
        x, y = streamed.train.train_batch(order, step, 1, augment, torch.Generator().manual_seed(step))
        want_x, want_y = resident.train.train_batch(order, step, 1, augment, torch.Generator().manual_seed(step))
        assert torch.equal(x, want_x) and torch.equal(y, want_y), step
    files = streamed.train.files
    halves = [StreamedImages(files, torch.device("cpu"), streamed.mean, streamed.std, 8, rank, 2, False, 0, 0)
              .train_batch(order, 2, 0, augment, torch.Generator().manual_seed(9))[0] for rank in (0, 1)]
    whole = resident.train.train_batch(order, 2, 0, augment, torch.Generator().manual_seed(9))[0]
    assert torch.equal(torch.cat(halves), whole)
    evaluated = [torch.cat(parts) for parts in zip(*streamed.test.eval_batches(4))]
    assert all(torch.equal(a, b) for a, b in zip(evaluated, map(torch.cat, zip(*resident.test.eval_batches(1000)))))


def test_stream_auto_streams_only_above_the_budget():
    assert not classifier_data.stream_wanted("auto", 10 << 20, 11 << 20)
    assert classifier_data.stream_wanted("auto", 12 << 20, 11 << 20)
    assert classifier_data.stream_wanted("always", 0, 1 << 40) and not classifier_data.stream_wanted("never", 1 << 40, 0)
    assert 0 < classifier_data.memory_budget(torch.device("cpu")) < classifier_data.available_ram()


def test_streamed_run_through_the_cli_equals_the_resident_run(tmp_path, folder, zygote):
    streamed, resident, auto = tmp_path / "streamed", tmp_path / "resident", tmp_path / "auto"
    stdout, _ = zygote.run([*train_args(folder, "--stream", "always", "--workers", "2"), "--out", str(streamed)],
                           tmp_path / "streamed.log")
    assert "58 images, 3x16x16, streamed by 2 DataLoader workers" in stdout  # 64 files less the 10% held out
    zygote.run([*train_args(folder, "--stream", "never"), "--out", str(resident)], tmp_path / "resident.log")
    stdout, _ = zygote.run([*train_args(folder, "--stream", "auto"), "--out", str(auto)], tmp_path / "auto.log")
    assert "resident on cpu" in stdout  # 64 small images: far below a quarter of the free memory
    assert json.loads((auto / "config.json").read_text())["environment"]["data"] == "resident"
    assert json.loads((streamed / "status.json").read_text())["status"] == "finished"
    a, b = checkpoint.load(streamed / "checkpoints" / "last.pt"), checkpoint.load(resident / "checkpoints" / "last.pt")
    assert a["state"]["step"] == 14
    for key in ("model", "optimizer", "meta", "data_generator"):
        assert_same(a[key], b[key], key)
    assert metric_lines(streamed, TIMING) == metric_lines(resident, TIMING)


def test_streamed_run_killed_mid_epoch_resumes_exactly(tmp_path, folder, zygote):
    args = train_args(folder, "--stream", "always", "--workers", "2")
    zygote.run([*args, "--out", str(tmp_path / "reference")], tmp_path / "reference.log")
    run = tmp_path / "killed"
    life = zygote.start([*args, "--out", str(run)], tmp_path / "killed.log")
    watch = Watch(run, life.pid)
    assert wait_for(life, lambda: watch.poll() or watch.writes >= 9), "the run ended before it could be killed"
    life.kill()
    assert life.wait() == -signal.SIGKILL
    step = checkpoint.load(run / "checkpoints" / "last.pt")["state"]["step"]
    assert 7 < step < 14, step  # in the second epoch: the resume skips its done batches
    stdout, _ = zygote.run([*args, "--out", str(run), "--resume", "--stream", "never"], tmp_path / "resumed.log")
    assert f"resumed {run} at epoch 2, step {step} of 14" in stdout and "resident" in stdout  # the path may change
    a, b = checkpoint.load(tmp_path / "reference" / "checkpoints" / "last.pt"), checkpoint.load(run / "checkpoints" / "last.pt")
    for key in ("model", "optimizer", "data_generator"):
        assert_same(a[key], b[key], key)
    assert metric_lines(run, TIMING) == metric_lines(tmp_path / "reference", TIMING)


def test_a_bad_file_read_by_a_worker_is_one_sentence(tmp_path, zygote):
    """A train/ and test/ layout with a broken test file: only an evaluation worker reads it (the training sample
    that sets mean and std does not), and its traceback-laden message is cut to the one sentence."""
    data = tmp_path / "data"
    write_classes(data / "train", per_class=8)
    write_classes(data / "test", per_class=2, seed=1)
    (data / "test" / "class1" / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    _, stderr = zygote.run([*train_args(data, "--stream", "always", "--workers", "2"), "--out", str(tmp_path / "run")],
                           tmp_path / "bad.log", expect=2)
    assert stderr.strip().splitlines() == [f"darkroom: error: {data}/test/class1/001.png is not a readable image "
                                           "(cannot identify image file '" + f"{data}/test/class1/001.png') "
                                           "(pass --on-bad-image skip to leave such files out)"], stderr
