"""The README cannot drift: its two set-up commands exist in the Makefile, every `darkroom` recipe line parses
(flags, choices, presets) against the real command line, and the demo runs in quick mode from the README's text."""
import importlib
import re
import shlex
from pathlib import Path

import pytest

from conftest import REPO, needs_fashion, run_cli
from darkroom import cli, config

README = (REPO / "README.md").read_text()


def recipe_lines() -> list[str]:
    blocks = re.findall(r"```\n(.*?)```", README, flags=re.S)
    lines = []
    for block in blocks:
        for line in block.splitlines():
            command = line.split("#")[0].strip()
            if command.startswith("darkroom "):
                lines.append(command)
    return lines


def test_first_lines_are_the_two_make_commands():
    first_block = re.search(r"```\n(.*?)```", README, flags=re.S).group(1).split("\n")
    assert [line.split("#")[0].strip() for line in first_block if line.strip()] == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo: .*\n\t.*darkroom demo$", makefile, flags=re.M)
    assert re.search(r"^test: .*\n\t.*pytest$", makefile, flags=re.M)


@pytest.mark.parametrize("line", recipe_lines())
def test_recipe_line_parses(line):
    argv = shlex.split(line)[1:]
    args = cli.build_parser(argv).parse_args(argv)
    if args.command == "train":  # the preset exists and every flag builds a valid config
        module = importlib.import_module(cli.TRAINERS[args.task])
        values = dict(module.PRESETS[args.preset]) if args.preset else {}
        values.update({k: v for k, v in vars(args).items() if k in module.CONFIG.__dataclass_fields__})
        config.build(module.CONFIG, values)


def test_there_are_recipes_for_every_task():
    text = "\n".join(recipe_lines())
    for needle in ("train classifier", "train gan", "train cyclegan", "eval gan", "eval cyclegan", "eval images",
                   "translate", "sample", "report", "predict", "lr-find"):
        assert f"darkroom {needle}" in text, needle


@needs_fashion
@pytest.mark.slow
def test_demo_quick_from_the_readme(tmp_path):
    assert "darkroom demo --quick" in README
    result = run_cli(["demo", "--quick", "--out", str(tmp_path / "demo")], timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    index = (tmp_path / "demo" / "index.html").read_text()
    for needle in ("classifier test accuracy", "GAN classes covered", "CycleGAN sneaker -&gt; ankle boot accuracy",
                   "floor", "classifier/report.html", "gan/report.html", "cyclegan/report.html"):
        assert needle in index, needle
    gan_eval = (tmp_path / "demo" / "gan" / "eval.json").read_text()
    assert "modes_hit" in gan_eval and (tmp_path / "demo" / "gan" / "eval_class_histogram.png").exists()
