"""airbench94_muon's recipe (KellerJordan/cifar10-airbench airbench94_muon.py) as the preset airbench94_muon: its net
and parameter groups, each technique a field that is off by default (every other preset resolves as it did before the
fields came: tests/data/classifier_presets_before_airbench_muon.json, update it with a preset you change on purpose),
the stem bias's phase, frozen BatchNorm weights, the TTA weights, and a short CPU run that resumes bit for bit."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import REPO, assert_same, needs_fashion, run_cli
from darkroom import checkpoint, cli, classifier, dist
from darkroom.classifier import recipe
from darkroom.classifier.predict import load_run, predict_logits
from darkroom.classifier.train import lr_momentum_at, set_schedule, train_step
from darkroom.config import layered, to_dict
from darkroom.nets import CLASSIFIERS
from darkroom.nets.classifier import Scale, whiten_init_
from darkroom.optim import Muon, param_groups
from darkroom.precision import make_scaler
from darkroom.schedule import warmup_linear_decay
from test_host_syncs import STEPS, count_steps, recorder, report  # noqa: F401 (recorder: a fixture)

CPU = torch.device("cpu")
INFO = dist.DistInfo(0, 1, 0, CPU)
BEFORE = Path(__file__).parent / "data" / "classifier_presets_before_airbench_muon.json"
# the new fields and their off values: with these, a config trains as it did before they came
OFF = {"muon_lr": 0.24, "muon_momentum": 0.6, "muon_ns_steps": 3, "muon_normalize": True, "head_lr": 0.0,
       "step_decay": 0.0, "loss_reduction": "mean", "logit_scale": 0.0, "freeze_norm_weight": False, "norm_eps": None,
       "freeze_stem": False, "stem_bias_epochs": 0.0, "compile_mode": "default"}


def preset(name: str = "airbench94_muon", **overrides) -> classifier.ClassifierConfig:
    return layered(classifier.CONFIG, classifier.PRESETS, name, overrides={"device": "cpu", **overrides})


# ---------------------------------------------------------------------------------------------- the net and groups
def test_preset_builds_airbench94_muons_net():
    cfg = preset()
    torch.manual_seed(0)
    model = classifier.build_model(cfg, 3, 10)
    stem = model[0]
    assert (stem.in_channels, stem.out_channels, stem.kernel_size) == (3, 24, (2, 2))  # 2 * C * k^2
    assert not stem.weight.requires_grad and stem.bias.requires_grad
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m is not stem]
    assert [c.out_channels for c in convs] == [64, 64, 256, 256, 256, 256]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 6
    for norm in norms:  # airbench's BatchNorm(momentum=0.6) is PyTorch's momentum 1 - 0.6
        assert norm.eps == 1e-12 and norm.momentum == pytest.approx(0.4)
        assert not norm.weight.requires_grad and torch.equal(norm.weight, torch.ones_like(norm.weight))
    head = recipe.head_of(model)
    assert head.in_features == 256 and head.bias is None
    assert head.weight.std().item() == pytest.approx(1.0, abs=1e-5)
    assert isinstance(model[-1], Scale) and model[-1].factor == 1 / 256
    assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_preset_sends_filters_to_muon_and_the_rest_to_sgd_at_airbench_lrs():
    cfg = preset()
    model = classifier.build_model(cfg, 3, 10)
    optimizer = classifier.build_optimizer(cfg, model)
    assert isinstance(optimizer, recipe.MuonWithSGD) and isinstance(optimizer.muon, Muon)
    total, stem_steps = 200, recipe.stem_bias_steps(cfg, 25)  # CIFAR-10 at batch 2000: 25 steps an epoch
    assert stem_steps == 75
    set_schedule(cfg, optimizer, 0, total, stem_steps)
    filters = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d) and m is not model[0]]
    (muon_group,) = optimizer.muon.param_groups
    assert [id(p) for p in muon_group["params"]] == [id(p) for p in filters]
    assert (muon_group["lr"], muon_group["momentum"], muon_group["nesterov"], muon_group["ns_steps"],
            muon_group["normalize_weights"]) == (pytest.approx(0.24), 0.6, True, 3, True)
    settings = {}
    for group in optimizer.sgd.param_groups:
        assert group["momentum"] == 0.85 and group["nesterov"]
        for p in group["params"]:
            settings[id(p)] = (group["lr"], group["weight_decay"], bool(group.get("stem_bias")))
    wd = 2e-6 * 2000  # airbench: weight_decay = wd / the group's lr, coupled (torch SGD)
    norm_biases = [m.bias for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bias in norm_biases:
        assert settings[id(bias)] == (pytest.approx(0.053), pytest.approx(wd / 0.053), False)
    assert settings[id(model[0].bias)] == (pytest.approx(0.053), pytest.approx(wd / 0.053), True)
    assert settings[id(recipe.head_of(model).weight)] == (pytest.approx(0.67), pytest.approx(wd / 0.67), False)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert len(settings) + len(filters) == len(trainable) and set(settings) | {id(p) for p in filters} == trainable

    set_schedule(cfg, optimizer, 30, total, stem_steps)  # linear decay from step 0; the stem bias's own phase
    assert settings_of(optimizer, norm_biases[0]) == pytest.approx(0.053 * (1 - 30 / 200))
    assert settings_of(optimizer, model[0].bias) == pytest.approx(0.053 * (1 - 30 / 75))
    assert muon_group["lr"] == pytest.approx(0.24 * (1 - 30 / 200)) and muon_group["momentum"] == 0.6
    set_schedule(cfg, optimizer, 100, total, stem_steps)
    assert settings_of(optimizer, recipe.head_of(model).weight) == pytest.approx(0.67 * 0.5)
    assert settings_of(optimizer, model[0].bias) == 0.0


def settings_of(optimizer, parameter) -> float:
    return next(g["lr"] for g in optimizer.param_groups if any(p is parameter for p in g["params"]))


def test_linear_schedule_without_warm_up_decays_from_the_first_step_as_airbench():
    cfg = preset()
    assert [lr_momentum_at(cfg, s, 200) for s in (0, 1, 199)] == [
        (0.053, 0.85), (pytest.approx(0.053 * 199 / 200), 0.85), (pytest.approx(0.053 / 200), 0.85)]
    warm = preset("fastnet-gpu")  # a warm-up keeps schedule.warmup_linear_decay's shape
    assert lr_momentum_at(warm, 7, 100)[0] == warmup_linear_decay(7, 100, warm.lr, warm.warmup)


def test_summed_loss_is_the_global_batch_sum_under_ddp_and_logged_per_image():
    logits, y = torch.randn(6, 10), torch.arange(6)
    mean_cfg, sum_cfg = preset("fastnet-gpu"), preset()
    loss, logged = recipe.loss_of(logits, y, mean_cfg, 1)
    assert torch.equal(loss, F.cross_entropy(logits, y, label_smoothing=0.2)) and torch.equal(logged, loss)
    loss, logged = recipe.loss_of(logits, y, sum_cfg, 2)  # 2 ranks: DDP halves the summed gradients back
    summed = F.cross_entropy(logits, y, label_smoothing=0.2, reduction="sum")
    assert torch.allclose(loss, 2 * summed) and torch.allclose(logged, summed / 6)


# ---------------------------------------------------------------------------------------------- off by default
def test_new_fields_are_off_by_default_and_every_other_preset_resolves_as_before():
    before = json.loads(BEFORE.read_text())
    defaults = to_dict(classifier.CONFIG())
    assert {key: defaults[key] for key in OFF} == OFF
    assert defaults["optimizer"] == "sgd" and defaults["tta"] == "flip"  # the choices muon and weighted are opt-in
    for name, old in before.items():
        now = defaults if name == "(defaults)" else to_dict(preset(name, device=old["device"]))
        assert set(now) - set(old) == set(OFF), name
        assert {key: now[key] for key in old} == old, name
        assert {key: now[key] for key in OFF} == OFF, name
    assert set(classifier.PRESETS) - set(before) == {"airbench94_muon", "fashion-mnist-fast", "fashion-mnist-record"}


@pytest.mark.parametrize("name", ["fashion-mnist-cpunet", "fashion-mnist-cpu", "darknet-small", "wrn_22-dawnbench",
                                  "wrn_22-dawnbench-8gpu", "fastnet-gpu", "darknet-lesson"])
def test_with_the_fields_off_the_net_and_optimizer_groups_are_as_before(name):
    cfg = preset(name)
    torch.manual_seed(0)
    old = CLASSIFIERS[cfg.arch](1, 10)
    torch.manual_seed(0)
    new = classifier.build_model(cfg, 1, 10)
    assert_same(old.state_dict(), new.state_dict(), name)
    assert all(p.requires_grad for p in new.parameters())
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(old.eval()(x), new.eval()(x))
    optimizer = classifier.build_optimizer(cfg, new)
    assert type(optimizer) is torch.optim.SGD
    expected = param_groups(new, cfg.weight_decay, cfg.exempt_norm_bias, cfg.bias_lr_scale)
    got = optimizer.param_groups
    assert [[id(p) for p in g["params"]] for g in got] == [[id(p) for p in g["params"]] for g in expected]
    assert [(g["weight_decay"], g["lr_scale"]) for g in got] == [(g["weight_decay"], g["lr_scale"]) for g in expected]


@pytest.mark.parametrize("args,culprit", [
    (["--muon-momentum", "1"], "--muon-momentum"),
    (["--muon-ns-steps", "0"], "--muon-ns-steps"),
    (["--muon-lr", "0"], "--muon-lr"),
    (["--head-lr", "-1"], "--head-lr"),
    (["--step-decay", "0.004"], "--step-decay"),  # with the default --weight-decay 5e-4
    (["--loss-reduction", "avg"], "--loss-reduction"),
    (["--logit-scale", "-0.5"], "--logit-scale"),
    (["--norm-eps", "0"], "--norm-eps"),
    (["--stem-bias-epochs", "-1"], "--stem-bias-epochs"),
    (["--tta", "six"], "--tta"),
    (["--compile-mode", "fastest"], "--compile-mode"),
    (["--optimizer", "lion"], "--optimizer"),
])
def test_bad_values_are_one_sentence_naming_the_flag(args, culprit, capsys):
    assert cli.main(["train", "classifier", *args]) == 2
    error = capsys.readouterr().err.strip()
    assert culprit in error and len(error.splitlines()) == 1


@needs_fashion
@pytest.mark.parametrize("flag", ["--freeze-stem", "--stem-bias-epochs"])
def test_stem_techniques_on_a_net_without_a_stem_are_refused(flag, tmp_path, capsys):
    value = ["1"] if flag == "--stem-bias-epochs" else []
    code = cli.main(["train", "classifier", "--data", "fashion-mnist", "--sample", "0.002", "--arch", "darknet_small",
                     flag, *value, "--quiet", "--out", str(tmp_path / "run")])
    error = capsys.readouterr().err.strip()
    assert code == 2 and flag in error and "whitening stem" in error and len(error.splitlines()) == 1


# ---------------------------------------------------------------------------------------------- the training step
def steps_of(cfg, steps: int, stem_steps: int):
    """`steps` train_steps of cfg's cpunet on one fixed random batch; the model and its stem bias after each."""
    torch.manual_seed(0)
    model = classifier.build_model(cfg, 1, 10)
    whiten_init_(model[0], torch.randn(64, 1, 28, 28))
    optimizer = classifier.build_optimizer(cfg, model)
    x, y = torch.randn(16, 1, 28, 28), torch.arange(16) % 10
    first = {name: p.detach().clone() for name, p in model.named_parameters()}
    biases = []
    for step in range(steps):
        set_schedule(cfg, optimizer, step, steps, stem_steps)
        train_step(model, x, y, cfg, INFO, "fp32", optimizer, make_scaler("fp32", CPU))
        biases.append(model[0].bias.detach().clone())
    return model, first, biases


def test_stem_bias_trains_its_steps_then_is_frozen_and_bn_weights_stay_at_one():
    cfg = preset(arch="cpunet", compile=False)
    model, first, biases = steps_of(cfg, 5, stem_steps=2)
    assert not torch.equal(biases[0], first["0.bias"]) and not torch.equal(biases[1], biases[0])
    assert all(torch.equal(later, biases[1]) for later in biases[2:])  # LR 0 from step 2: exactly unchanged
    assert torch.equal(model[0].weight, first["0.weight"])  # the frozen stem
    for name, p in model.named_parameters():
        if name.endswith("weight") and p.dim() == 1:  # BatchNorm weights
            assert torch.equal(p, torch.ones_like(p)), name
        elif p.requires_grad:
            assert not torch.equal(p, first[name]), f"{name} did not train"
    _, _, free = steps_of(preset(arch="cpunet", compile=False, stem_bias_epochs=0.0), 5, stem_steps=0)
    assert not torch.equal(free[4], free[3])  # without the phase the bias keeps training


def test_fp16_grad_scaler_unscales_and_steps_muon_and_sgd_together():
    cfg = preset(arch="cpunet", compile=False)
    torch.manual_seed(0)
    model = classifier.build_model(cfg, 1, 10)
    optimizer, scaler = classifier.build_optimizer(cfg, model), make_scaler("fp16", CPU)
    filters = [p for p in optimizer.muon.param_groups[0]["params"]]
    before = [p.detach().clone() for p in filters]
    x, y = torch.randn(16, 1, 28, 28), torch.arange(16) % 10
    taken = []
    for step in range(4):
        set_schedule(cfg, optimizer, step, 4, 2)
        loss, stepped = train_step(model, x, y, cfg, INFO, "fp16", optimizer, scaler)
        taken.append(stepped)
        assert math.isfinite(float(loss))
    assert sum(taken) >= 3 and all(not torch.equal(a, b) for a, b in zip(before, filters))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_tta_weighted_is_airbenchs_tta_level_2():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 5)).eval()  # neither flip- nor shift-invariant
    x = torch.randn(3, 1, 8, 8)

    def mirror(inputs):  # airbench94_muon.py infer_mirror / infer_mirror_translate, written out
        return 0.5 * net(inputs) + 0.5 * net(inputs.flip(-1))
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = torch.stack([mirror(padded[:, :, 0:8, 0:8]), mirror(padded[:, :, 2:10, 2:10])]).mean(0)
    expected = 0.5 * mirror(x) + 0.5 * shifted
    with torch.no_grad():
        got = predict_logits(net, x, CPU, "fp32", "weighted")
        multi = predict_logits(net, x, CPU, "fp32", "multi")
        assert torch.allclose(got, expected, atol=1e-6)
        assert not torch.allclose(multi, expected, atol=1e-3)  # equal weights are another average


# ---------------------------------------------------------------------------------------------- runs
RUN = ["train", "classifier", "--preset", "airbench94_muon", "--data", "fashion-mnist", "--arch", "cpunet",
       "--no-compile", "--sample", "0.003", "--test-sample", "0.02", "--batch-size", "60", "--epochs", "2",
       "--stem-bias-epochs", "0.5", "--checkpoint-every", "1", "--deterministic", "--quiet"]  # 3 steps an epoch


@needs_fashion
@pytest.mark.slow
def test_preset_trains_on_cpu_and_resumes_bit_for_bit(tmp_path):
    reference = tmp_path / "reference"
    result = run_cli([*RUN, "--out", str(reference)])
    assert result.returncode == 0, result.stderr
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    killed = tmp_path / "killed"
    died = subprocess.run([sys.executable, str(REPO / "tests" / "scripts" / "classifier_exit_at.py"), "4", *RUN,
                           "--out", str(killed)], env=env, capture_output=True, text=True, timeout=600)
    assert died.returncode == 3, died.stderr
    assert checkpoint.load(killed / "checkpoints" / "last.pt")["state"]["step"] == 4  # mid-epoch 2, Muon state held
    resumed = run_cli([*RUN, "--out", str(killed), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout
    a, b = (checkpoint.load(folder / "checkpoints" / "last.pt") for folder in (reference, killed))
    assert a["state"]["step"] == 6 and a["config"]["optimizer"] == "muon"
    for part in ("model", "optimizer", "data_generator"):
        assert_same(a[part], b[part], part)
    assert a["optimizer"]["muon"]["state"]  # Muon's momentum buffers are in the checkpoint
    lines = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    assert all(math.isfinite(line["train_loss"]) for line in lines) and lines[-1]["test_acc"] > 0.2
    model, config, _ = load_run(str(reference), CPU)  # built as it trained: logit scale and eps from the config
    assert model[-1].factor == 1 / 256 and config["tta"] == "weighted"
    assert all(m.eps == 1e-12 for m in model.modules() if isinstance(m, nn.BatchNorm2d))


@needs_fashion
def test_preset_steps_make_no_host_sync(tmp_path, recorder, monkeypatch):  # noqa: F811 (the imported fixture)
    from darkroom.classifier import train as classifier_train

    count_steps(monkeypatch, recorder, classifier_train, "train_step")
    code = cli.main(["train", "classifier", "--preset", "airbench94_muon", "--arch", "cpunet", "--no-compile",
                     "--data", "fashion-mnist", "--sample", str((STEPS * 40 + 20) / 60000), "--test-sample", "0.005",
                     "--batch-size", "40", "--epochs", "1", "--stem-bias-epochs", "0.5", "--tta", "none", "--quiet",
                     "--out", str(tmp_path / "run")])
    assert code == 0
    assert recorder.step == STEPS
    assert not recorder.per_step(STEPS), report("classifier", recorder, STEPS)
