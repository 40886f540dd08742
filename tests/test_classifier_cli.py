"""The classifier end to end through the command line: train, eval, predict, and one-sentence errors."""
import json

import numpy as np
import pytest
from PIL import Image

from conftest import needs_fashion, run_cli

QUICK = ["--data", "fashion-mnist", "--sample", "0.05", "--test-sample", "0.1", "--epochs", "2", "--batch-size", "100",
         "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "clf"
    result = run_cli(["train", "classifier", "--preset", "fashion-mnist-cpunet", *QUICK, "--out", str(out)])
    assert result.returncode == 0, result.stderr
    return out, result


@needs_fashion
def test_train_writes_run_folder_and_learns(trained):
    out, result = trained
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    assert lines[-1]["test_acc"] > 0.6  # 3,000 images, 2 epochs: far above the 0.1 of chance
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["arch"] == "cpunet" and config["config"]["sample"] == 0.05
    assert json.loads((out / "status.json").read_text())["status"] == "finished"
    assert f"run folder {out}" in result.stdout and "test accuracy" in result.stdout


@needs_fashion
def test_eval_matches_training_report(trained, tmp_path):
    out, _ = trained
    result = run_cli(["eval", "classifier", str(out), "--json", str(tmp_path / "e.json")])
    assert result.returncode == 0, result.stderr
    numbers = json.loads((tmp_path / "e.json").read_text())
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert numbers["n"] == 10000  # eval uses the full test split
    assert abs(numbers["test_acc"] - last["test_acc"]) < 0.05
    assert "acc_sneaker" in numbers


@needs_fashion
def test_predict_any_size_and_mode(trained, tmp_path):
    out, _ = trained
    from darkroom.data.idx import load_idx_dataset
    test = load_idx_dataset("fashion-mnist", "test")
    trouser = test.images[test.labels == 1][0, 0].numpy()
    big = Image.fromarray(trouser).resize((100, 77)).convert("RGBA")  # other size, other mode
    big.save(tmp_path / "trouser.png")
    Image.fromarray(np.stack([trouser] * 3, -1)).convert("P").save(tmp_path / "trouser_p.png")
    result = run_cli(["predict", str(out), str(tmp_path / "trouser.png"), str(tmp_path / "trouser_p.png"), "--top-k", "2"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.split()[1] == "trouser" for line in lines)


@pytest.mark.parametrize("args,culprit", [
    (["train", "classifier", "--arch", "resnet1000"], "--arch"),
    (["train", "classifier", "--data", "/no/such/folder"], "/no/such/folder"),
    (["train", "classifier", "--lr", "fast"], "--lr"),
    (["train", "classifier", "--bogus-flag", "1"], "--bogus-flag"),
    (["eval", "classifier", "/no/such/run"], "/no/such/run"),
    (["predict", "/no/such/run", "x.png"], "x.png"),
    (["train", "classifier", "--progressive", "20"], "--progressive"),
])
def test_user_mistakes_are_one_sentence(args, culprit):
    result = run_cli(args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert culprit in result.stderr and len(result.stderr.strip().splitlines()) == 1


@needs_fashion
def test_corrupt_idx_file_is_named(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 5)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x00")
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(b"")
    result = run_cli(["train", "classifier", "--data-root", str(tmp_path), "--quiet"])
    assert result.returncode == 2 and "train-images-idx3-ubyte" in result.stderr and "Traceback" not in result.stderr


@needs_fashion
def test_existing_run_refused_without_resume(trained):
    out, _ = trained
    result = run_cli(["train", "classifier", "--preset", "fashion-mnist-cpunet", *QUICK, "--out", str(out)])
    assert result.returncode == 2 and "--resume" in result.stderr


@needs_fashion
def test_resume_of_a_finished_run_says_so_and_touches_nothing(trained):
    out, _ = trained
    before = {path: path.read_bytes() for path in sorted(out.rglob("*")) if path.is_file()}
    result = run_cli(["train", "classifier", "--preset", "fashion-mnist-cpunet", *QUICK, "--out", str(out), "--resume"])
    assert result.returncode == 0, result.stderr
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert result.stdout.strip() == (f"run {out} already finished ({last['step']} steps, test accuracy "
                                     f"{last['test_acc']:.4f}); nothing to resume")
    assert {path: path.read_bytes() for path in sorted(out.rglob("*")) if path.is_file()} == before


@needs_fashion
def test_resume_with_no_checkpoint_yet_says_it_starts_fresh(tmp_path):
    """A rerun job passes --resume every time: the first life finds no checkpoint, trains from scratch and says so."""
    out = tmp_path / "first-life"
    result = run_cli(["train", "classifier", "--preset", "fashion-mnist-cpunet", *QUICK, "--epochs", "1", "--out", str(out),
                      "--resume"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"no checkpoint in {out} yet: --resume starts a fresh run"
    assert json.loads((out / "status.json").read_text())["status"] == "finished"


@needs_fashion
def test_lr_find_writes_plot(tmp_path):
    result = run_cli(["lr-find", "--steps", "30", "--out", str(tmp_path / "lr.png")])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "lr.png").stat().st_size > 1000 and "suggested learning rate" in result.stdout


@needs_fashion
@pytest.mark.parametrize("spec,says", [("28:1", "not smaller than the 28 px"), ("4:1", "too small for --arch cpunet")])
def test_progressive_sizes_the_data_or_net_cannot_take_are_refused(tmp_path, spec, says):
    result = run_cli(["train", "classifier", *QUICK, "--progressive", spec, "--out", str(tmp_path / "run")])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"--progressive size {spec.split(':')[0]} is {says}" in result.stderr, result.stderr


@needs_fashion
def test_progressive_resizing_trains_small_then_evaluates_at_full_size(tmp_path):
    out = tmp_path / "run"
    result = run_cli(["train", "classifier", "--preset", "fashion-mnist-cpunet", *QUICK, "--progressive", "16:1",
                      "--out", str(out)])
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["train_size"] for line in lines] == [16, 28] and lines[-1]["test_acc"] > 0.5
    assert json.loads((out / "config.json").read_text())["config"]["progressive"] == "16:1"


@needs_fashion
def test_progressive_stages_must_end_before_the_run(tmp_path):
    result = run_cli(["train", "classifier", "--preset", "fashion-mnist-cpu", *QUICK, "--out", str(tmp_path / "run")])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--progressive '20:2' resizes until epoch 2 of the 2 epochs" in result.stderr, result.stderr


@needs_fashion
def test_fast_preset_trains_in_bf16_exactly_where_the_cpu_multiplies_bf16(tmp_path):
    """fashion-mnist-fast: no random crop, flips, label smoothing, --precision fast (bf16 only where native); every
    budget of the pareto benchmark and the record name a preset that exists."""
    from darkroom import classifier, precision

    fast = classifier.PRESETS["fashion-mnist-fast"]
    assert fast["pad"] == 0 and fast["precision"] == "fast" and fast["arch"] == "cpunet"
    assert classifier.RECORD_PRESET in classifier.PRESETS
    assert all(name in classifier.PRESETS for name in classifier.BUDGET_PRESETS.values())
    out = tmp_path / "fast"
    result = run_cli(["train", "classifier", "--preset", "fashion-mnist-fast", *QUICK, "--out", str(out)])
    assert result.returncode == 0, result.stderr
    expected = "bf16" if precision.cpu_has_native_bf16() else "fp32"
    assert f"cpu, {expected}" in result.stdout + result.stderr
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["test_acc"] > 0.6
