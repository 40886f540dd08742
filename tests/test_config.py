"""Config: flags, TOML and presets resolve in order; bad values are one-sentence user errors."""
import argparse

import pytest
import torch

from darkroom import config
from darkroom.errors import UserError
from darkroom.classifier.train import ClassifierConfig


def parse(argv):
    parser = argparse.ArgumentParser()
    config.add_arguments(parser, ClassifierConfig)
    return parser.parse_args(argv)


def test_flags_override_toml_override_defaults(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('lr = 0.1\nepochs = 3\nnesterov = false\n')
    cfg = config.from_sources(ClassifierConfig, parse(["--lr", "0.5", "--no-flip"]), str(toml))
    assert (cfg.lr, cfg.epochs, cfg.nesterov, cfg.flip) == (0.5, 3, False, False)
    assert cfg.batch_size == ClassifierConfig().batch_size


def test_round_trip_through_dict():
    cfg = ClassifierConfig(lr=0.3, arch="darknet")
    assert config.from_dict(ClassifierConfig, config.to_dict(cfg)) == cfg


def test_unknown_key_and_bad_choice_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="--learning-rat"):
        config.build(ClassifierConfig, {"learning_rat": 1})
    with pytest.raises(UserError, match="--arch must be one of"):
        config.build(ClassifierConfig, {"arch": "resnet1000"})
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = = 1")
    with pytest.raises(UserError, match="not valid TOML"):
        config.read_toml(ClassifierConfig, bad)


def test_differences_names_changed_fields():
    a, b = ClassifierConfig(), ClassifierConfig(lr=9.0, out="x")
    assert config.differences(a, b, ignore=("out",)) == ["lr"]


def test_a_config_built_in_code_is_checked_by_the_same_rules():
    """Library callers bypass the flags: __post_init__ applies the fields' types, choices and bounds to every config,
    including those made by dataclasses.replace (as presets are)."""
    from dataclasses import replace

    from darkroom.cyclegan.train import CycleGANConfig
    from darkroom.gan.train import GanConfig

    with pytest.raises(UserError, match="--lr must be greater than 0, not -1"):
        CycleGANConfig(lr=-1.0)
    with pytest.raises(UserError, match="--iterations must be at least 1, not 0"):
        replace(GanConfig(), iterations=0)
    with pytest.raises(UserError, match="--precision must be one of"):
        ClassifierConfig(precision="fp8")
    with pytest.raises(UserError, match="--batch-size must be a whole number, not 2.5"):
        ClassifierConfig(batch_size=2.5)
    cfg = CycleGANConfig(lr=1)  # an int where a float is wanted is taken as that float
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)


def test_fast_precision_is_bf16_where_the_device_multiplies_bf16_in_hardware(monkeypatch):
    from darkroom import precision

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.resolve("fast", cpu) == "bf16" and precision.resolve("fast", cuda) == "bf16"
    assert precision.resolve("auto", cpu) == "fp32"  # auto keeps fp32 on every CPU
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.resolve("fast", cpu) == "fp32" and precision.resolve("fast", cuda) == "bf16"
    assert precision.resolve("fp32", cuda) == "fp32" and precision.resolve("bf16", cpu) == "bf16"
