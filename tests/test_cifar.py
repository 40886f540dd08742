"""CIFAR-10: the official tarball format written with random images and read back exactly, through a
download from a local HTTP server; hostile pickles, wrong shapes and bad labels refused."""
from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from darkroom.data import cifar
from darkroom.data.cifar import load_cifar10, read_pickle, write_cifar10_tarball
from darkroom.errors import UserError


class QuietHandler(SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, format: str, *args: object) -> None:
        QuietHandler.requests.append(self.path)


@pytest.fixture()
def served(tmp_path, monkeypatch):
    """(folder served over HTTP, its base URL); the cache is a fresh folder and $DARKROOM_DATA unset."""
    folder = tmp_path / "www"
    folder.mkdir()
    monkeypatch.setenv("DARKROOM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DARKROOM_DATA", raising=False)
    QuietHandler.requests.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _random_set(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n)


def _tar_with(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def test_download_and_read_back_exact_pixels(served, monkeypatch, tmp_path):
    folder, url = served
    images, labels = _random_set(72)
    tarball = write_cifar10_tarball(folder / "cifar-10-python.tar.gz", images, labels)
    monkeypatch.setattr(cifar, "URL", url + "/cifar-10-python.tar.gz")
    monkeypatch.setattr(cifar, "MD5", hashlib.md5(tarball.read_bytes()).hexdigest())
    train = load_cifar10("train", None, download=True)
    test = load_cifar10("test", None, download=True)
    assert train.images.shape == (60, 3, 32, 32) and test.images.shape == (12, 3, 32, 32)
    assert np.array_equal(train.images.numpy(), images[:60]) and np.array_equal(test.images.numpy(), images[60:])
    assert np.array_equal(train.labels.numpy(), labels[:60]) and np.array_equal(test.labels.numpy(), labels[60:])
    assert train.classes == cifar.CLASSES and train.source == "cifar10:train"
    assert QuietHandler.requests == ["/cifar-10-python.tar.gz"]  # the second split came from the cache
    cached = tmp_path / "cache" / "cifar10"
    assert sorted(p.name for p in cached.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


def test_wrong_md5_refused_and_nothing_extracted(served, monkeypatch, tmp_path):
    folder, url = served
    write_cifar10_tarball(folder / "cifar-10-python.tar.gz", *_random_set(12))
    monkeypatch.setattr(cifar, "URL", url + "/cifar-10-python.tar.gz")
    with pytest.raises(UserError, match="md5"):
        load_cifar10("train", None, download=True)
    assert list((tmp_path / "cache" / "cifar10").iterdir()) == []


def test_official_byte_layout_read_from_hand_made_batch(tmp_path):
    """Rows are 1024 red, 1024 green, 1024 blue bytes; each plane row-major. Built without our writer."""
    data = np.zeros((2, 3072), np.uint8)
    data[0, :1024] = 200  # image 0 is pure red
    data[1, 1024 + 32 * 5 + 7] = 99  # image 1: green at row 5, column 7
    batch = {b"data": data, b"labels": [3, 9], b"batch_label": b"x", b"filenames": [b"a.png", b"b.png"]}
    _tar_with(tmp_path / "cifar-10-python.tar.gz", {"test_batch": pickle.dumps(batch, protocol=4)})
    arrays = load_cifar10("test", tmp_path, download=False)
    assert (arrays.images[0, 0] == 200).all() and (arrays.images[0, 1:] == 0).all()
    assert arrays.images[1, 1, 5, 7] == 99 and arrays.images[1].sum() == 99
    assert arrays.labels.tolist() == [3, 9]
    assert arrays.classes == cifar.CLASSES  # no batches.meta: the published names


class RunsCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_pickle_that_runs_a_command_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    hostile = pickle.dumps({b"data": RunsCommand(f"touch {marker}"), b"labels": [0]}, protocol=4)
    _tar_with(tmp_path / "cifar-10-python.tar.gz", {"test_batch": hostile})
    with pytest.raises(UserError, match=r"test_batch.*refusing global (posix|os)\.system"):
        load_cifar10("test", tmp_path, download=False)
    assert not marker.exists()
    # The same pickle through plain pickle.loads would have run it: the test's payload is real.
    pickle.loads(hostile)
    assert marker.exists()


@pytest.mark.parametrize("payload", [
    pickle.dumps(eval, protocol=2),  # a bare builtin
    b"cbuiltins\nexec\n(S'import os'\ntR.",  # protocol 0 GLOBAL + REDUCE
    b"\x80\x02cnumpy\nload\nq\x00.",  # numpy, but not an allowed name
])
def test_other_globals_refused(tmp_path, payload):
    path = tmp_path / "batch"
    path.write_bytes(payload)
    with pytest.raises(UserError, match="refusing global"):
        read_pickle(path)


def _batch(data: object, labels: object) -> bytes:
    return pickle.dumps({b"data": data, b"labels": labels}, protocol=4)


@pytest.mark.parametrize("raw, message", [
    (_batch(np.zeros((2, 3000), np.uint8), [0, 1]), r"shape \(2, 3000\)"),
    (_batch(np.zeros((2, 3072), np.float32), [0, 1]), "float32"),
    (_batch(np.zeros((2, 3072), np.uint8), [0, 10]), "label 10, outside 0..9"),
    (_batch(np.zeros((2, 3072), np.uint8), [-1, 0]), "label -1"),
    (_batch(np.zeros((2, 3072), np.uint8), [0]), "2 images but 1 labels"),
    (pickle.dumps([1, 2, 3]), "not a CIFAR-10 batch"),
    (b"\x80\x02}q\x00(U\x04data", "not a readable CIFAR-10 batch"),  # truncated
])
def test_malformed_batches_refused_naming_the_file(tmp_path, raw, message):
    _tar_with(tmp_path / "cifar-10-python.tar.gz", {"test_batch": raw})
    with pytest.raises(UserError, match=message) as error:
        load_cifar10("test", tmp_path, download=False)
    assert "test_batch" in str(error.value)


def test_missing_without_download_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DARKROOM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DARKROOM_DATA", raising=False)
    with pytest.raises(UserError, match="not found"):
        load_cifar10("train", tmp_path, download=False)
    with pytest.raises(UserError, match="split 'val'"):
        load_cifar10("val", tmp_path, download=False)


def test_found_under_darkroom_data(tmp_path, monkeypatch):
    images, labels = _random_set(6)
    write_cifar10_tarball(tmp_path / "data" / "cifar10" / "cifar-10-python.tar.gz", images, labels, n_train_batches=2)
    monkeypatch.setenv("DARKROOM_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("DARKROOM_CACHE", str(tmp_path / "cache"))
    train = load_cifar10("train", None, download=False)
    assert np.array_equal(train.images.numpy(), images[:4])  # 6 // 3 = 2 go to test_batch
    assert (tmp_path / "data" / "cifar10" / "cifar-10-batches-py" / "data_batch_2").is_file()
