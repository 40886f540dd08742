"""download() against a local HTTP server (good, corrupt, dropped, Range-ignoring), and safe_extract()
refusing archives whose members would escape the destination."""
from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from darkroom.data.download import cache_dir, download, safe_extract
from darkroom.errors import UserError

PAYLOAD = os.urandom(300_000)
MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(BaseHTTPRequestHandler):
    """Routes: /good (Range honoured), /norange (Range ignored), /drop-once and /drop-norange (the first
    request closes mid-body), /flaky (Range ignored, every request closes mid-body), /corrupt (wrong bytes)."""

    log: list[tuple[str, str | None]] = []
    drops: dict[str, int] = {}

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output quiet
        pass

    def do_GET(self) -> None:
        range_header = self.headers.get("Range")
        Handler.log.append((self.path, range_header))
        route = self.path.split("?")[0]
        if route == "/missing":
            self.send_error(404)
            return
        body = bytes(b ^ 0xFF for b in PAYLOAD[:10]) + PAYLOAD[10:] if route == "/corrupt" else PAYLOAD
        start = 0
        if range_header and route in ("/good", "/drop-once"):
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        dropping = route == "/flaky" or (route in ("/drop-once", "/drop-norange") and Handler.drops.get(route, 0) == 0)
        if dropping:
            Handler.drops[route] = Handler.drops.get(route, 0) + 1
            self.wfile.write(body[start:start + 100_000])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture()
def server():
    Handler.log.clear()
    Handler.drops.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_good_file_verified_and_moved_into_place(server, tmp_path):
    dest = tmp_path / "sub" / "data.bin"
    assert download(server + "/good", dest, md5=MD5, sha256=SHA256, progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_suffix(".bin.part").exists()
    # A verified file already in place is reused without a request.
    count = len(Handler.log)
    download(server + "/good", dest, md5=MD5, progress=False)
    assert len(Handler.log) == count


def test_wrong_checksum_refused_and_nothing_left(server, tmp_path):
    dest = tmp_path / "data.bin"
    with pytest.raises(UserError) as error:
        download(server + "/corrupt", dest, md5=MD5, progress=False)
    message = str(error.value)
    assert server + "/corrupt" in message and MD5 in message
    assert hashlib.md5(bytes(b ^ 0xFF for b in PAYLOAD[:10]) + PAYLOAD[10:]).hexdigest() in message
    assert list(tmp_path.iterdir()) == []


def test_wrong_sha256_refused(server, tmp_path):
    with pytest.raises(UserError, match="sha256"):
        download(server + "/good", tmp_path / "data.bin", sha256="0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_dropped_connection_resumed_with_range(server, tmp_path):
    dest = tmp_path / "data.bin"
    download(server + "/drop-once", dest, md5=MD5, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert Handler.log == [("/drop-once", None), ("/drop-once", "bytes=100000-")]


def test_dropped_connection_restarts_when_range_ignored(server, tmp_path):
    dest = tmp_path / "data.bin"
    download(server + "/drop-norange", dest, sha256=SHA256, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert [range_header for _, range_header in Handler.log] == [None, "bytes=100000-"]


def test_partial_file_from_earlier_run_is_resumed(server, tmp_path):
    dest = tmp_path / "data.bin"
    dest.with_suffix(".bin.part").write_bytes(PAYLOAD[:123_456])
    download(server + "/good", dest, md5=MD5, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert Handler.log == [("/good", "bytes=123456-")]


def test_stale_partial_file_restarts_from_zero(server, tmp_path):
    dest = tmp_path / "data.bin"
    dest.with_suffix(".bin.part").write_bytes(b"x" * 1000)  # wrong bytes: the resumed file fails md5
    download(server + "/good", dest, md5=MD5, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert Handler.log == [("/good", "bytes=1000-"), ("/good", None)]


def test_partial_file_restarts_when_server_ignores_range(server, tmp_path):
    dest = tmp_path / "data.bin"
    dest.with_suffix(".bin.part").write_bytes(PAYLOAD[:5000])
    download(server + "/norange", dest, md5=MD5, progress=False)
    assert dest.read_bytes() == PAYLOAD  # not PAYLOAD[:5000] + PAYLOAD
    assert Handler.log == [("/norange", "bytes=5000-")]


def test_stale_destination_is_replaced(server, tmp_path):
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"an older, different file")
    download(server + "/good", dest, md5=MD5, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_simultaneous_downloads_fetch_once(server, tmp_path):
    """torchrun ranks call download() together: the folder lock makes one fetch and the others reuse it."""
    dest = tmp_path / "data.bin"
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(download(server + "/good", dest, md5=MD5, progress=False)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [dest] * 4 and dest.read_bytes() == PAYLOAD
    assert Handler.log == [("/good", None)]


def test_oversized_partial_file_restarts_after_416(server, tmp_path):
    dest = tmp_path / "data.bin"
    dest.with_suffix(".bin.part").write_bytes(b"x" * (len(PAYLOAD) + 5))
    download(server + "/good", dest, md5=MD5, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_unverified_download_still_checks_length(server, tmp_path):
    dest = tmp_path / "data.bin"
    download(server + "/drop-once", dest, progress=False)  # no checksum: Content-Length catches the drop
    assert dest.read_bytes() == PAYLOAD
    with pytest.raises(UserError, match="/flaky"):
        download(server + "/flaky", tmp_path / "never.bin", progress=False)
    assert not (tmp_path / "never.bin").exists()


def test_network_errors_name_the_url(server, tmp_path):
    with pytest.raises(UserError, match="/missing.*404"):
        download(server + "/missing", tmp_path / "x", progress=False)
    closed = "http://127.0.0.1:9/nothing-here"  # the discard port: connection refused
    with pytest.raises(UserError, match="127.0.0.1:9/nothing-here"):
        download(closed, tmp_path / "y", progress=False)
    with pytest.raises(UserError, match="nope://x"):
        download("nope://x", tmp_path / "z", progress=False)


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DARKROOM_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("DARKROOM_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "darkroom"


# ---- archives -------------------------------------------------------------------------------------

def _tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))
    return path


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def _zip(path: Path, members: list[tuple[str, bytes]], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in members:
            bundle.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            bundle.writestr(info, target)
    return path


def _snapshot(root: Path) -> set[str]:
    """Everything under `root` except the extraction destination `root/dest` and what lies in it."""
    names = {str(path.relative_to(root)) for path in root.rglob("*")}
    return {name for name in names if name != "dest" and not name.startswith("dest/")}


@pytest.mark.parametrize("suffix", ["tar", "tar.gz", "tgz", "zip"])
def test_good_archive_extracts_inside_dest(tmp_path, suffix):
    members = [("top/a.txt", b"alpha"), ("top/sub/b.txt", b"beta"), ("./c.txt", b"gamma")]
    archive = tmp_path / f"good.{suffix}"
    if suffix == "zip":
        _zip(archive, members, symlinks={"top/link": "a.txt"})
    else:
        _tar(archive, members + [_link("top/link", "a.txt"), _link("top/hard", "top/a.txt", tarfile.LNKTYPE)],
             "w" if suffix == "tar" else "w:gz")
    dest = tmp_path / "out"
    paths = safe_extract(archive, dest)
    assert (dest / "top/a.txt").read_bytes() == b"alpha"
    assert (dest / "top/sub/b.txt").read_bytes() == b"beta"
    assert (dest / "c.txt").read_bytes() == b"gamma"
    assert (dest / "top/link").is_symlink() and (dest / "top/link").read_bytes() == b"alpha"
    assert all(str(path).startswith(str(dest.resolve())) for path in paths)
    if suffix != "zip":
        assert (dest / "top/hard").read_bytes() == b"alpha"


EVIL_TAR = {
    "dotdot": [("ok.txt", b"ok"), ("../evil", b"pwned")],
    "nested-dotdot": [("a/../../evil", b"pwned")],
    "absolute": [("/tmp/darkroom-evil-absolute", b"pwned")],
    "symlink-out": [_link("link", "../outside")],
    "symlink-absolute": [_link("link", "/etc/passwd")],
    "symlink-then-write": [_link("link", ".."), ("link/evil", b"pwned")],
    "symlink-chain": [_link("d", "."), _link("d/up", "..")],
    "hardlink-out": [_link("hard", "../outside", tarfile.LNKTYPE)],
    "device": [_link("dev", "", tarfile.CHRTYPE)],
    "fifo": [_link("pipe", "", tarfile.FIFOTYPE)],
}


@pytest.mark.parametrize("case", sorted(EVIL_TAR))
def test_malicious_tar_refused_and_nothing_written_outside(tmp_path, case):
    work = tmp_path / "work"
    work.mkdir()
    (work / "outside").write_bytes(b"victim")
    archive = _tar(tmp_path / "evil.tar.gz", EVIL_TAR[case])
    before = _snapshot(work)
    with pytest.raises(UserError) as error:
        safe_extract(archive, work / "dest")
    assert str(archive) in str(error.value)
    assert _snapshot(work) == before  # nothing new outside dest
    assert (work / "outside").read_bytes() == b"victim"
    assert not Path("/tmp/darkroom-evil-absolute").exists()


EVIL_ZIP = {
    "dotdot": ([("ok.txt", b"ok"), ("../evil", b"pwned")], None),
    "absolute": ([("/tmp/darkroom-evil-absolute", b"pwned")], None),
    "symlink-out": ([], {"link": "../outside"}),
    "symlink-absolute": ([], {"link": "/etc/passwd"}),
    "symlink-then-write": ([("link/evil", b"pwned")], {"link": ".."}),
}


@pytest.mark.parametrize("case", sorted(EVIL_ZIP))
def test_malicious_zip_refused_and_nothing_written_outside(tmp_path, case):
    work = tmp_path / "work"
    work.mkdir()
    members, symlinks = EVIL_ZIP[case]
    if case == "symlink-then-write":  # zipfile writes in order: the link first, then the file through it
        archive = tmp_path / "evil.zip"
        _zip(archive, [], symlinks)
        with zipfile.ZipFile(archive, "a") as bundle:
            bundle.writestr("link/evil", b"pwned")
    else:
        archive = _zip(tmp_path / "evil.zip", members, symlinks)
    before = _snapshot(work)
    with pytest.raises(UserError) as error:
        safe_extract(archive, work / "dest")
    assert str(archive) in str(error.value)
    assert _snapshot(work) == before
    assert not Path("/tmp/darkroom-evil-absolute").exists()


def test_refusal_names_the_member(tmp_path):
    archive = _tar(tmp_path / "evil.tgz", [("../evil", b"pwned")])
    with pytest.raises(UserError, match=r"'\.\./evil'"):
        safe_extract(archive, tmp_path / "dest")


def test_not_an_archive(tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not an archive at all")
    with pytest.raises(UserError, match="junk.tar.gz"):
        safe_extract(junk, tmp_path / "dest")
