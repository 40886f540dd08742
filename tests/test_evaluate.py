"""darkroom eval end to end: planted copies of training images are flagged, fresh held-out images are not,
floors sit beside the scores, and a CycleGAN run is judged by the classifier."""
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
