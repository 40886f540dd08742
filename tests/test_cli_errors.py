"""A bad flag or value: one line on stderr naming it, exit 2, no usage block and no traceback."""
import argparse

import pytest

from darkroom import cli


@pytest.mark.parametrize("argv, culprit", [
    (["train", "classifier", "--lr", "x"], "argument --lr: invalid float value: 'x'"),
    (["train", "gan", "--loss", "hinge"], "argument --loss: invalid choice: 'hinge'"),
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
