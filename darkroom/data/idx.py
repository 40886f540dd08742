"""Fashion-MNIST and MNIST from their IDX files (.gz or raw), found or downloaded with checksums.

Lookup order: an explicit path, $DARKROOM_DATA/<name>, the user cache, the Debian package's path
(/usr/share/datasets/<name>, or $DARKROOM_DEBIAN_DATASETS/<name>), else a download from the official URLs (or the
mirror in $DARKROOM_FASHION_MNIST_URL / $DARKROOM_MNIST_URL), md5 checked before use.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from darkroom.data.arrays import ImageArrays
from darkroom.errors import UserError

FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
MNIST_CLASSES = [str(digit) for digit in range(10)]

# (file name, md5 of the official .gz): the checksums the datasets' authors publish.
FILES = {
    "fashion-mnist": {
        "url": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "train": (("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
                  ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe")),
        "test": (("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
                 ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310")),
    },
    "mnist": {
        "url": "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "train": (("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
                  ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432")),
        "test": (("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
                 ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c")),
    },
}
CLASSES = {"fashion-mnist": FASHION_CLASSES, "mnist": MNIST_CLASSES}
DEBIAN_ROOT = Path("/usr/share/datasets")  # where Debian's dataset-* packages put their files
# a mirror (base URL ending in /) replacing the official one; the md5s above still apply
MIRROR_ENV = {"fashion-mnist": "DARKROOM_FASHION_MNIST_URL", "mnist": "DARKROOM_MNIST_URL"}


def debian_root() -> Path:
    """The Debian datasets folder: $DARKROOM_DEBIAN_DATASETS (tests use a temporary one), else DEBIAN_ROOT."""
    configured = os.environ.get("DARKROOM_DEBIAN_DATASETS")
    return Path(configured) if configured else DEBIAN_ROOT


def base_url(name: str) -> str:
    """Where `name`'s .gz files are downloaded from: its mirror variable if set, else the official URL."""
    mirror = os.environ.get(MIRROR_ENV[name])
    return mirror.rstrip("/") + "/" if mirror else FILES[name]["url"]


def candidate_dirs(name: str, root: Path | None) -> list[Path]:
    from darkroom.data.download import cache_dir

    dirs = []
    if root is not None:
        dirs += [Path(root), Path(root) / name]
    if os.environ.get("DARKROOM_DATA"):
        dirs += [Path(os.environ["DARKROOM_DATA"]) / name, Path(os.environ["DARKROOM_DATA"])]
    dirs += [cache_dir() / name, debian_root() / name]
    return dirs


def find_file(directory: Path, gz_name: str) -> Path | None:
    for candidate in (directory / gz_name, directory / gz_name[:-3]):
        if candidate.is_file():
            return candidate
    return None


def locate(name: str, split: str, root: Path | None, download: bool) -> tuple[Path, Path]:
    """Paths of (images, labels) for one split, downloading into the cache if nowhere else has them."""
    files = FILES[name][split]
    for directory in candidate_dirs(name, root):
        found = [find_file(directory, gz_name) for gz_name, _ in files]
        if all(found):
            return found[0], found[1]
    if root is not None and not download:
        raise UserError(f"{name} {split} files ({files[0][0]}, {files[1][0]}) not found in {root}")
    if not download:
        raise UserError(f"{name} not found: pass --data-root, set $DARKROOM_DATA, or install the Debian package dataset-{name}")
    from darkroom.data.download import cache_dir, download as fetch

    target = cache_dir() / name
    paths = [fetch(base_url(name) + gz_name, target / gz_name, md5=md5) for gz_name, md5 in files]
    return paths[0], paths[1]


def read_idx(path: Path, expected_dims: int) -> np.ndarray:
    """Parse an IDX file: magic 0x0000 0x08 <ndim>, big-endian int32 sizes, then uint8 data."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise UserError(f"{path} is unreadable or truncated ({error})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] != expected_dims:
        raise UserError(f"{path} is not a uint8 IDX file with {expected_dims} dimensions (bad magic number)")
    header = 4 + 4 * expected_dims
    if len(raw) < header:
        raise UserError(f"{path} is truncated inside its header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(expected_dims))
    count = int(np.prod(shape))
    if len(raw) - header != count:
        raise UserError(f"{path} declares shape {shape} ({count} bytes) but holds {len(raw) - header} bytes of data")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_idx_dataset(name: str, split: str, root: Path | None = None, download: bool = True) -> ImageArrays:
    """Fashion-MNIST or MNIST `split` ('train' or 'test') as uint8 (N, 1, 28, 28) with int64 labels."""
    if name not in FILES:
        raise UserError(f"unknown IDX dataset {name!r}; choose fashion-mnist or mnist")
    if split not in ("train", "test"):
        raise UserError(f"unknown split {split!r} for {name}; choose train or test")
    images_path, labels_path = locate(name, split, root, download)
    images = read_idx(images_path, 3)
    labels = read_idx(labels_path, 1)
    if images.shape[0] != labels.shape[0]:
        raise UserError(f"{images_path} holds {images.shape[0]} images but {labels_path} holds {labels.shape[0]} labels")
    if labels.size and labels.max() >= len(CLASSES[name]):
        raise UserError(f"{labels_path} holds label {int(labels.max())}, outside 0..{len(CLASSES[name]) - 1}")
    return ImageArrays(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)),
                       list(CLASSES[name]), f"{name}:{split}")
