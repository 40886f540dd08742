"""Downloads that resume and verify checksums before anything lands in place, and archive extraction
that refuses members escaping the destination (absolute paths, `..`, outside links, device files).

    path = download(url, cache_dir() / "cifar10" / "cifar-10-python.tar.gz", md5="c58f...")
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import re
import shutil
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from tqdm import tqdm

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from darkroom.errors import UserError

CHUNK = 1 << 16
ATTEMPTS = 4  # a dropped connection is resumed this many times before giving up
TIMEOUT_S = 60


def cache_dir() -> Path:
    """Where downloads go: $DARKROOM_CACHE, else ~/.cache/darkroom."""
    configured = os.environ.get("DARKROOM_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "darkroom"


def _digests(path: Path, md5: str | None, sha256: str | None) -> list[tuple[str, str, str]]:
    """(algorithm, expected, actual) for every checksum asked for."""
    wanted = [(name, expected.lower()) for name, expected in (("md5", md5), ("sha256", sha256)) if expected]
    hashers = {name: hashlib.new(name) for name, _ in wanted}
    if hashers:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(CHUNK), b""):
                for hasher in hashers.values():
                    hasher.update(block)
    return [(name, expected, hashers[name].hexdigest()) for name, expected in wanted]


def _mismatch(path: Path, md5: str | None, sha256: str | None) -> tuple[str, str, str] | None:
    for name, expected, actual in _digests(path, md5, sha256):
        if expected != actual:
            return name, expected, actual
    return None


def _fetch_once(url: str, part: Path, progress: bool) -> int | None:
    """Append the rest of `url` to `part` (resuming with a Range request); return the full size if known.

    Raises OSError (URLError, timeouts, resets, a short body) for the caller to retry.
    """
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "darkroom"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # the part is as long as or longer than the file: start over
            part.unlink()
            return _fetch_once(url, part, progress)
        raise
    with response:
        status = getattr(response, "status", None) or 200
        content_range = response.headers.get("Content-Range", "")
        resumed = offset and status == 206 and content_range.startswith(f"bytes {offset}-")
        if not resumed:
            offset = 0  # the server ignored Range (or sent an unexpected range): restart from zero
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        received = offset
        with open(part, "ab" if resumed else "wb") as handle, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=part.name.removesuffix(".part")[:40], disable=not progress,
                leave=False) as bar:
            for block in iter(lambda: response.read(CHUNK), b""):
                handle.write(block)
                received += len(block)
                bar.update(len(block))
    if total is not None and received < total:
        # http.client returns a short body silently when the connection drops; keep the part to resume
        raise ConnectionError(f"connection closed after {received} of {total} bytes")
    return total


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (flock on its descriptor; no file left behind), so that processes
    started together (torchrun ranks) download or extract into it one at a time. A no-op where flock is missing."""
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def download(url: str, dest: Path, md5: str | None = None, sha256: str | None = None, progress: bool = True) -> Path:
    """Fetch `url` to `dest` (resuming a previous `.part`), checking md5/sha256 before moving it into place.

    An existing `dest` that passes the checksums is reused without touching the network.
    """
    dest = Path(dest)
    if dest.is_file() and _mismatch(dest, md5, sha256) is None:
        return dest
    with folder_lock(dest.parent):
        if dest.is_file() and _mismatch(dest, md5, sha256) is None:  # another process just fetched it
            return dest
        return _download_locked(url, dest, md5, sha256, progress)


def _download_locked(url: str, dest: Path, md5: str | None, sha256: str | None, progress: bool) -> Path:
    part = dest.with_suffix(dest.suffix + ".part")
    restarted = False
    attempt = 0
    while True:
        resumed = part.exists() and part.stat().st_size > 0
        try:
            total = _fetch_once(url, part, progress)
        except urllib.error.HTTPError as error:
            raise UserError(f"could not download {url}: HTTP {error.code} {error.reason}") from None
        except (OSError, ValueError) as error:  # URLError, timeouts and resets are OSErrors
            attempt += 1
            if isinstance(error, ValueError) or attempt >= ATTEMPTS:
                raise UserError(f"could not download {url}: {getattr(error, 'reason', error)}") from None
            continue
        size = part.stat().st_size
        bad = _mismatch(part, md5, sha256)
        if bad is None and (total is None or size == total):
            os.replace(part, dest)
            return dest
        if resumed and not restarted:  # the resumed bytes may be stale: one clean restart from zero
            part.unlink()
            restarted = True
            continue
        part.unlink()
        if bad is None:
            raise UserError(f"download of {url} gave {size} bytes, expected {total}")
        name, expected, actual = bad
        raise UserError(f"download of {url} failed its {name} check: expected {expected}, got {actual}")


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _check_name(archive: Path, root: str, name: str) -> str:
    """The absolute target of member `name` under `root`, refusing absolute or escaping names."""
    if not name or PurePosixPath(name).is_absolute() or name.startswith("\\") or re.match(r"^[A-Za-z]:", name):
        raise UserError(f"{archive} holds member {name!r} with an absolute path; refusing to extract it")
    target = os.path.normpath(os.path.join(root, name))
    if target == root:  # "./" entries name the destination itself
        return target
    # Lexically inside, and inside once links already on disk (earlier members) are followed.
    real_parent = os.path.realpath(os.path.dirname(target))
    if not _inside(root, target) or not _inside(root, real_parent):
        raise UserError(f"{archive} holds member {name!r} that would land outside {root}; refusing to extract it")
    return target


def _check_link(archive: Path, root: str, name: str, target: str, link: str, hard: bool) -> None:
    kind = "hard link" if hard else "symlink"
    if not link or os.path.isabs(link) or PurePosixPath(link).is_absolute():
        raise UserError(f"{archive} holds {kind} {name!r} -> {link!r} to an absolute path; refusing to extract it")
    # A tar hard link names another member (relative to the archive root); a symlink is relative to its folder.
    base = root if hard else os.path.realpath(os.path.dirname(target))
    if not _inside(root, os.path.realpath(os.path.join(base, link))):
        raise UserError(f"{archive} holds {kind} {name!r} -> {link!r} pointing outside {root}; refusing to extract it")


def _verify_link(archive: Path, root: str, name: str, target: str) -> None:
    """After a symlink is made: refuse (and remove) one that loops or, as resolved on disk, leads outside."""
    if not os.path.islink(target):
        raise UserError(f"{archive} holds symlink {name!r} that did not extract as a link; refusing it")
    try:
        resolved = os.path.realpath(target, strict=True)
    except FileNotFoundError:  # dangling inside dest is harmless; resolve what exists
        resolved = os.path.realpath(target)
    except OSError:
        os.unlink(target)
        raise UserError(f"{archive} holds symlink {name!r} that loops; refusing to extract it") from None
    if not _inside(root, resolved):
        os.unlink(target)
        raise UserError(f"{archive} holds symlink {name!r} that resolves outside {root}; refusing to extract it")


def _extract_tar(archive: Path, root: str) -> list[Path]:
    try:
        tar = tarfile.open(archive)
    except (tarfile.TarError, OSError) as error:
        raise UserError(f"{archive} is not a readable tar archive ({error})") from None
    extracted = []
    with tar:
        members = tar.getmembers()
        for member in members:  # a first pass refuses a bad archive before anything is written
            target = _check_name(archive, root, member.name)
            # Only regular files, folders and links: never devices, FIFOs or unknown types.
            if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                raise UserError(f"{archive} holds device or special file {member.name!r}; refusing to extract it")
            if member.issym() or member.islnk():
                _check_link(archive, root, member.name, target, member.linkname, member.islnk())
        for member in members:  # checks again against what earlier members put on disk
            target = _check_name(archive, root, member.name)
            if member.issym() or member.islnk():
                _check_link(archive, root, member.name, target, member.linkname, member.islnk())
            if target == root and not member.isdir():
                raise UserError(f"{archive} holds member {member.name!r} that names the destination itself")
            if target == root:
                continue
            # Extract under the normalised name, so what tarfile writes is exactly the path checked above.
            member = copy.copy(member)
            member.name = os.path.relpath(target, root)
            try:
                tar.extract(member, root, set_attrs=not member.issym(), filter="data")
            except tarfile.FilterError as error:
                raise UserError(f"{archive} holds unsafe member {member.name!r} ({error}); refusing to extract it") from None
            except (OSError, tarfile.TarError) as error:  # odd but harmless names ("a/../a"), a full disk, a truncated archive
                raise UserError(f"could not extract member {member.name!r} of {archive} ({error})") from None
            if member.issym():
                _verify_link(archive, root, member.name, target)
            extracted.append(Path(target))
    return extracted


def _extract_zip(archive: Path, root: str) -> list[Path]:
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as error:
        raise UserError(f"{archive} is not a readable zip archive ({error})") from None
    extracted = []
    with bundle:
        infos = bundle.infolist()
        for second_pass in (False, True):
            for info in infos:
                target = _check_name(archive, root, info.filename)
                mode = info.external_attr >> 16  # unix st_mode when the archive was made on unix
                if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                    raise UserError(f"{archive} holds device or special file {info.filename!r}; refusing to extract it")
                link = bundle.read(info).decode("utf-8", "surrogateescape") if stat.S_ISLNK(mode) else None
                if link is not None:
                    _check_link(archive, root, info.filename, target, link, hard=False)
                if second_pass:
                    try:
                        written = _write_zip_member(bundle, info, target, link)
                    except (OSError, zipfile.BadZipFile) as error:
                        raise UserError(f"could not extract member {info.filename!r} of {archive} ({error})") from None
                    if link is not None:
                        _verify_link(archive, root, info.filename, target)
                    if target != root:
                        extracted.append(written)
    return extracted


def _write_zip_member(bundle: zipfile.ZipFile, info: zipfile.ZipInfo, target: str, link: str | None) -> Path:
    if info.is_dir():
        os.makedirs(target, exist_ok=True)
        return Path(target)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.lexists(target) and not os.path.isdir(target):
        os.unlink(target)  # never write through a link an earlier member made
    if link is not None:
        os.symlink(link, target)
    else:
        with bundle.open(info) as source, open(target, "xb") as handle:
            shutil.copyfileobj(source, handle, CHUNK)
    return Path(target)


def safe_extract(archive: Path, dest: Path) -> list[Path]:
    """Extract a .tar/.tar.gz/.tgz/.zip into `dest`, refusing (UserError) any member that could escape it."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(dest)
    if zipfile.is_zipfile(archive):
        return _extract_zip(archive, root)
    return _extract_tar(archive, root)
