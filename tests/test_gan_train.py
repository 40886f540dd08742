"""darkroom train gan through the CLI: every loss, image folders (mixed modes), CSV lists, LSUN lmdb, streaming,
bad input (empty, too small, corrupt: skip vs fail), non-finite losses, toy data; then sampling from a run.
Tiny nets, a few steps each."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import have_fashion_mnist, needs_fashion
from darkroom import cli
from darkroom.data.lsun import write_lsun_lmdb
from darkroom.errors import UserError
from darkroom.gan import train as gan
from darkroom.gan import data as gan_data
from darkroom.gan import sample as gan_sample

TINY = ["--nz", "8", "--ngf", "4", "--ndf", "4", "--batch-size", "4", "--n-samples", "4", "--iterations", "2",
        "--log-every", "1", "--sample-every", "2", "--checkpoint-every", "2", "--warmup-critic", "off", "--quiet",
        "--n-critic", "2"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small nets, one torch thread


def train(tmp_path: Path, *args: str, name: str = "run") -> tuple[int, Path]:
    out = tmp_path / name
    code = cli.main(["train", "gan", *TINY, *args, "--out", str(out)])
    return code, out


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def picture(seed: int, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(array)
    return image.convert(mode) if mode != "RGB" else image


def image_folder(root: Path, count: int = 6, size: tuple[int, int] = (24, 20)) -> Path:
    modes = ["RGB", "L", "RGBA", "P", "CMYK", "LA"]
    for i in range(count):
        folder = root / ("a" if i % 2 else "b/nested")  # recursive, no class layout needed
        folder.mkdir(parents=True, exist_ok=True)
        picture(i, size, modes[i % len(modes)]).save(folder / f"{i}.{'jpg' if modes[i % len(modes)] == 'CMYK' else 'png'}")
    return root


@needs_fashion
@pytest.mark.parametrize("loss", ["wgan", "wgan-gp", "dcgan"])
def test_each_loss_trains_two_steps(tmp_path, loss, capsys):
    code, run = train(tmp_path, "--data", "fashion-mnist", "--sample", "0.002", "--image-size", "16", "--loss", loss)
    assert code == 0, capsys.readouterr().err
    lines = metrics(run)
    assert [line["iteration"] for line in lines] == [1, 2]
    assert lines[-1]["critic_iterations"] == 4  # --n-critic 2
    assert all(math.isfinite(line["critic_loss"]) and math.isfinite(line["generator_loss"]) for line in lines)
    assert ("gp" in lines[-1]) == (loss == "wgan-gp")
    assert (run / "samples" / "iter_000002.png").is_file()
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert saved["state"]["iteration"] == 2 and saved["meta"]["size"] == 16 and saved["meta"]["channels"] == 1
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    assert f"run folder {run}" in capsys.readouterr().out


def test_loss_defaults_follow_the_papers():
    wgan = gan.resolve(gan.GanConfig(loss="wgan"))
    assert (wgan.optimizer, wgan.lr, wgan.n_critic, wgan.warmup, wgan.spec.critic_norm) == ("rmsprop", 5e-5, 5, True, "batch")
    gp = gan.resolve(gan.GanConfig(loss="wgan-gp"))
    assert (gp.optimizer, gp.lr, gp.betas, gp.n_critic, gp.warmup, gp.spec.critic_norm) == ("adam", 1e-4, (0.0, 0.9), 5, False, "layer")
    dc = gan.resolve(gan.GanConfig(loss="dcgan"))
    assert (dc.optimizer, dc.lr, dc.betas, dc.n_critic) == ("adam", 2e-4, (0.5, 0.999), 1)
    lesson = gan.resolve(gan.GanConfig(**gan.PRESETS["lesson"]))
    assert (lesson.optimizer, lesson.lr, lesson.warmup, lesson.spec.order, lesson.spec.n_extra_layers) == (
        "rmsprop", 1e-4, True, "conv-act-norm", 1)


def test_gradient_penalty_refuses_batchnorm_critic(tmp_path, capsys):
    code, _ = train(tmp_path, "--data", "fashion-mnist", "--loss", "wgan-gp", "--critic-norm", "batch")
    assert code == 2 and "--critic-norm batch cannot be used with --loss wgan-gp" in capsys.readouterr().err


def test_image_folder_with_mixed_modes(tmp_path, capsys):
    data = image_folder(tmp_path / "images")
    code, run = train(tmp_path, "--data", str(data), "--image-size", "16", "--load-size", "18")
    assert code == 0, capsys.readouterr().err
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert saved["meta"]["channels"] == 3 and saved["meta"]["images"] == 6


def test_csv_list_with_sample(tmp_path, capsys):
    data = image_folder(tmp_path / "images", count=10)
    files = sorted(path.relative_to(data) for path in data.rglob("*.*"))
    (data / "files.csv").write_text("fn\n" + "".join(f"{path}\n" for path in files))
    code, run = train(tmp_path, "--data", str(data / "files.csv"), "--image-size", "16", "--sample", "0.5")
    assert code == 0, capsys.readouterr().err
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["meta"]["images"] == 5


def test_lsun_lmdb_streams(tmp_path, capsys):
    lmdb_dir = write_lsun_lmdb(tmp_path / "bedroom_train_lmdb", [picture(i, (30, 20)) for i in range(8)])
    code, run = train(tmp_path, "--data", str(lmdb_dir), "--image-size", "16", "--workers", "0")
    assert code == 0, capsys.readouterr().err
    assert "stream" in capsys.readouterr().out
    assert len(metrics(run)) == 2


def test_streamed_folder_skip_counts_and_fail_names_the_file(tmp_path, capsys):
    data = image_folder(tmp_path / "images", count=7)
    (data / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    stream = ["--data", str(data), "--image-size", "16", "--stream", "always", "--workers", "1"]
    # 8 files, batch 4: every epoch draws each file once; 3 iterations x 2 critic steps = 3 epochs
    code, run = train(tmp_path, *stream, "--on-bad-image", "skip", "--iterations", "3")
    assert code == 0, capsys.readouterr().err
    assert metrics(run)[-1]["bad_images"] >= 1
    code, _ = train(tmp_path, *stream, name="fail")
    err = capsys.readouterr().err
    assert code == 2 and "broken.png is not a readable image" in err and len(err.strip().splitlines()) == 1


def test_empty_folder_is_one_sentence(tmp_path, capsys):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    code, _ = train(tmp_path, "--data", str(tmp_path / "empty"))
    err = capsys.readouterr().err
    assert code == 2 and "holds no images" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_images_smaller_than_the_training_size(tmp_path, capsys):
    data = image_folder(tmp_path / "images", size=(12, 12))
    code, _ = train(tmp_path, "--data", str(data), "--image-size", "16")
    err = capsys.readouterr().err
    assert code == 2 and "is 12x12, smaller than the 16-pixel load size" in err and len(err.strip().splitlines()) == 1
    code, _ = train(tmp_path, "--data", str(data), "--image-size", "16", "--allow-upscale", name="upscaled")
    assert code == 0, capsys.readouterr().err


def test_corrupt_file_fail_vs_skip(tmp_path, capsys):
    data = image_folder(tmp_path / "images", count=6)
    (data / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code, _ = train(tmp_path, "--data", str(data), "--image-size", "16", name="fail")
    err = capsys.readouterr().err
    assert code == 2 and "broken.jpg is not a readable image" in err and len(err.strip().splitlines()) == 1
    code, run = train(tmp_path, "--data", str(data), "--image-size", "16", "--on-bad-image", "skip", name="skip")
    assert code == 0, capsys.readouterr().err
    assert metrics(run)[-1]["bad_images"] == 1


@needs_fashion
def test_nan_stops_with_last_good_checkpoint_intact(tmp_path, capsys, monkeypatch):
    calls = {"n": 0}
    real_objective = gan.critic_objective

    def poisoned(*args, **kwargs):  # finite for two generator iterations (2 critic steps each), then NaN
        objective, stats = real_objective(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] > 4:
            objective, stats["critic_loss"] = objective * float("nan"), stats["critic_loss"] * float("nan")
        return objective, stats

    monkeypatch.setattr(gan, "critic_objective", poisoned)
    code, run = train(tmp_path, "--data", "fashion-mnist", "--sample", "0.002", "--image-size", "16",
                      "--iterations", "4", "--checkpoint-every", "1")
    err = capsys.readouterr().err
    assert code == 2 and "non-finite between generator iterations 2 and 3" in err and "is intact" in err
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert saved["state"]["iteration"] == 2
    assert json.loads((run / "status.json").read_text())["status"] == "failed"
    assert all(torch.isfinite(tensor).all() for tensor in saved["generator"].values() if tensor.is_floating_point())

    calls["n"] = 0
    code, run = train(tmp_path, "--data", "fashion-mnist", "--sample", "0.002", "--image-size", "16",
                      "--iterations", "4", "--on-nan", "skip", name="skip")
    assert code == 0, capsys.readouterr().err
    assert metrics(run)[-1]["skipped_steps"] == 4  # iterations 3 and 4: two critic steps each


def test_resume_of_a_finished_run_changes_nothing_unless_iterations_grow(tmp_path, capsys):
    data = image_folder(tmp_path / "images")
    args = ("--data", str(data), "--image-size", "16")
    code, run = train(tmp_path, *args)
    assert code == 0, capsys.readouterr().err
    kept = lambda: {name: (run / name).read_bytes() for name in ("status.json", "metrics.jsonl", "checkpoints/last.pt")}  # noqa: E731
    before, finished = kept(), json.loads((run / "status.json").read_text())
    capsys.readouterr()
    code, _ = train(tmp_path, *args, "--resume")
    out = capsys.readouterr().out
    assert code == 0 and f"{run} already finished at generator iteration 2: nothing to do" in out
    assert kept() == before and math.isfinite(finished["critic_loss"])

    code, _ = train(tmp_path, *args, "--resume", "--iterations", "3")  # the GAN may train on
    assert code == 0 and f"resumed {run} at generator iteration 2 of 3" in capsys.readouterr().out
    assert [line["iteration"] for line in metrics(run)] == [1, 2, 3]
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "finished" and status["resumes"] == 1 and math.isfinite(status["critic_loss"])

    (run / "status.json").write_text(json.dumps({**status, "status": "running"}))  # killed after its last checkpoint
    code, _ = train(tmp_path, *args, "--resume", "--iterations", "3")
    assert code == 0 and [line["iteration"] for line in metrics(run)] == [1, 2, 3]
    status = json.loads((run / "status.json").read_text())  # the last line's numbers, from the checkpoint
    assert status["status"] == "finished" and math.isfinite(status["critic_loss"])


def test_toy_ring_trains_and_logs_mode_counts(tmp_path, capsys):
    code, run = train(tmp_path, "--preset", "toy", "--iterations", "2", "--batch-size", "16", "--n-samples", "50")
    assert code == 0, capsys.readouterr().err
    counts = [line for line in metrics(run) if "toy_modes_captured" in line]
    assert counts and counts[-1]["toy_n_modes"] == 8
    assert (run / "samples" / "iter_000002.png").is_file()
    assert gan_sample.sample_grid(run, 30, tmp_path / "toy.png").is_file()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    if not have_fashion_mnist():
        pytest.skip("Fashion-MNIST not installed")
    out = tmp_path_factory.mktemp("sample") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    assert cli.main(["train", "gan", *TINY, "--data", "fashion-mnist", "--sample", "0.002", "--image-size", "16",
                     "--out", str(out)]) == 0
    torch.set_num_threads(threads)
    return out


def test_truncated_noise():
    z = gan_sample.truncated_noise(500, 16, 0.5, torch.Generator().manual_seed(0))
    assert z.shape == (500, 16) and z.abs().max() <= 0.5 and z.abs().max() > 0.45
    plain = gan_sample.truncated_noise(4, 3, None, torch.Generator().manual_seed(1))
    assert torch.equal(plain, torch.randn(4, 3, generator=torch.Generator().manual_seed(1)))


def test_slerp_keeps_endpoints_and_radius():
    z0, z1 = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 3.0, 0.0])
    path = gan_sample.slerp(z0, z1, torch.linspace(0, 1, 5))
    assert torch.allclose(path[0], z0) and torch.allclose(path[-1], z1, atol=1e-6)
    assert torch.allclose(path.norm(dim=1), torch.full((5,), 3.0))  # lerp's midpoint would have norm 2.12


def test_sample_grid_and_interpolation_strip(tiny_run, tmp_path):
    G, meta = gan_sample.load_generator(tiny_run, "cpu")
    assert not G.training and meta["size"] == 16 and meta["channels"] == 1
    first = gan_sample.sample_grid(tiny_run, 9, tmp_path / "a.png", seed=5, truncate=1.0)
    second = gan_sample.sample_grid(tiny_run, 9, tmp_path / "b.png", seed=5, truncate=1.0)
    assert first.read_bytes() == second.read_bytes()  # seeded
    with Image.open(first) as grid:
        assert grid.size == ((3 * 18 + 2) * 4, (3 * 18 + 2) * 4)  # 3x3 of 16 px + 2 px padding, scaled 64 // 16
    strip = gan_sample.interpolation_strip(tiny_run, tmp_path / "strip.png", steps=6, seed=1, device="cpu")
    with Image.open(strip) as image:
        assert image.size == ((6 * 18 + 2) * 4, (18 + 2) * 4)
    images = gan_sample.generate(tiny_run, 5, 2, "cpu")  # what darkroom eval gan calls
    assert images.shape == (5, 1, 16, 16) and images.dtype == torch.uint8
    assert torch.equal(images, gan_sample.generate(tiny_run, 5, 2, "cpu"))


def test_sample_refuses_a_classifier_or_missing_run(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        gan_sample.load_generator(tmp_path / "nope")
    with pytest.raises(UserError, match="truncate must be positive"):
        gan_sample.truncated_noise(2, 2, 0.0, torch.Generator())


def test_memory_batches_ranks_split_the_global_batch():
    images = torch.arange(40 * 1 * 6 * 6, dtype=torch.int64).remainder(256).to(torch.uint8).view(40, 1, 6, 6)
    make = lambda rank, world: gan_data.MemoryBatches(images, "planted", 4, True, 8, rank, world, 0, torch.device("cpu"))  # noqa: E731
    one, ranks = make(0, 1), [make(0, 2), make(1, 2)]
    for _ in range(7):  # across an epoch boundary (40 images, batch 8)
        whole = one.next_batch()
        assert whole.shape == (8, 1, 4, 4) and whole.min() >= -1 and whole.max() <= 1
        assert torch.equal(torch.cat([rank.next_batch() for rank in ranks]), whole)


def test_stream_batches_resume_mid_epoch(tmp_path):
    data = image_folder(tmp_path / "images", count=12, size=(20, 18))
    settings = gan_data.DataSettings(str(data), None, 1.0, 16, 18, 3, True, "always", 0, "fail", False, 0)
    straight = gan_data.build_batches(settings, 4, 0, 1, torch.device("cpu"))
    expected = [straight.next_batch() for _ in range(5)]  # 3 batches per epoch: crosses into epoch 2
    first = gan_data.build_batches(settings, 4, 0, 1, torch.device("cpu"))
    first.next_batch(), first.next_batch()
    resumed = gan_data.build_batches(settings, 4, 0, 1, torch.device("cpu"))
    resumed.load_state_dict(first.state_dict())
    for batch in expected[2:]:
        assert torch.equal(resumed.next_batch(), batch)
    assert not torch.equal(expected[0], expected[3])  # a new epoch draws a new order and new crops


def test_bf16_autocast_and_channels_last_train(tmp_path, capsys):
    data = image_folder(tmp_path / "images")
    code, run = train(tmp_path, "--data", str(data), "--image-size", "16", "--precision", "bf16", "--channels-last")
    assert code == 0, capsys.readouterr().err
    assert all(math.isfinite(line["gp"]) for line in metrics(run))


def test_fp16_loss_scaling_skips_overflowing_steps_and_recovers(tmp_path, capsys):
    # the penalty's input gradients are taken of scores x 65536 (GradScaler's first scale): they overflow fp16,
    # the scaler skips those steps and lowers the scale, and training goes on with finite statistics
    code, run = train(tmp_path, "--data", str(image_folder(tmp_path / "images")), "--image-size", "16", "--precision",
                      "fp16", "--iterations", "12", "--log-every", "6")
    assert code == 0, capsys.readouterr().err
    lines = metrics(run)
    assert lines[-1]["skipped_steps"] >= 1
    assert all(math.isfinite(line["gp"]) for line in lines)


def test_linear_lr_decay_reaches_zero_and_follows_the_current_iterations(tmp_path, capsys):
    """--lr-decay linear: iteration i (0-based) of N trains at lr * (1 - i / N) in both optimizers; a finished run
    resumed with more --iterations decays over the new count from where it stands (exact resume after a kill,
    decay included: test_gan_resume.py)."""
    data = image_folder(tmp_path / "images")
    args = ("--data", str(data), "--image-size", "16", "--lr", "0.004", "--lr-decay", "linear", "--iterations")
    code, run = train(tmp_path, *args, "4")
    assert code == 0, capsys.readouterr().err
    assert [line["lr"] for line in metrics(run)] == pytest.approx([0.004, 0.003, 0.002, 0.001])
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert [group["lr"] for name in ("opt_g", "opt_d") for group in saved[name]["param_groups"]] == pytest.approx([0.001] * 2)

    code, run = train(tmp_path, *args, "2", name="grown")
    assert code == 0
    code, run = train(tmp_path, *args, "4", "--resume", name="grown")
    assert code == 0 and [line["lr"] for line in metrics(run)] == pytest.approx([0.004, 0.002, 0.002, 0.001])


@needs_fashion
def test_resume_with_no_checkpoint_yet_says_it_starts_fresh(tmp_path, capsys):
    code, run = train(tmp_path, "--data", "fashion-mnist", "--sample", "0.002", "--image-size", "16", "--resume")
    assert code == 0
    assert f"no checkpoint in {run} yet: --resume starts a fresh run" in capsys.readouterr().out
    assert metrics(run)[-1]["iteration"] == 2
