"""darkroom train cyclegan end to end: Fashion-MNIST pair, trainA/trainB folders (1 and 3 channels), a dataset zip
from a local HTTP server, one-sentence errors for bad input, --resume of an ended run, non-finite losses (stop, and
--on-nan skip), and `translate` of odd-sized images."""
import functools
import hashlib
import http.server
import json
import math
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import needs_fashion, run_cli
from darkroom import cli
from darkroom.errors import UserError

# --preset reference: the tests' folders hold small images, which would get the small-images default
TINY = ["--preset", "reference", "--ngf", "4", "--ndf", "4", "--generator", "resnet_6blocks", "--d-layers", "2", "--workers", "0", "--quiet",
        "--val-images", "1"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # tiny nets on a busy 2-core machine: one thread is much faster


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small nets, one torch thread


def write_images(folder: Path, count: int, size: tuple[int, int], mode: str, seed: int, start: int = 0) -> list[Path]:
    """Random `mode` images of `size` (w, h) named 000.png ... in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    paths = []
    for index in range(start, start + count):
        path = folder / f"{index:03d}.png"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
        paths.append(path)
    return paths


def unpaired_layout(root: Path, mode: str, count: int = 6, size=(20, 24)) -> Path:
    for split, n in (("train", count), ("test", 2)):
        for domain, seed in (("A", 1), ("B", 2)):
            write_images(root / f"{split}{domain}", n, size, mode, seed + (split == "test") * 10)
    return root


def train_in_process(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(["train", "cyclegan", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_run_folder(out: Path, steps: int) -> list[dict]:
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [line for line in lines if "gan_ab" in line]
    assert losses and losses[-1]["step"] == steps
    for name in ("gan_ab", "gan_ba", "cycle_a", "cycle_b", "idt_a", "idt_b", "g", "d_a", "d_b", "lr"):
        assert np.isfinite(losses[-1][name]), name
    assert any("val_cycle_a" in line for line in lines)
    assert (out / "checkpoints" / "last.pt").is_file() and (out / "samples" / "final.png").is_file()
    assert json.loads((out / "status.json").read_text())["status"] in ("finished", "stopped")
    return lines


@needs_fashion
def test_fashion_mnist_pair_two_steps_through_the_cli(tmp_path):
    out = tmp_path / "run"
    result = run_cli(["train", "cyclegan", *TINY, "--preset", "fashion-mnist-shoes", "--stop-after", "2",
                      "--log-every", "1", "--sample-every", "2", "--out", str(out)], env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    assert "sneaker" in result.stdout and "ankle-boot" in result.stdout and f"run folder {out}" in result.stdout
    assert_run_folder(out, 2)
    grid = Image.open(out / "samples" / "step-0000002.png")
    assert grid.mode == "L" and grid.width > 6 * 28  # six columns of 28-pixel images (native size), enlarged
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["batch_size"] == 4 and config["crop_size"] == 28 and config["load_size"] == 28


@pytest.mark.parametrize("mode,channels", [("L", 1), ("RGB", 3)])
def test_folder_layout_trains_with_batch_two(tmp_path, capsys, mode, channels):
    data = unpaired_layout(tmp_path / "set", mode)
    out = tmp_path / "run"
    code, stdout, stderr = train_in_process(["--data", str(data), *TINY, "--load-size", "20", "--crop-size", "16",
                                             "--batch-size", "3", "--epochs", "1", "--epochs-decay", "1",
                                             "--log-every", "1", "--sample-every", "1", "--out", str(out)], capsys)
    assert code == 0, stderr
    lines = assert_run_folder(out, 4)  # 6 images per domain (too few to hold any out), batch 3: 2 steps per epoch
    assert [line["lr"] for line in lines if "lr" in line] == [2e-4, 2e-4, 2e-4, 1e-4]  # constant, then to 0
    saved = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert saved["meta"]["channels_a"] == saved["meta"]["channels_b"] == channels
    assert saved["g_ab"]["0.1.weight"].shape[1] == channels
    assert Image.open(out / "samples" / "step-0000001.png").mode == mode


def test_data_a_and_data_b_folders_of_different_modes(tmp_path, capsys):
    write_images(tmp_path / "gray", 4, (16, 16), "L", 1)
    write_images(tmp_path / "colour" / "nested", 5, (18, 16), "RGB", 2)
    out = tmp_path / "run"
    code, _, stderr = train_in_process(["--data-a", str(tmp_path / "gray"), "--data-b", str(tmp_path / "colour"), *TINY,
                                        "--identity", "0", "--load-size", "16", "--crop-size", "16", "--batch-size", "2",
                                        "--stop-after", "1", "--out", str(out)], capsys)
    assert code == 0, stderr
    saved = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert (saved["meta"]["channels_a"], saved["meta"]["channels_b"]) == (1, 3)
    assert saved["ranks"][0]["pools"][1]["images"].shape[1:] == (3, 16, 16)  # fakes of domain B are colour


def test_batches_are_the_same_with_and_without_worker_processes(tmp_path):
    from darkroom import dist
    from darkroom.config import build
    from darkroom.cyclegan import train as cyclegan

    data = unpaired_layout(tmp_path / "set", "RGB", count=8)
    batches = []
    for workers in (0, 2):
        cfg = build(cyclegan.CONFIG, {"data": str(data), "load_size": 24, "crop_size": 16, "batch_size": 2,
                                      "workers": workers, "val_images": 0})
        loaded = cyclegan.load_data(cfg, dist.setup("cpu"))
        loaded.sampler.set_position(1, 1)  # mid-epoch, as after a resume
        batches.append([(a.clone(), b.clone()) for a, b, _ in loaded.loader])
    assert len(batches[0]) == len(batches[1]) == 3
    for (a0, b0), (a1, b1) in zip(*batches):
        assert torch.equal(a0, a1) and torch.equal(b0, b1)


# -- the official layout as a zip from a local server -------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the request log out of the CLI's stderr
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def official_zip(path: Path, name: str, scratch: Path) -> str:
    """A zip laid out as the published ones (NAME/trainA/...); returns its sha256."""
    layout = unpaired_layout(scratch / name, "RGB", count=5, size=(22, 20))
    with zipfile.ZipFile(path, "w") as bundle:
        for file in sorted(layout.rglob("*.png")):
            bundle.write(file, f"{name}/{file.relative_to(layout)}")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_dataset_zip_is_downloaded_verified_extracted_and_trained_on(tmp_path, server, capsys, monkeypatch):
    served, base = server
    sha = official_zip(served / "horse2zebra.zip", "horse2zebra", tmp_path / "scratch")
    cache = tmp_path / "cache"
    common = [*TINY, "--load-size", "20", "--crop-size", "16", "--batch-size", "2", "--stop-after", "2"]
    result = run_cli(["train", "cyclegan", "--data", f"{base}/horse2zebra.zip", "--sha256", sha, *common,
                      "--out", str(tmp_path / "run1")], env={**ONE_THREAD, "DARKROOM_CACHE": str(cache)})
    assert result.returncode == 0, result.stderr
    assert (cache / "cyclegan" / "horse2zebra.zip").is_file()
    assert sorted(p.name for p in (cache / "cyclegan" / "horse2zebra" / "horse2zebra").iterdir()) == \
        ["testA", "testB", "trainA", "trainB"]
    assert_run_folder(tmp_path / "run1", 2)
    # an official name, fetched from --download-base, with no pinned checksum: it says so and prints the sha256
    monkeypatch.setenv("DARKROOM_CACHE", str(tmp_path / "cache2"))
    code, stdout, stderr = train_in_process(["--data", "horse2zebra", "--download-base", base, *common,
                                             "--out", str(tmp_path / "run2")], capsys)
    assert code == 0, stderr
    assert f"sha256 {sha}" in stdout


def test_download_with_the_wrong_checksum_is_refused(tmp_path, server, capsys, monkeypatch):
    served, base = server
    official_zip(served / "tiny.zip", "tiny", tmp_path / "scratch")
    monkeypatch.setenv("DARKROOM_CACHE", str(tmp_path / "cache"))
    code, _, stderr = train_in_process(["--data", f"{base}/tiny.zip", "--sha256", "0" * 64, *TINY, "--quiet",
                                        "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "sha256" in stderr and "tiny.zip" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "cache" / "cyclegan" / "tiny.zip").exists()


# -- bad input: one sentence, exit 2 ------------------------------------------------------------------


def bad_layouts(root: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments, text the one-line error must contain)."""
    cases = {}
    empty = unpaired_layout(root / "empty", "L")
    for file in (empty / "trainB").iterdir():
        file.unlink()
    cases["empty domain"] = (["--data", str(empty)], "trainB")
    cases["missing folder"] = (["--data-a", str(root / "nowhere"), "--data-b", str(empty / "trainA")], "nowhere")
    cases["one folder only"] = (["--data-a", str(empty / "trainA")], "--data-b")
    mixed = unpaired_layout(root / "mixed", "L")
    write_images(mixed / "trainA", 1, (20, 24), "RGB", 5, start=50)
    cases["mixed modes"] = (["--data", str(mixed)], "grayscale")
    corrupt = unpaired_layout(root / "corrupt", "L")
    (corrupt / "trainB" / "002.png").write_bytes(b"this is not an image")
    cases["corrupt file"] = (["--data", str(corrupt)], "002.png")
    cases["crop larger than load"] = (["--data", str(root / "mixed"), "--crop-size", "32"], "--crop-size 32")
    cases["no layout"] = (["--data", str(empty / "trainA")], "trainA/ and trainB/")
    cases["bad choice"] = (["--data", str(empty), "--gan-loss", "hinge"], "--gan-loss")
    return cases


def test_bad_inputs_are_one_sentence_and_exit_2(tmp_path, capsys):
    for name, (args, culprit) in bad_layouts(tmp_path).items():
        out = tmp_path / f"run-{name.replace(' ', '-')}"
        code, _, stderr = train_in_process([*args, *TINY, "--load-size", "20", "--crop-size", "16", "--out", str(out),
                                            *(["--crop-size", "32"] if "--crop-size 32" in culprit else [])], capsys)
        assert code == 2, name
        assert culprit in stderr and len(stderr.strip().splitlines()) == 1, (name, stderr)
        assert not (out / "checkpoints" / "last.pt").exists(), name


def test_bad_input_through_the_console_has_no_traceback(tmp_path):
    result = run_cli(["train", "cyclegan", "--data", str(tmp_path / "absent"), *TINY], env=ONE_THREAD)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(tmp_path / "absent") in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_on_bad_image_skip_leaves_out_files_that_do_not_decode(tmp_path, capsys):
    """--on-bad-image skip once stopped at the header check of folder data all the same."""
    data = unpaired_layout(tmp_path / "set", "L", count=7)
    (data / "trainB" / "003.png").write_bytes(b"this is not an image")
    args = ["--data", str(data), *TINY, "--val-images", "0", "--load-size", "16", "--crop-size", "16",
            "--batch-size", "2", "--epochs", "1", "--epochs-decay", "0"]
    code, _, stderr = train_in_process([*args, "--out", str(tmp_path / "fails")], capsys)
    assert code == 2 and "003.png is not a readable image" in stderr and "--on-bad-image skip" in stderr
    out = tmp_path / "skips"
    code, stdout, stderr = train_in_process([*args, "--on-bad-image", "skip", "--out", str(out)], capsys)
    assert code == 0, stderr
    assert "left out 0 unreadable file(s) of domain A and 1 of domain B" in stdout
    saved = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert (saved["meta"]["train_a"], saved["meta"]["train_b"]) == (7, 6)  # 7 A images per epoch: 3 steps of 2
    assert saved["state"]["step"] == 3
    for name in ("000.png", "001.png", "002.png", "004.png", "005.png", "006.png"):
        (data / "trainB" / name).write_bytes(b"nor is this")
    code, _, stderr = train_in_process([*args, "--on-bad-image", "skip", "--out", str(tmp_path / "none")], capsys)
    assert code == 2 and "domain B has no readable image" in stderr


def test_truncated_file_found_mid_run_keeps_the_run(tmp_path, capsys):
    data = unpaired_layout(tmp_path / "set", "L", count=12)
    whole = (data / "trainA" / "010.png").read_bytes()
    (data / "trainA" / "010.png").write_bytes(whole[:60])  # a valid header, then nothing: decoding fails late
    out = tmp_path / "run"
    args = ["--data", str(data), *TINY, "--val-images", "0", "--load-size", "16", "--crop-size", "16",
            "--batch-size", "2", "--epochs", "1", "--epochs-decay", "0", "--out", str(out)]
    code, _, stderr = train_in_process(args, capsys)
    assert code == 2 and "010.png" in stderr and "--resume" in stderr and len(stderr.strip().splitlines()) == 1
    saved = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    (data / "trainA" / "010.png").write_bytes(whole)  # fixed: the run goes on from where it stopped
    code, stdout, stderr = train_in_process([*args, "--resume"], capsys)
    assert code == 0, stderr
    assert f"resumed {out} at step {saved['state']['step']}" in stdout


def test_resume_with_different_settings_is_refused(tmp_path, capsys):
    data = unpaired_layout(tmp_path / "set", "L")
    args = ["--data", str(data), *TINY, "--load-size", "16", "--crop-size", "16", "--stop-after", "1",
            "--out", str(tmp_path / "run")]
    assert train_in_process(args, capsys)[0] == 0
    code, _, stderr = train_in_process([*args, "--resume", "--lr", "0.1"], capsys)
    assert code == 2 and "--lr" in stderr
    code, _, stderr = train_in_process(args, capsys)
    assert code == 2 and "--resume" in stderr  # the run folder is never overwritten


def test_resume_of_an_ended_run_changes_nothing(tmp_path, capsys):
    """--resume of a run that stopped at this --stop-after or finished: one sentence, exit 0, the folder's status and
    metrics as they were; a larger --stop-after goes on (its partial --log-every window included)."""
    data = unpaired_layout(tmp_path / "set", "L")
    out = tmp_path / "run"
    args = ["--data", str(data), *TINY, "--load-size", "16", "--crop-size", "16", "--batch-size", "3", "--epochs", "1",
            "--epochs-decay", "1", "--log-every", "3", "--out", str(out)]  # 2 steps an epoch, 4 in all
    kept = lambda: {name: (out / name).read_bytes() for name in ("status.json", "metrics.jsonl", "checkpoints/last.pt")}  # noqa: E731
    assert train_in_process([*args, "--stop-after", "3"], capsys)[0] == 0
    before = kept()
    code, stdout, stderr = train_in_process([*args, "--stop-after", "3", "--resume"], capsys)
    assert code == 0, stderr
    assert f"{out} already ended at step 3 of 4: nothing to do (raise --stop-after to go on)" in stdout
    assert kept() == before

    code, stdout, stderr = train_in_process([*args, "--resume"], capsys)
    assert code == 0 and f"resumed {out} at step 3 of 4" in stdout, stderr
    losses = [line for line in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "g" in line]
    assert [line["step"] for line in losses] == [3, 4]  # steps 1-3, then the partial window of step 4
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "finished" and status["resumes"] == 1
    before = kept()
    code, stdout, stderr = train_in_process([*args, "--resume"], capsys)
    assert code == 0 and f"{out} already ended at step 4 of 4: nothing to do\n" in stdout, stderr
    assert kept() == before


def nan_args(data: Path, out: Path, *extra: str) -> list[str]:
    """An absurd --lr: step 1 is finite and blows the weights up, every later loss is non-finite (6 steps)."""
    return ["--data", str(data), *TINY, "--val-images", "0", "--load-size", "16", "--crop-size", "16", "--batch-size",
            "2", "--epochs", "1", "--epochs-decay", "0", "--lr", "1e30", "--log-every", "1", "--checkpoint-every", "1",
            "--sample-every", "0", "--out", str(out), *extra]


def test_non_finite_loss_stops_and_says_failed_in_the_status(tmp_path, capsys):
    data, out = unpaired_layout(tmp_path / "set", "L", count=12), tmp_path / "run"
    code, _, stderr = train_in_process(nan_args(data, out), capsys)
    assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert "a loss became non-finite at iteration 1 (" in stderr and "is intact (lower --lr)" in stderr
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "failed" and "non-finite" in status["error"] and status["step"] == 1
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["state"]["step"] == 1


def test_on_nan_skip_finishes_counts_and_leaves_the_weights_alone(tmp_path, capsys):
    data = unpaired_layout(tmp_path / "set", "L", count=12)
    code, _, stderr = train_in_process(nan_args(data, tmp_path / "one", "--on-nan", "skip", "--stop-after", "1"), capsys)
    assert code == 0, stderr
    code, _, stderr = train_in_process(nan_args(data, tmp_path / "run", "--on-nan", "skip"), capsys)
    assert code == 0, stderr
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in lines if "lr" in line]
    assert [line["skipped_steps"] for line in steps] == [0, 1, 2, 3, 4, 5]
    assert math.isfinite(steps[0]["g"]) and not any("g" in line for line in steps[1:])  # skipped: no loss averaged
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "finished"
    one = torch.load(tmp_path / "one" / "checkpoints" / "last.pt", weights_only=True)
    final = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert final["state"]["step"] == 6 and final["state"]["skipped"] == 5
    for key in ("g_ab", "g_ba", "d_a", "d_b", "opt_g", "opt_d"):  # as step 1 left them: 5 skipped steps changed nothing
        assert final[key].keys() == one[key].keys()
    assert all(torch.equal(one[net][name], final[net][name]) for net in ("g_ab", "g_ba", "d_a", "d_b") for name in one[net])
    assert all(torch.equal(one[opt]["state"][i][k], final[opt]["state"][i][k]) for opt in ("opt_g", "opt_d")
               for i in one[opt]["state"] for k in one[opt]["state"][i])
    assert all(torch.isfinite(tensor).all() for net in ("g_ab", "g_ba", "d_a", "d_b") for tensor in final[net].values())


# -- translate -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gray_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("translate")
    data = unpaired_layout(root / "set", "L")
    code = cli.main(["train", "cyclegan", "--data", str(data), *TINY, "--load-size", "16", "--crop-size", "16",
                     "--stop-after", "1", "--out", str(root / "run")])
    assert code == 0
    return root / "run"


def test_translate_keeps_sizes_names_and_folders(gray_run, tmp_path):
    from darkroom.cyclegan.translate import translate_folder

    inputs = tmp_path / "in"
    write_images(inputs, 1, (17, 23), "L", 1)
    write_images(inputs / "sub", 1, (30, 9), "RGB", 2)  # colour into a grayscale generator: read as L
    Image.fromarray(np.zeros((11, 13), np.uint8)).save(inputs / "odd.jpg")
    result = translate_folder(gray_run, "a2b", inputs, tmp_path / "out", torch.device("cpu"), batch_size=2,
                              progress=False)
    assert result["translated"] == 3 and result["skipped"] == []
    for source, size in (("000.png", (17, 23)), ("sub/000.png", (30, 9)), ("odd.jpg", (13, 11))):
        image = Image.open(tmp_path / "out" / source)
        assert image.size == size and image.mode == "L", source
    # at the training scale (shorter side resized to the run's load size and back), sizes are kept too
    result = translate_folder(gray_run, "b2a", inputs, tmp_path / "scaled", torch.device("cpu"), at_training_scale=True,
                              progress=False)
    assert result["translated"] == 3 and Image.open(tmp_path / "scaled" / "sub" / "000.png").size == (30, 9)


def test_translate_names_unreadable_files(gray_run, tmp_path):
    from darkroom.cyclegan.translate import translate_folder

    inputs = tmp_path / "in"
    write_images(inputs, 2, (16, 16), "L", 1)
    (inputs / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(UserError, match="broken.png"):
        translate_folder(gray_run, "b2a", inputs, tmp_path / "out", torch.device("cpu"), progress=False)
    result = translate_folder(gray_run, "b2a", inputs, tmp_path / "out", torch.device("cpu"), on_bad_image="skip",
                              progress=False)
    assert result["translated"] == 2 and len(result["skipped"]) == 1 and "broken.png" in result["skipped"][0]
    only_bad = tmp_path / "only-bad"
    only_bad.mkdir()
    (only_bad / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(UserError, match="none of the 1 images in .*only-bad could be read; the first: .*broken.png"):
        translate_folder(gray_run, "b2a", only_bad, tmp_path / "out2", torch.device("cpu"), on_bad_image="skip",
                         progress=False)
    with pytest.raises(UserError, match="input folder"):
        translate_folder(gray_run, "a2b", inputs, inputs, torch.device("cpu"), progress=False)
    with pytest.raises(UserError, match="direction"):
        translate_folder(gray_run, "sideways", inputs, tmp_path / "out2", torch.device("cpu"), progress=False)


def test_resume_with_no_checkpoint_yet_says_it_starts_fresh(tmp_path, capsys):
    data = unpaired_layout(tmp_path / "set", "L")
    out = tmp_path / "run"
    code, stdout, stderr = train_in_process(["--data", str(data), *TINY, "--load-size", "20", "--crop-size", "16",
                                             "--stop-after", "1", "--out", str(out), "--resume"], capsys)
    assert code == 0, stderr
    assert f"no checkpoint in {out} yet: --resume starts a fresh run" in stdout
    assert (out / "checkpoints" / "last.pt").is_file()


def test_adam_is_fused_on_the_cpu_and_steps_as_the_per_parameter_loop():
    """build_parts' optimizers take PyTorch's fused Adam on CPU (and CUDA); a step from the same gradients lands where
    the per-parameter Adam lands, to float rounding, so the switch changes the speed and not the algorithm."""
    from types import SimpleNamespace

    from darkroom import dist
    from darkroom.cyclegan.config import CycleGANConfig
    from darkroom.cyclegan.train import build_parts

    cfg = CycleGANConfig(ngf=4, ndf=4, blocks=1, d_layers=2, lr=1e-3, beta1=0.5, beta2=0.9)
    torch.manual_seed(0)
    parts = build_parts(cfg, dist.DistInfo(0, 1, 0, torch.device("cpu")), SimpleNamespace(channels=(1, 1)), "fp32")
    assert parts.opt_g.defaults["fused"] and parts.opt_d.defaults["fused"]
    params = [p for group in parts.opt_g.param_groups for p in group["params"]]
    copies = [p.detach().clone().requires_grad_() for p in params]
    start = [p.detach().clone() for p in params]
    loop = torch.optim.Adam(copies, lr=1e-3, betas=(0.5, 0.9), foreach=False)
    for _ in range(3):  # a few steps, so the moments and the bias correction take part
        grads = [torch.randn_like(p) for p in params]
        for p, c, g in zip(params, copies, grads):
            p.grad, c.grad = g.clone(), g.clone()
        parts.opt_g.step()
        loop.step()
    moved = max((p.detach() - c.detach()).abs().max().item() for p, c in zip(params, copies))
    assert moved < 1e-6
    assert min((p.detach() - s).abs().max().item() for p, s in zip(params, start)) > 1e-5  # every tensor moved
