"""Make a built-in IDX dataset present before a long job starts (`darkroom demo` calls it first): found where it is,
else downloaded into the cache, else (Fashion-MNIST on a Debian machine without the network) installed with apt-get
as root or through passwordless sudo, else one sentence naming every route.

    folder = ensure_idx_dataset("fashion-mnist")   # $DARKROOM_APT_GET replaces apt-get (tests use a fake)
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from darkroom.data import idx
from darkroom.data.download import cache_dir, download
from darkroom.errors import UserError

DEBIAN_PACKAGES = {"fashion-mnist": "dataset-fashion-mnist"}  # MNIST has no Debian package
TITLES = {"fashion-mnist": "Fashion-MNIST", "mnist": "MNIST"}
SUDO = "sudo"


def apt_command() -> str:
    """The apt-get to run: $DARKROOM_APT_GET where set (tests point it at a fake script), else apt-get on PATH."""
    return os.environ.get("DARKROOM_APT_GET") or "apt-get"


def file_names(name: str) -> list[str]:
    """The four official .gz names of `name`: train images, train labels, test images, test labels."""
    return [gz_name for split in ("train", "test") for gz_name, _ in idx.FILES[name][split]]


def find_dataset(name: str) -> Path | None:
    """The first of $DARKROOM_DATA, the cache and the Debian folder that holds all four files (.gz or unpacked)."""
    for directory in idx.candidate_dirs(name, None):
        if all(idx.find_file(directory, gz_name) for gz_name in file_names(name)):
            return directory
    return None


def _download(name: str) -> str:
    """Fetch the four files into the cache, md5 checked; '' when done, else why not."""
    target, url = cache_dir() / name, idx.base_url(name)
    print(f"darkroom: {TITLES[name]} is not on this machine; downloading it from {url} into {target}", flush=True)
    try:
        for split in ("train", "test"):
            for gz_name, md5 in idx.FILES[name][split]:
                download(url + gz_name, target / gz_name, md5=md5)
    except UserError as error:
        return str(error)
    return ""


def _privilege() -> list[str] | None:
    """The prefix that runs a command as root: [] when already root, [sudo, -n] where sudo asks for no password,
    None where neither (then darkroom installs nothing)."""
    geteuid = getattr(os, "geteuid", None)  # missing on Windows
    if geteuid is not None and geteuid() == 0:
        return []
    sudo = shutil.which(SUDO)
    if sudo is None:
        return None
    try:
        asks = subprocess.run([sudo, "-n", "true"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=30).returncode != 0
    except (OSError, subprocess.TimeoutExpired):
        return None
    return None if asks else [sudo, "-n"]


def _apt_install(package: str) -> str:
    """`apt-get update`, then `apt-get install package`, printing each command; '' when installed, else why not."""
    apt = shutil.which(apt_command())
    if apt is None:
        return f"this machine has no {apt_command()} to install {package} with"
    prefix = _privilege()
    if prefix is None:
        return f"darkroom may not run {apt_command()} here (not root, and no sudo that works without a password)"
    print(f"darkroom: installing the Debian package {package} with apt-get instead", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # update first: a fresh machine has empty package lists; a failed update may still leave lists that work
    steps = ((["update", "-qq"], False), (["install", "-y", "-qq", "--no-install-recommends", package], True))
    for args, needed in steps:
        command = prefix + [apt, *args]
        print(f"darkroom: running {shlex.join(command)}", flush=True)
        try:
            code = subprocess.run(command, env=env, stdin=subprocess.DEVNULL).returncode
        except OSError as error:
            return f"{shlex.join(command)} could not start ({error})"
        if code != 0 and needed:
            return f"{shlex.join(command)} exited with code {code}"
    return ""


def _routes(name: str, download_error: str, apt_problem: str) -> str:
    """The one sentence for a dataset that is nowhere: where darkroom looked, what failed, and every way to fix it."""
    places = ", ".join(dict.fromkeys(str(directory) for directory in idx.candidate_dirs(name, None)))
    sentence = f"{TITLES[name]} is not on this machine (looked in {places}) and its download failed ({download_error})"
    if apt_problem:
        sentence += f", and {apt_problem}"
    routes = [f"let this machine reach {idx.base_url(name)} and run again"]
    if name in DEBIAN_PACKAGES:
        routes.append(f"install it with `sudo apt-get install {DEBIAN_PACKAGES[name]}` (Debian, Ubuntu)")
    routes.append(f"set $DARKROOM_DATA to a folder holding {', '.join(file_names(name))}")
    return f"{sentence}; to fix it, " + ", or ".join(routes)


def ensure_idx_dataset(name: str) -> Path:
    """The folder holding `name`'s four files, downloading or installing them first where needed (UserError if
    neither can be done)."""
    found = find_dataset(name)
    if found is not None:
        return found
    download_error = _download(name)
    if not download_error:
        return cache_dir() / name
    package = DEBIAN_PACKAGES.get(name)
    if package is None:
        raise UserError(_routes(name, download_error, ""))
    print(f"darkroom: {download_error}", flush=True)
    apt_problem = _apt_install(package)
    if not apt_problem:
        found = find_dataset(name)
        if found is not None:
            print(f"darkroom: {TITLES[name]} installed in {found}", flush=True)
            return found
        apt_problem = f"{package} installed, yet {idx.debian_root() / name} does not hold its four files"
    raise UserError(_routes(name, download_error, apt_problem))
