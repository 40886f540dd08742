"""A bad flag or value: one line on stderr naming it, exit 2, no usage block and no traceback."""
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
