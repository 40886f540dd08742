"""A bad flag or value: one line on stderr naming it, exit 2, no usage block and no traceback."""
import argparse

import pytest
import torch

from conftest import needs_fashion
from darkroom import cli


@pytest.mark.parametrize("argv, culprit", [
    (["train", "classifier", "--lr", "x"], "argument --lr: invalid float value: 'x'"),
    (["train", "gan", "--loss", "lsgan"], "argument --loss: invalid choice: 'lsgan'"),
    (["nope"], "invalid choice: 'nope'"),
])
def test_a_bad_flag_is_one_sentence_naming_it(argv, culprit, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("darkroom: error: ") and culprit in err
    assert "darkroom: error: darkroom" not in err and "usage:" not in err and "Traceback" not in err


def _command_paths(parser, prefix=()):
    """Every command line that reaches a parser: (), ("train",), ("train", "cyclegan"), ..."""
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _command_paths(sub, (*prefix, name))


COMMANDS = list(_command_paths(cli.build_parser([])))


def test_the_walk_reaches_every_training_task():
    assert {("train", "classifier"), ("train", "gan"), ("train", "cyclegan"), ("translate",)} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: " ".join(command) or "darkroom")
def test_help_prints_for_every_command(command, capsys):
    """A '%' in an option's help text once made `train cyclegan --help` a traceback (argparse %-formats help)."""
    with pytest.raises(SystemExit) as stop:
        cli.main([*command, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: darkroom") and "--help" in out


@pytest.mark.parametrize("argv, culprit", [
    (["train", "classifier", "--batch-size", "-4"], "--batch-size must be at least 1, not -4"),  # once looped forever
    (["train", "classifier", "--batch-size", "0"], "--batch-size must be at least 1, not 0"),
    (["train", "classifier", "--epochs", "0"], "--epochs must be greater than 0, not 0"),
    (["train", "classifier", "--lr", "0"], "--lr must be greater than 0, not 0"),
    (["train", "classifier", "--sample", "1.5"], "--sample must be at most 1, not 1.5"),
    (["train", "classifier", "--test-sample", "0"], "--test-sample must be greater than 0, not 0"),
    (["train", "gan", "--lr", "-1"], "--lr must be at least 0, not -1"),
    (["train", "gan", "--image-size", "0"], "--image-size must be at least 16, not 0"),
    (["train", "classifier", "--device", "bogus"], "--device 'bogus' is not a device"),
    (["train", "cyclegan", "--d-layers", "0"], "--d-layers must be at least 1, not 0"),
    (["train", "cyclegan", "--device", "cuda"] if not torch.cuda.is_available() else ["train", "cyclegan", "--device", "cuda:99"],
     "--device cuda"),
    (["eval", "gan", "no-such-run", "--n", "0"], "argument --n: must be at least 2, not 0"),
    (["eval", "images", "--fake", "f", "--real", "r", "--n", "x"], "argument --n: invalid whole number: 'x'"),
    (["lr-find", "--steps", "0"], "argument --steps: must be at least 5, not 0"),
    (["lr-find", "--preset", "bogus"], "--preset bogus is not a classifier preset"),
    (["lr-find", "--out", "plot.txt"], "--out plot.txt must end in .png or .svg or .pdf"),
    (["sample", "no-such-run", "--out", "grid.jpg"], "--out grid.jpg must end in .png"),
    (["train", "cyclegan", "--lr", "0"], "--lr must be greater than 0, not 0"),
    (["train", "cyclegan", "--pool-size", "-1"], "--pool-size must be at least 0, not -1"),
    (["train", "cyclegan", "--epochs", "0", "--epochs-decay", "0"], "--epochs and --epochs-decay are both 0"),
    (["train", "gan", "--iterations", "0"], "--iterations must be at least 1, not 0"),
    (["train", "gan", "--sample", "0"], "--sample must be greater than 0, not 0"),
    (["predict", "no-such-run", "x.png", "--top-k", "0"], "argument --top-k: must be at least 1, not 0"),
    (["translate", "no-such-run", "in", "out", "--batch-size", "0"], "argument --batch-size: must be at least 1, not 0"),
])
def test_a_bad_value_is_one_sentence_before_any_work(argv, culprit, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("darkroom: error: ") and culprit in err, err
    assert "Traceback" not in err


def test_outputs_that_cannot_be_written_are_named(tmp_path, capsys):
    a_file, a_folder = tmp_path / "a-file", tmp_path / "a-folder"
    a_file.write_text("x")
    a_folder.mkdir()
    cases = [
        (["sample", "no-such-run", "--out", str(a_folder)], f"--out {a_folder} is a folder; give a file name"),
        (["sample", "no-such-run", "--out", str(a_file / "grid.png")], f"{a_file} is a file, not a folder"),
        (["eval", "classifier", "no-such-run", "--json", str(a_folder)], f"--json {a_folder} is a folder"),
        (["eval", "images", "--fake", "f", "--real", "r", "--json", str(a_file / "x.json")], f"{a_file} is a file"),
        (["translate", "no-such-run", "in", str(a_file)], f"output folder {a_file} cannot be a folder: {a_file} is a file"),
        (["demo", "--out", str(a_file / "demo")], f"--out {a_file / 'demo'} cannot be a folder: {a_file} is a file"),
    ]
    for argv, culprit in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and culprit in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "a-folder"] and a_file.read_text() == "x"
    assert list(a_folder.iterdir()) == []


@pytest.mark.parametrize("toml, culprit", [
    ('epochs = "five"', "epochs must be a number, not 'five'"),
    ("batch_size = true", "batch_size must be a whole number, not True"),
    ("batch_size = 2.5", "batch_size must be a whole number, not 2.5"),
    ("batch_size = -1", "batch_size must be at least 1, not -1"),
    ("bogus_key = 1", "unknown setting bogus_key"),
])
def test_a_bad_config_file_value_names_the_file_and_key(toml, culprit, tmp_path, capsys):
    path = tmp_path / "settings.toml"
    path.write_text(toml + "\n")
    assert cli.main(["train", "classifier", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"config file {path}: " in err and culprit in err, err
    assert not (tmp_path / "run").exists()


def test_wrong_kinds_of_folder_are_named(tmp_path, capsys):
    empty, gan_run = tmp_path / "empty", tmp_path / "gan-run"
    empty.mkdir()
    gan_run.mkdir()
    (gan_run / "config.json").write_text('{"task": "gan", "config": {"data": "fashion-mnist"}}')
    cases = [
        (["report", str(empty)], f"{empty} holds no run folders"),
        (["predict", "no-such-run", str(empty)], f"{empty} is a folder; give image files"),
        (["eval", "cyclegan", str(gan_run)], f"{gan_run} holds a gan run, not a CycleGAN run"),
    ]
    for argv, culprit in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and culprit in err, (argv, err)
    assert list(empty.iterdir()) == []  # no index.html written into a folder that holds no runs


@needs_fashion
@pytest.mark.parametrize("argv, culprit", [
    (["train", "cyclegan", "--data", "fashion-mnist:sneaker,sneaker"], "class 'sneaker' is named twice"),
    (["train", "classifier", "--data", "fashion-mnist:sneaker"], "has 1 class (sneaker): a classifier needs at least two"),
])
def test_class_lists_that_cannot_train(argv, culprit, tmp_path, capsys):
    assert cli.main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and culprit in err, err
    assert not (tmp_path / "run").exists()


def test_classifier_resume_into_a_run_of_another_kind_names_it(tmp_path, capsys):
    from darkroom import checkpoint

    run = tmp_path / "run"
    checkpoint.save({"task": "cyclegan", "config": {"data": "fashion-mnist:sneaker,ankle-boot"}},
                    run / "checkpoints" / "last.pt")
    assert cli.main(["train", "classifier", "--resume", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{run} holds a cyclegan run, not a classifier run" in err, err


def test_a_file_that_is_not_inception_weights_is_one_line(tmp_path):
    from darkroom.errors import UserError
    from darkroom.metrics.features import load_inception

    text = tmp_path / "weights.pth"
    text.write_text("not weights\n")
    with pytest.raises(UserError) as caught:
        load_inception(text)
    message = str(caught.value)
    assert "\n" not in message and f"cannot read Inception weights {text} (not a PyTorch weights file" in message
