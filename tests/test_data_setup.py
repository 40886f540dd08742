"""The demo's data step on an empty machine layout (temporary $DARKROOM_DATA, HOME and Debian folder): found where it
is, downloaded from a local HTTP server with checksums, installed by a fake apt-get when the server is unreachable,
else one sentence naming every route and exit 2 through `darkroom demo`. apt-get itself never runs here."""
from __future__ import annotations

import functools
import gzip
import hashlib
import socket
import stat
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import run_cli
from darkroom.data import idx, provision
from darkroom.data.idx import load_idx_dataset
from darkroom.data.provision import ensure_idx_dataset
from darkroom.errors import UserError

NAMES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


class QuietHandler(SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, format: str, *args: object) -> None:
        QuietHandler.requests.append(self.path)


def _idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file as published: magic 0x0000 0x08 <ndim>, big-endian int32 sizes, then the uint8 data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _closed_port() -> int:
    with socket.socket() as probe:  # bound then closed: nothing listens there, connections are refused at once
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def machine(tmp_path, monkeypatch):
    """A fresh machine: empty $DARKROOM_DATA, HOME (so an empty cache) and Debian folder; the four files served by a
    local server with an md5 table for them; a fake apt-get that logs its arguments and, on install, copies the files
    where the Debian package puts them."""
    rng = np.random.default_rng(0)
    shapes = [(12, 28, 28), (12,), (6, 28, 28), (6,)]  # train images, labels; test images, labels
    arrays = {name: rng.integers(0, 256 if len(shape) == 3 else 10, shape) for name, shape in zip(NAMES, shapes)}
    files = {name: _idx_bytes(array) for name, array in arrays.items()}
    parts = ("www", "package", "data", "home", "debian", "bin")
    www, package, data, home, debian, bin_dir = (tmp_path / part for part in parts)
    for folder in (www, package, data, home, debian, bin_dir):
        folder.mkdir()
    for name, raw in files.items():
        (www / name).write_bytes(raw)
        (package / name).write_bytes(raw)
    log = tmp_path / "apt.log"
    install = f"mkdir -p {debian}/fashion-mnist && cp {package}/*.gz {debian}/fashion-mnist/"
    apt = _script(bin_dir / "apt-get", f'echo "$DEBIAN_FRONTEND $*" >> {log}\nif [ "$1" = install ]; then {install}; fi\n')
    table = {"url": "http://unused.invalid/",
             "train": tuple((name, hashlib.md5(files[name]).hexdigest()) for name in NAMES[:2]),
             "test": tuple((name, hashlib.md5(files[name]).hexdigest()) for name in NAMES[2:])}
    monkeypatch.setitem(idx.FILES, "fashion-mnist", table)
    monkeypatch.setenv("DARKROOM_DATA", str(data))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("DARKROOM_CACHE", raising=False)
    monkeypatch.setenv("DARKROOM_DEBIAN_DATASETS", str(debian))
    monkeypatch.setenv("DARKROOM_APT_GET", str(apt))
    QuietHandler.requests.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(www)))
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    monkeypatch.setenv("DARKROOM_FASHION_MNIST_URL", url)
    yield SimpleNamespace(files=files, arrays=arrays, www=www, data=data, home=home, debian=debian, bin=bin_dir, apt=apt,
                          log=log, url=url, cache=home / ".cache" / "darkroom" / "fashion-mnist")
    httpd.shutdown()
    httpd.server_close()


def _unreachable(machine, monkeypatch) -> str:
    url = f"http://127.0.0.1:{_closed_port()}/"
    monkeypatch.setenv("DARKROOM_FASHION_MNIST_URL", url)
    return url


def _as_root(monkeypatch, root: bool) -> None:
    monkeypatch.setattr(provision.os, "geteuid", lambda: 0 if root else 1000)


def _assert_both_routes(message: str, url: str) -> None:
    assert message.startswith("Fashion-MNIST is not on this machine")
    assert url in message  # the download route, with the address it needs
    assert "`sudo apt-get install dataset-fashion-mnist`" in message and "$DARKROOM_DATA" in message
    assert all(name in message for name in NAMES)
    assert "\n" not in message and message.count(". ") == 0  # one sentence


def test_downloaded_into_the_cache_and_checksummed(machine, monkeypatch):
    _as_root(monkeypatch, True)  # apt would be allowed: it must still not run when the download works
    folder = ensure_idx_dataset("fashion-mnist")
    assert folder == machine.cache
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == machine.files
    assert sorted(QuietHandler.requests) == sorted("/" + name for name in NAMES)
    assert not machine.log.exists()
    train = load_idx_dataset("fashion-mnist", "train")  # what training reads: the cached files, not the server
    assert np.array_equal(train.images[:, 0].numpy(), machine.arrays["train-images-idx3-ubyte.gz"])
    assert train.labels.tolist() == machine.arrays["train-labels-idx1-ubyte.gz"].tolist()
    assert ensure_idx_dataset("fashion-mnist") == folder and len(QuietHandler.requests) == 4  # found: no request


def test_found_where_it_already_is_without_network_or_apt(machine, monkeypatch):
    _unreachable(machine, monkeypatch)
    for where in (machine.data / "fashion-mnist", machine.debian / "fashion-mnist"):
        where.mkdir()
        for name, raw in machine.files.items():
            (where / name).write_bytes(raw)
    assert ensure_idx_dataset("fashion-mnist") == machine.data / "fashion-mnist"  # $DARKROOM_DATA comes first
    for name in NAMES:
        (machine.data / "fashion-mnist" / name).unlink()
    assert ensure_idx_dataset("fashion-mnist") == machine.debian / "fashion-mnist"
    assert QuietHandler.requests == [] and not machine.log.exists()


def test_corrupt_download_refused_and_nothing_cached(machine, monkeypatch):
    (machine.www / NAMES[2]).write_bytes(machine.files[NAMES[2]][:-7] + b"garbage")
    monkeypatch.setenv("DARKROOM_APT_GET", str(machine.bin / "no-such-apt-get"))
    with pytest.raises(UserError) as error:
        ensure_idx_dataset("fashion-mnist")
    assert "md5" in str(error.value) and NAMES[2] in str(error.value)
    _assert_both_routes(str(error.value), machine.url)
    assert not (machine.cache / NAMES[2]).exists()


def test_unreachable_server_then_apt_installs_as_root(machine, monkeypatch, capsys):
    url = _unreachable(machine, monkeypatch)
    _as_root(monkeypatch, True)
    folder = ensure_idx_dataset("fashion-mnist")
    assert folder == machine.debian / "fashion-mnist"
    assert machine.log.read_text().splitlines() == [
        "noninteractive update -qq", "noninteractive install -y -qq --no-install-recommends dataset-fashion-mnist"]
    out = capsys.readouterr().out
    assert url in out and "Connection refused" in out  # says why it falls back
    assert f"running {machine.apt} update -qq" in out
    assert f"running {machine.apt} install -y -qq --no-install-recommends dataset-fashion-mnist" in out
    test = load_idx_dataset("fashion-mnist", "test")
    assert test.labels.tolist() == machine.arrays["t10k-labels-idx1-ubyte.gz"].tolist()
    assert not machine.cache.exists() or not any(machine.cache.iterdir())


def test_apt_through_passwordless_sudo(machine, monkeypatch, capsys):
    _unreachable(machine, monkeypatch)
    _as_root(monkeypatch, False)
    sudo_log = machine.log.with_name("sudo.log")
    sudo = _script(machine.bin / "sudo", f'echo "$*" >> {sudo_log}\n[ "$1" = -n ] && shift\nexec "$@"\n')
    monkeypatch.setattr(provision, "SUDO", str(sudo))
    assert ensure_idx_dataset("fashion-mnist") == machine.debian / "fashion-mnist"
    assert sudo_log.read_text().splitlines() == [
        "-n true", f"-n {machine.apt} update -qq",
        f"-n {machine.apt} install -y -qq --no-install-recommends dataset-fashion-mnist"]
    assert f"running {sudo} -n {machine.apt} install" in capsys.readouterr().out


def test_no_apt_when_sudo_asks_for_a_password(machine, monkeypatch):
    url = _unreachable(machine, monkeypatch)
    _as_root(monkeypatch, False)
    monkeypatch.setattr(provision, "SUDO", str(_script(machine.bin / "sudo", "exit 1\n")))
    with pytest.raises(UserError) as error:
        ensure_idx_dataset("fashion-mnist")
    _assert_both_routes(str(error.value), url)
    assert "no sudo that works without a password" in str(error.value)
    assert not machine.log.exists()


def test_failing_apt_named_in_the_sentence(machine, monkeypatch):
    url = _unreachable(machine, monkeypatch)
    _as_root(monkeypatch, True)
    failing = _script(machine.bin / "apt-fails", f'echo "$*" >> {machine.log}\n[ "$1" = update ] || exit 100\n')
    monkeypatch.setenv("DARKROOM_APT_GET", str(failing))
    with pytest.raises(UserError) as error:
        ensure_idx_dataset("fashion-mnist")
    _assert_both_routes(str(error.value), url)
    assert "dataset-fashion-mnist exited with code 100" in str(error.value)
    assert len(machine.log.read_text().splitlines()) == 2


def test_demo_without_network_or_apt_stops_with_one_sentence(machine, tmp_path):
    """Through the command line a user runs: exit 2, one line on stderr naming both routes, no traceback, no training."""
    url = f"http://127.0.0.1:{_closed_port()}/"
    env = {"DARKROOM_DATA": str(machine.data), "HOME": str(machine.home), "DARKROOM_CACHE": "",
           "DARKROOM_DEBIAN_DATASETS": str(machine.debian), "DARKROOM_APT_GET": str(machine.bin / "no-such-apt-get"),
           "DARKROOM_FASHION_MNIST_URL": url}
    result = run_cli(["demo", "--quick", "--out", str(tmp_path / "demo")], env=env, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("darkroom: error: Fashion-MNIST is not on this machine")
    _assert_both_routes(lines[0].removeprefix("darkroom: error: "), url)
    assert "has no" in lines[0] and "no-such-apt-get" in lines[0]
    assert not (tmp_path / "demo" / "classifier").exists()
