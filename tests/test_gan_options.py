"""The GAN trainer's record-holder options, wired: hinge loss, spectral norm, TTUR (--lr-d), a generator EMA (with
standing BatchNorm statistics for sampling), DiffAugment and PacGAN packing. Each trains two steps through the CLI;
bad values and combinations are one sentence; the EMA follows its recurrence; the critic's inputs and the penalty's
weights do not depend on the rank count. Exact resume of the new state: test_gan_resume.py."""
import math

import pytest
import torch

from darkroom import cli
from darkroom.dist import DistInfo
from darkroom.gan import sample as gan_sample
from darkroom.gan import train as gan
from darkroom.optim import ema_decay, standing_batchnorm_stats_
from test_gan_train import TINY, image_folder, metrics, train


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small nets, one torch thread


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("images"), count=8)  # RGB and grey files: 3 channels


def checkpoint(run) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


def test_hinge_defaults_are_sngans_and_lr_d_defaults_to_lr():
    hinge = gan.resolve(gan.GanConfig(loss="hinge"))
    assert (hinge.optimizer, hinge.lr, hinge.lr_d, hinge.betas, hinge.n_critic, hinge.warmup) == (
        "adam", 2e-4, 2e-4, (0.0, 0.9), 5, False)
    assert (hinge.spec.critic_norm, hinge.spec.spectral_norm, hinge.spec.packing) == ("none", False, 1)
    ttur = gan.resolve(gan.GanConfig(loss="hinge", lr=1e-4, lr_d=4e-4, spectral_norm=True, packing=2))
    assert (ttur.lr, ttur.lr_d, ttur.spec.spectral_norm, ttur.spec.packing) == (1e-4, 4e-4, True, 2)
    assert gan.resolve(gan.GanConfig()).lr_d == 1e-4  # off by default: the critic trains at --lr


def test_hinge_with_spectral_norm_trains(tmp_path, images, capsys):
    code, run = train(tmp_path, "--data", str(images), "--image-size", "16", "--loss", "hinge", "--spectral-norm")
    assert code == 0, capsys.readouterr().err
    assert all(math.isfinite(line["critic_loss"]) and "gp" not in line for line in metrics(run))
    critic = checkpoint(run)["critic"]
    assert any(key.endswith("parametrizations.weight.0._u") for key in critic)  # every conv normalised
    assert not any("parametrizations" in key for key in checkpoint(run)["generator"])


def test_lr_d_sets_the_critics_learning_rate_only(tmp_path, images, capsys):
    code, run = train(tmp_path, "--data", str(images), "--image-size", "16", "--lr", "1e-4", "--lr-d", "5e-4",
                      "--lr-decay", "linear")
    assert code == 0, capsys.readouterr().err
    assert "adam lr 0.0001 (critic 0.0005)" in capsys.readouterr().out
    saved = checkpoint(run)  # iteration 1 of 2 (0-based) under linear decay: half of each
    assert [group["lr"] for group in saved["opt_g"]["param_groups"]] == pytest.approx([0.5e-4])
    assert [group["lr"] for group in saved["opt_d"]["param_groups"]] == pytest.approx([2.5e-4])


def test_ema_is_the_sampled_generator(tmp_path, images, capsys):
    code, run = train(tmp_path, "--data", str(images), "--image-size", "16", "--ema", "0.9", "--ema-rampup", "0.05")
    assert code == 0, capsys.readouterr().err
    saved = checkpoint(run)
    assert saved["generator_ema"].keys() == saved["generator"].keys()
    G, meta = gan_sample.load_generator(run)
    assert meta["weights"] == "ema"
    assert all(torch.equal(value, saved["generator_ema"][key]) for key, value in G.state_dict().items())
    assert gan_sample.load_generator(run, ema=False)[1]["weights"] == "live"
    # darkroom eval gan scores generate(): the average's samples, the live net's only when asked
    assert not torch.equal(gan_sample.generate(run, 4), gan_sample.generate(run, 4, ema=False))
    assert (run / "samples" / "iter_000002.png").is_file()


def test_ema_follows_its_recurrence_after_each_generator_step(tmp_path, images, monkeypatch, capsys):
    seen = []  # (iteration, EMA before the update, G after its step)
    real = gan.Loop.average_generator

    def recording(loop, iteration):
        seen.append((iteration, [p.detach().clone() for p in loop.ema.model.parameters()],
                     [p.detach().clone() for p in loop.G.parameters()]))
        real(loop, iteration)
    monkeypatch.setattr(gan.Loop, "average_generator", recording)
    code, run = train(tmp_path, "--data", str(images), "--image-size", "16", "--ema", "0.8", "--ema-rampup", "0.5",
                      "--iterations", "3", "--checkpoint-every", "3")
    assert code == 0, capsys.readouterr().err
    assert [iteration for iteration, _, _ in seen] == [0, 1, 2]
    assert not all(torch.equal(e, g) for e, g in zip(seen[0][1], seen[0][2]))  # G moved before its first update
    average = seen[0][1]
    for iteration, _, weights in seen:
        decay = ema_decay(0.8, iteration, 0.5)  # ramped: 0.25, 0.5, 0.63, below 0.8
        average = [e * decay + g * (1 - decay) for e, g in zip(average, weights)]
    saved, names = checkpoint(run), [name for name, _ in gan_sample.load_generator(run)[0].named_parameters()]
    for name, expected in zip(names, average):
        assert torch.allclose(saved["generator_ema"][name], expected, atol=1e-6), name
    assert all(torch.equal(saved["generator"][name], g) for name, g in zip(names, seen[-1][2]))


def test_an_ema_generators_batchnorm_statistics_are_its_own(tmp_path, images, capsys):
    code, run = train(tmp_path, "--data", str(images), "--image-size", "16", "--ema", "0.9")
    assert code == 0, capsys.readouterr().err
    saved = checkpoint(run)
    means = [key for key in saved["generator"] if key.endswith("running_mean")]
    assert means and all(not torch.equal(saved["generator"][key], saved["generator_ema"][key]) for key in means)
    # recomputed: the averaged weights run in train mode over the trainer's fixed noise (seed + 4), 16 batches
    G, _ = gan_sample.load_generator(run)
    noise = torch.Generator().manual_seed(0 + 4)
    standing_batchnorm_stats_(G, [torch.randn(4, 8, generator=noise) for _ in range(gan.STANDING_BATCHES)])
    assert all(torch.allclose(G.state_dict()[key], saved["generator_ema"][key], atol=1e-6) for key in means)


def test_diffaugment_trains_and_checkpoints_its_stream(tmp_path, images, capsys):
    code, run = train(tmp_path, "--data", str(images), "--image-size", "16", "--diffaugment",
                      "color,translation,cutout")
    assert code == 0, capsys.readouterr().err
    saved = checkpoint(run)
    assert saved["augment"].dtype == torch.uint8  # a generator state
    code, plain = train(tmp_path, "--data", str(images), "--image-size", "16", name="plain")
    assert [line["critic_loss"] for line in metrics(run)] != [line["critic_loss"] for line in metrics(plain)]
    assert checkpoint(plain).get("augment") is None


@pytest.mark.parametrize("loss", ["wgan-gp", "hinge"])
def test_packing_feeds_the_critic_m_samples_at_once(tmp_path, images, loss, capsys):
    code, run = train(tmp_path, "--data", str(images), "--image-size", "16", "--packing", "2", "--diffaugment",
                      "translation", "--loss", loss)
    assert code == 0, capsys.readouterr().err
    first = next(value for key, value in checkpoint(run)["critic"].items() if key.endswith("weight"))
    assert first.shape[1] == 2 * 3  # two RGB images per critic input
    assert all(math.isfinite(line.get("gp", 0.0)) for line in metrics(run))  # the penalty on packed inputs


def test_toy_packing_spectral_norm_and_ema(tmp_path, capsys):
    code, run = train(tmp_path, "--preset", "toy", "--iterations", "2", "--batch-size", "16", "--n-samples", "50",
                      "--packing", "4", "--spectral-norm", "--ema", "0.9")
    assert code == 0, capsys.readouterr().err
    critic = checkpoint(run)["critic"]
    assert critic["0.parametrizations.weight.original"].shape[1] == 4 * 2  # four 2-D points per input
    assert [line for line in metrics(run) if "toy_modes_captured" in line]
    assert gan_sample.load_generator(run)[1]["weights"] == "ema"
    assert gan_sample.sample_grid(run, 30, tmp_path / "toy.png").is_file()


@pytest.mark.parametrize("flags, sentence", [
    (["--loss", "dcgan", "--spectral-norm"], "--spectral-norm cannot be used with a BatchNorm critic (the default of "
                                             "--loss dcgan)"),
    (["--critic-norm", "batch", "--loss", "hinge", "--spectral-norm"], "a BatchNorm critic (--critic-norm batch)"),
    (["--ema", "1"], "--ema 1 must be below 1"),
    (["--ema-rampup", "0.05"], "--ema-rampup needs --ema"),
    (["--diffaugment", "color,zoom"], "--diffaugment color,zoom: 'zoom' is not one of color, translation, cutout"),
    (["--packing", "3"], "--batch-size 4 must be divisible by --packing 3"),
    (["--data", "toy:ring8", "--diffaugment", "color"], "--diffaugment transforms images"),
])
def test_bad_options_are_one_sentence(tmp_path, images, flags, sentence, capsys):
    code = cli.main(["train", "gan", *TINY, "--data", str(images), "--image-size", "16", *flags,
                     "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and sentence in err and len(err.strip().splitlines()) == 1, err


def loop_for(cfg: gan.GanConfig, rank: int, world_size: int) -> gan.Loop:
    """A Loop with only what critic_input and draw read: the config, the rank and the two device streams."""
    return gan.Loop(cfg=cfg, settings=None, info=DistInfo(rank, world_size, rank, torch.device("cpu")),
                    precision_name="fp32", G=None, D=None, g_net=None, d_net=None, opt_g=None, opt_d=None,
                    scaler_g=None, scaler_d=None, noise=torch.Generator().manual_seed(1), batches=None,
                    memory_format=torch.contiguous_format, augment=torch.Generator().manual_seed(5))


def test_augmented_packed_inputs_and_penalty_weights_do_not_depend_on_the_rank_count():
    cfg = gan.GanConfig(diffaugment="color,translation,cutout", packing=2, batch_size=8)
    x = torch.rand(8, 3, 8, 8) * 2 - 1
    one = loop_for(cfg, 0, 1)
    whole, alpha = one.critic_input(x), one.draw((8 // 2,), uniform=True)
    assert whole.shape == (4, 6, 8, 8) and not torch.equal(whole[:, :3], x[0::2])  # packed, and augmented
    ranks = [loop_for(cfg, rank, 2) for rank in (0, 1)]
    assert torch.equal(torch.cat([loop.critic_input(x[4 * r:4 * r + 4]) for r, loop in enumerate(ranks)]), whole)
    assert torch.equal(torch.cat([loop.draw((8 // 2,), uniform=True) for loop in ranks]), alpha)


@pytest.mark.parametrize("name", sorted(gan.PRESETS))
def test_every_preset_resolves(name):
    settings = gan.resolve(gan.GanConfig(**gan.PRESETS[name]))
    assert settings.lr > 0 and settings.lr_d > 0


def test_the_best_cpu_preset_keeps_the_cpu_presets_nets_and_trains_as_dcgan_with_an_ema():
    cpu, best = gan.PRESETS["fashion-mnist-cpu"], gan.PRESETS["fashion-mnist-dcgan-cpu"]
    kept = ("data", "image_size", "nz", "ngf", "ndf", "n_extra_layers", "batch_size")
    assert {key: best[key] for key in kept} == {key: cpu[key] for key in kept}
    settings = gan.resolve(gan.GanConfig(**best))
    assert (settings.n_critic, settings.lr, settings.lr_d, best["loss"]) == (1, 2e-4, 2e-4, "dcgan")
    assert best["ema"] > 0 and best["lr_decay"] == "none" and best["precision"] == "fast"
    assert best["max_minutes"] <= 10  # issue 25's budget
