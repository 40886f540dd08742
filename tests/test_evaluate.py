"""darkroom eval end to end: planted copies of training images are flagged, fresh held-out images are not,
floors sit beside the scores, a CycleGAN run is judged by the classifier, a GAN trained from a folder is scored
against --real held-out images or, without them, says which scores its training data cannot give; eval compare."""
import json

import pytest
import torch
from PIL import Image

from conftest import needs_fashion, run_cli


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    out = tmp_path_factory.mktemp("judge") / "clf"
    result = run_cli(["train", "classifier", "--preset", "fashion-mnist-cpunet", "--sample", "0.1", "--test-sample", "0.1",
                      "--epochs", "2", "--batch-size", "200", "--quiet", "--out", str(out)])
    assert result.returncode == 0, result.stderr
    return out


def write_folder(images: torch.Tensor, folder):
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image[0].numpy()).save(folder / f"{i:04d}.png")
    return folder


@needs_fashion
def test_planted_copies_flagged_fresh_images_not(judge, tmp_path):
    from darkroom.data.idx import load_idx_dataset
    train, test = load_idx_dataset("fashion-mnist", "train"), load_idx_dataset("fashion-mnist", "test")
    g = torch.Generator().manual_seed(0)
    copies = write_folder(train.images[torch.randperm(60000, generator=g)[:300]], tmp_path / "copies")
    fresh = write_folder(test.images[5000:5300], tmp_path / "fresh")  # held-out images the "model" never saw
    scores = {}
    for name, folder in (("copies", copies), ("fresh", fresh)):
        result = run_cli(["eval", "images", "--fake", str(folder), "--real", "fashion-mnist:test",
                          "--train", "fashion-mnist:train", "--features", str(judge), "--json", str(tmp_path / f"{name}.json")])
        assert result.returncode == 0, result.stderr
        assert "feature network: darkroom classifier cpunet" in result.stdout
        scores[name] = json.loads((tmp_path / f"{name}.json").read_text())
    # the train reference is a 10k subsample of 60k: about 1 in 6 planted copies has its original in it
    assert scores["copies"]["memo_copy_fraction"] > 0.1 > scores["fresh"]["memo_copy_fraction"]
    assert scores["copies"]["memo_nn_ratio"] < scores["fresh"]["memo_nn_ratio"]
    for key in ("frechet_inception_distance", "coverage", "modes_hit"):
        assert f"{key}_floor" in scores["fresh"]
    assert scores["fresh"]["modes_hit"] == 10
    assert (tmp_path / "eval_class_histogram.png").exists() and (tmp_path / "eval_nearest_train.png").exists()


@needs_fashion
def test_eval_images_without_train_is_a_clear_error(judge, tmp_path):
    folder = write_folder(torch.zeros(3, 1, 28, 28, dtype=torch.uint8), tmp_path / "few")
    result = run_cli(["eval", "images", "--fake", str(folder), "--real", "fashion-mnist:test", "--features", str(judge)])
    assert result.returncode == 2 and "--train" in result.stderr and "Traceback" not in result.stderr


@needs_fashion
def test_eval_cyclegan_scores_both_directions(judge, tmp_path):
    run = tmp_path / "cg"
    result = run_cli(["train", "cyclegan", "--preset", "fashion-mnist-shoes", "--ngf", "8", "--ndf", "8",
                      "--stop-after", "2", "--batch-size", "4", "--out", str(run), "--quiet"])
    assert result.returncode == 0, result.stderr
    result = run_cli(["eval", "cyclegan", str(run), "--features", str(judge)])
    assert result.returncode == 0, result.stderr
    scores = json.loads((run / "eval.json").read_text())
    for direction in ("a2b", "b2a"):
        assert 0.0 <= scores[f"translation_target_accuracy_{direction}"] <= 1.0
        assert scores[f"n_{direction}"] == 1000  # every held-out test image of the class
        assert scores[f"translation_fid_{direction}_floor"] < scores[f"translation_fid_{direction}"]


def test_a_second_process_waits_for_the_built_in_feature_network_instead_of_failing(tmp_path, monkeypatch, capsys):
    """Two evaluations at once on a machine without the cached network: one trains it, the other waits for that
    (it used to fail with "run folder ... in use by another darkroom process; pick another --out", a flag it never
    passed), then uses the finished network without training it again."""
    import fcntl
    import threading
    import time

    from darkroom.evaluate import features
    from darkroom import classifier

    monkeypatch.setenv("DARKROOM_CACHE", str(tmp_path))
    monkeypatch.setattr(classifier, "run", lambda *args: pytest.fail("the network was trained a second time"))
    run_dir = tmp_path / "feature-nets" / "fashion-mnist-cpunet"
    (run_dir / "checkpoints").mkdir(parents=True)
    lock = open(tmp_path / "feature-nets" / "fashion-mnist-cpunet.lock", "a+")
    fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # the other process, still training

    def other_process_finishes():
        time.sleep(0.5)
        (run_dir / "checkpoints" / "last.pt").write_bytes(b"weights")
        (run_dir / "status.json").write_text(json.dumps({"status": "finished"}))
        lock.close()

    threading.Thread(target=other_process_finishes).start()
    started = time.perf_counter()
    assert features.builtin_feature_run() == run_dir
    assert time.perf_counter() - started >= 0.5
    assert "waiting for another darkroom process" in capsys.readouterr().out


def _eval_json(folder, fid: float, half: float):
    folder.mkdir()
    (folder / "eval.json").write_text(json.dumps({
        "feature_network": "net", "n_fake": 1000.0, "frechet_inception_distance": fid,
        "frechet_inception_distance_ci_low": fid - half, "frechet_inception_distance_ci_high": fid + half}))
    return str(folder)


@pytest.mark.slow
def test_eval_compare_on_the_command_line_prints_each_pair_and_refuses_bad_input(tmp_path):
    a = _eval_json(tmp_path / "a", 10.0, 1.0)
    b = _eval_json(tmp_path / "b", 14.0, 1.0)  # [13, 15] vs [9, 11]: beyond
    result = run_cli(["eval", "compare", a, b])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (f"frechet_inception_distance: {a} 10 [9, 11] vs {b} 14 [13, 15]: "
                                     f"{b} higher, beyond the intervals")
    for args, words in (([a], "at least two"), ([a, str(tmp_path / "missing")], "missing holds no eval.json")):
        result = run_cli(["eval", "compare", *args])
        assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def _pictures(folder, count: int, seed: int, classes: bool = False):
    """count 16x16 RGB images, half dark and half bright, flat in `folder` (or in dark/ and bright/)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for index in range(count):
        kind = ("dark", "bright")[index % 2]
        pixels = rng.integers(0, 120, (16, 16, 3)) + (0 if kind == "dark" else 120)
        target = folder / kind if classes else folder
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.astype("uint8"), "RGB").save(target / f"{kind}{index:03d}.png")
    return folder


@pytest.mark.slow
def test_eval_gan_of_a_folder_run_with_and_without_a_held_out_real_set(tmp_path, capsys):
    """A GAN trained from a folder (no test split): with --real a held-out folder, every score and floor is a
    finite number; without it the samples meet the training images themselves, and the output and eval.json say
    so in one sentence, the memorization scores and floors left out (not 0 or NaN) and named in not_measurable."""
    import math

    from darkroom import cli
    from darkroom.evaluate.score import MEMORIZATION_KEYS

    judge, run = tmp_path / "judge", tmp_path / "gan"
    assert cli.main(["train", "classifier", "--data", str(_pictures(tmp_path / "classes", 40, 0, classes=True)),
                     "--image-size", "16", "--epochs", "1", "--batch-size", "8", "--workers", "0", "--quiet",
                     "--out", str(judge)]) == 0
    assert cli.main(["train", "gan", "--data", str(_pictures(tmp_path / "train", 24, 1)), "--image-size", "16",
                     "--nz", "8", "--ngf", "4", "--ndf", "4", "--batch-size", "4", "--iterations", "2",
                     "--n-critic", "1", "--warmup-critic", "off", "--quiet", "--out", str(run)]) == 0
    held = _pictures(tmp_path / "held", 24, 2)
    capsys.readouterr()

    assert cli.main(["eval", "gan", str(run), "--n", "24", "--real", str(held), "--features", str(judge)]) == 0
    assert "reference is the training data" not in capsys.readouterr().out
    scored = json.loads((run / "eval.json").read_text())
    assert scored["reference"] == str(held) and "reference_note" not in scored and "not_measurable" not in scored
    assert sorted(key for key in scored if key.startswith("memo_") and not key.endswith(("_ci_low", "_ci_high"))) \
        == sorted(MEMORIZATION_KEYS)
    floors = [key for key in scored if key.endswith("_floor")]
    assert "frechet_inception_distance_floor" in floors and "coverage_floor" in floors
    for key in (*MEMORIZATION_KEYS, *floors, "frechet_inception_distance"):
        if key != "memo_ct":  # C_T is null when no cell has enough samples: 24 is few
            assert isinstance(scored[key], float) and math.isfinite(scored[key]), key

    assert cli.main(["eval", "gan", str(run), "--n", "24", "--features", str(judge)]) == 0
    out = capsys.readouterr().out
    alone = json.loads((run / "eval.json").read_text())
    sentence = alone["reference_note"]
    assert sentence.startswith("the reference is the training data") and "memorization scores and the floor" in sentence
    assert f"note: {sentence}" in out.splitlines() and "\n" not in sentence and ". " not in sentence  # one sentence
    assert set(MEMORIZATION_KEYS) | {f"{key}_floor" for key in ("frechet_inception_distance", "coverage",
                                                                 "kernel_inception_distance_mean")} <= set(alone["not_measurable"])
    for key in alone["not_measurable"]:
        assert key not in alone and f"{key}_ci_low" not in alone, key
    assert not [key for key in alone if key.startswith("memo_") or "_floor" in key]
    assert alone["heldout_is_unseen"] == 0.0 and math.isfinite(alone["frechet_inception_distance"])
    assert "memo_nn_ratio" not in out and "_floor" not in out
    assert cli.main(["eval", "gan", str(run), "--real", str(tmp_path / "nowhere"), "--features", str(judge)]) == 2
    assert "--real" in capsys.readouterr().err
