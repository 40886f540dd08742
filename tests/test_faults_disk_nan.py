"""A disk that fills up during a checkpoint write, and a loss that turns non-finite, in real trainer runs.

Full disk: right after a run's first checkpoint the test lowers the live process's file-size limit (prlimit
RLIMIT_FSIZE, below the checkpoint's size: the disk "fills"), so the next checkpoint write fails midway. The run
exits 2 with one sentence naming the checkpoint, the previous checkpoint loads, no temp file is left, and
--resume finishes once there is room again.
Non-finite loss: an absurd --lr 1e30 blows the weights up in one step (an honest divergence, no hook), so the next
loss is NaN: the run stops in one sentence with the last good checkpoint intact, or with --on-nan skip finishes
and counts the skipped steps; in fp16 the GradScaler skips the overflowing steps and the weights stay finite.
Runs are forked from test_faults_kill's zygote (torch imported once).
"""
from __future__ import annotations

import json
import math
import resource
import signal
from pathlib import Path

import pytest
import torch

from conftest import have_fashion_mnist
from darkroom import checkpoint
from test_faults_kill import TRAINERS, Watch, short_args, temp_files, trainer, wait_for, zygote  # noqa: F401 (fixture)

needs_fashion = pytest.mark.skipif(not have_fashion_mnist(), reason="Fashion-MNIST not installed")


def finite(tree) -> bool:
    if isinstance(tree, torch.Tensor):
        return not tree.is_floating_point() or bool(torch.isfinite(tree).all())
    if isinstance(tree, dict):
        return all(finite(value) for value in tree.values())
    if isinstance(tree, (list, tuple)):
        return all(finite(value) for value in tree)
    return not isinstance(tree, float) or math.isfinite(tree)


def one_sentence(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("darkroom: error: "), stderr[-2000:]
    return lines[0]


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", TRAINERS)
def test_full_disk_during_a_checkpoint_write_keeps_the_previous_one(tmp_path, zygote, name):
    run, step_key = tmp_path / "run", trainer(name, tmp_path).step_key
    args = [*short_args(name, tmp_path), "--out", str(run)]
    life = zygote.start(args, tmp_path / "full.log")
    watch = Watch(run, life.pid)
    assert wait_for(life, lambda: watch.poll() or watch.writes >= 1), life.output()[-2000:]
    signal.pidfd_send_signal(life.pidfd, signal.SIGSTOP)  # hold it still while the disk "fills"
    limit = (run / "checkpoints" / "last.pt").stat().st_size // 2  # the next checkpoint no longer fits
    resource.prlimit(life.pid, resource.RLIMIT_FSIZE, (limit, limit))
    signal.pidfd_send_signal(life.pidfd, signal.SIGCONT)
    assert life.wait() == 2, life.output()[-2000:]

    error = one_sentence(Path(f"{life.log}.err").read_text())
    assert error == (f"darkroom: error: could not write checkpoint {run}/checkpoints/last.pt: the disk is full; "
                     "the previous checkpoint is intact")
    step = checkpoint.load(run / "checkpoints" / "last.pt")["state"][step_key]
    assert 1 <= step < 6
    assert temp_files(run) == []  # the failed write removed its temp file

    stdout, _ = zygote.run([*args, "--resume"], tmp_path / "resumed.log")  # room again: nothing was lost
    assert f"resumed {run} at" in stdout
    assert checkpoint.load(run / "checkpoints" / "last.pt")["state"][step_key] == 6


@needs_fashion
def test_classifier_non_finite_loss_stops_with_the_last_good_checkpoint(tmp_path, zygote):
    run = tmp_path / "run"
    _, stderr = zygote.run([*short_args("classifier", tmp_path), "--lr", "1e30", "--out", str(run)],
                           tmp_path / "nan.log", expect=2)
    assert one_sentence(stderr) == (f"darkroom: error: the training loss became non-finite at step 1; the last good "
                                    f"checkpoint in {run}/checkpoints is intact (lower --lr, or pass --on-nan skip)")
    saved = checkpoint.load(run / "checkpoints" / "last.pt")
    assert saved["state"]["step"] == 1 and finite(saved["model"]) and finite(saved["optimizer"])
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed" and "non-finite at step 1" in status["error"]


@pytest.fixture(scope="module")
def skipped_run(tmp_path_factory, zygote):
    if not have_fashion_mnist():
        pytest.skip("Fashion-MNIST not installed")
    tmp = tmp_path_factory.mktemp("skip")
    zygote.run([*short_args("classifier", tmp), "--lr", "1e30", "--on-nan", "skip", "--out", str(tmp / "run")],
               tmp / "skip.log")
    return tmp / "run"


def test_classifier_on_nan_skip_finishes_and_counts(skipped_run):
    assert metrics(skipped_run)[-1]["skipped_steps"] == 5  # step 0 was finite; the 5 after it were skipped
    assert json.loads((skipped_run / "status.json").read_text())["status"] == "finished"
    saved = checkpoint.load(skipped_run / "checkpoints" / "last.pt")
    parameters = {key: value for key, value in saved["model"].items() if "running_" not in key}
    assert saved["state"]["step"] == 6 and finite(parameters) and finite(saved["optimizer"])


def test_classifier_on_nan_skip_leaves_batchnorm_statistics_finite(skipped_run):
    saved = checkpoint.load(skipped_run / "checkpoints" / "last.pt")
    assert finite({key: value for key, value in saved["model"].items() if "running_" in key})


@needs_fashion
def test_classifier_fp16_skips_non_finite_steps(tmp_path, zygote):
    run = tmp_path / "run"
    args = ["train", "classifier", "--data", "fashion-mnist", "--sample", "0.002", "--test-sample", "0.001",
            "--batch-size", "40", "--epochs", "1", "--tta", "none", "--precision", "fp16", "--lr", "1e30", "--quiet"]
    zygote.run([*args, "--out", str(run)], tmp_path / "fp16.log")
    saved = checkpoint.load(run / "checkpoints" / "last.pt")
    assert metrics(run)[-1]["skipped_steps"] >= 1 and saved["scaler"]["scale"] < 2.0 ** 16
    assert finite(saved["model"]) and finite(saved["optimizer"])


@needs_fashion
def test_classifier_fp16_stops_once_no_step_recovers(tmp_path, zygote):
    """Weights blown up by one step: every later fp16 step overflows, so the GradScaler halves its scale each time;
    below 2^-8 (24 halvings past its 2^16 start) the run stops in one sentence, weights still finite."""
    run = tmp_path / "run"
    args = ["train", "classifier", "--data", "fashion-mnist", "--sample", "0.002", "--test-sample", "0.001",
            "--batch-size", "8", "--epochs", "2", "--tta", "none", "--precision", "fp16", "--lr", "1e30", "--quiet"]
    _, stderr = zygote.run([*args, "--out", str(run)], tmp_path / "fp16.log", expect=2)
    error = one_sentence(stderr)
    assert error.startswith("darkroom: error: the training loss stayed non-finite in fp16 until step 25 (the "
                            "GradScaler's scale fell to 0.00195); "), error  # steps 1..25 skipped: 2^16 / 2^25
    assert error.endswith(f"the last good checkpoint in {run}/checkpoints is intact (lower --lr, or use --precision bf16)")
    saved = checkpoint.load(run / "checkpoints" / "last.pt")
    assert saved["state"]["step"] == 15 and finite(saved["model"])  # the first epoch's end


def test_cyclegan_non_finite_loss_stops_with_the_last_checkpoint(tmp_path, zygote):
    run = tmp_path / "run"
    _, stderr = zygote.run([*short_args("cyclegan", tmp_path), "--lr", "1e30", "--out", str(run)],
                           tmp_path / "nan.log", expect=2)
    error = one_sentence(stderr)
    assert error.startswith("darkroom: error: a loss became non-finite at iteration 1 (")
    assert error.endswith(f"the last checkpoint in {run}/checkpoints is intact (lower --lr)")
    saved = checkpoint.load(run / "checkpoints" / "last.pt")
    assert saved["state"]["step"] == 1
    assert all(finite(saved[key]) for key in ("g_ab", "g_ba", "d_a", "d_b", "opt_g", "opt_d"))


def test_cyclegan_fp16_scaler_skips_overflowing_steps(tmp_path, zygote):
    run = tmp_path / "run"
    zygote.run([*short_args("cyclegan", tmp_path), "--lr", "1e30", "--precision", "fp16", "--out", str(run)],
               tmp_path / "fp16.log")
    assert any(math.isnan(line.get("g", 0.0)) for line in metrics(run))  # non-finite losses did happen
    saved = checkpoint.load(run / "checkpoints" / "last.pt")
    assert saved["state"]["step"] == 6 and json.loads((run / "status.json").read_text())["status"] == "finished"
    assert saved["scaler"]["scale"] < 2.0 ** 16  # halved once per skipped step
    assert all(finite(saved[key]) for key in ("g_ab", "g_ba", "d_a", "d_b", "opt_g", "opt_d"))
