"""The shared run life-cycle (darkroom/lifecycle.py), the one atomic write and the reproduce line."""
import json
import os
import shlex

import pytest
import torch

from darkroom import atomic, checkpoint, cli, config, dist, lifecycle
from darkroom.classifier import ClassifierConfig
from darkroom.errors import UserError

CPU = dist.DistInfo(0, 1, 0, torch.device("cpu"))


def test_atomic_write_replaces_whole_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "status.json"
    atomic.write_json(target, {"a": 1})
    atomic.write_json(target, {"b": 2})
    assert json.loads(target.read_text()) == {"b": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]
    assert atomic.temp_path(target).name == f".status.json.tmp-{os.getpid()}"  # the pid a dead writer is known by


def test_reproduce_line_rebuilds_the_config_it_was_written_from():
    cfg = config.layered(ClassifierConfig, {"p": {"epochs": 2.5, "tta": "none"}}, "p", None,
                         {"label_smoothing": 0.1, "flip": False, "out": "runs/a b", "resume": True})
    line = config.command_line("classifier", cfg)
    assert line.startswith("darkroom train classifier ") and line.endswith("--out 'runs/a b'")
    words = shlex.split(line)[1:]
    parser = cli.build_parser(words)
    args = parser.parse_args(words)
    rebuilt = config.layered(ClassifierConfig, {}, None, None, cli.given_settings(ClassifierConfig, args))
    assert config.differences(rebuilt, cfg, ignore=("resume",)) == []


def plant_checkpoint(run_dir, cfg, **fields):
    checkpoint.save({"task": "classifier", "config": config.to_dict(cfg), "state": {"log_lines": 0, "step": 3},
                     "ranks": [{"rng": checkpoint.rng_state()}], **fields}, run_dir / "checkpoints" / "last.pt")


def test_open_run_refuses_a_run_written_on_another_device_type(tmp_path):
    cfg = ClassifierConfig(out=str(tmp_path), resume=True)
    plant_checkpoint(tmp_path, cfg, device_type="cuda")
    with pytest.raises(UserError, match="trained on cuda and cannot go on on cpu"):
        lifecycle.open_run("classifier", cfg, CPU)


def test_open_run_refuses_changed_settings_other_tasks_and_a_missing_resume(tmp_path):
    cfg = ClassifierConfig(out=str(tmp_path), resume=True)
    plant_checkpoint(tmp_path, cfg, device_type="cpu")
    assert lifecycle.open_run("classifier", cfg, CPU).saved["state"]["step"] == 3
    with pytest.raises(UserError, match="--lr differs from the run being resumed"):
        lifecycle.open_run("classifier", ClassifierConfig(out=str(tmp_path), resume=True, lr=0.1), CPU)
    with pytest.raises(UserError, match="holds a classifier run, not a gan run"):
        lifecycle.open_run("gan", cfg, CPU)
    with pytest.raises(UserError, match="already holds a run; pass --resume"):
        lifecycle.open_run("classifier", ClassifierConfig(out=str(tmp_path)), CPU)


def test_save_then_restore_gives_back_weights_generators_and_rng(tmp_path):
    cfg = ClassifierConfig(out=str(tmp_path), resume=True)
    run = lifecycle.open_run("classifier", cfg, CPU)
    lifecycle.start(run, "unused")
    net, generator = torch.nn.Linear(3, 2), torch.Generator().manual_seed(5)
    generator.manual_seed(7)
    lifecycle.save(run, {"step": 4}, {"model": net, "data_generator": generator})
    expected_draw = torch.rand(3)  # the global RNG right after the save
    run.folder.close()
    again = lifecycle.open_run("classifier", cfg, CPU)
    other, other_generator = torch.nn.Linear(3, 2), torch.Generator().manual_seed(0)
    state = lifecycle.restore(again, {"model": other, "data_generator": other_generator})
    assert state["step"] == 4 and again.saved["device_type"] == "cpu"
    assert torch.equal(other.weight, net.weight)
    assert torch.equal(other_generator.get_state(), generator.get_state())
    assert torch.equal(torch.rand(3), expected_draw)
