"""CIFAR-10 from its official python tarball (Python 2 pickles of numpy arrays), found or downloaded.

Lookup order: an explicit root, $DARKROOM_DATA, the user cache, else a download (md5 checked). The
pickles are read by an unpickler that can build numpy arrays and nothing else.
"""
from __future__ import annotations

import io
import os
import pickle
import shutil
import struct
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch

from darkroom.data.arrays import ImageArrays
from darkroom.data.download import cache_dir, download as fetch, folder_lock, safe_extract
from darkroom.errors import UserError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
TARBALL = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SPLITS = ("train", "test")

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's array rebuild function, whatever module it lives in
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class ArrayUnpickler(pickle.Unpickler):
    """Builds dicts, lists, numbers, bytes and numpy arrays; any other global (os.system...) is refused."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")


def read_pickle(path: Path) -> object:
    """One CIFAR batch file: a Python 2 pickle whose strings are read as bytes."""
    try:
        with open(path, "rb") as handle:
            return ArrayUnpickler(handle, encoding="bytes").load()
    except pickle.UnpicklingError as error:
        raise UserError(f"{path} is not a CIFAR-10 batch file ({error})") from None
    except Exception as error:  # noqa: BLE001 - truncated or foreign files fail in many ways
        raise UserError(f"{path} is not a readable CIFAR-10 batch file ({type(error).__name__}: {error})") from None


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """-> images uint8 (N, 3, 32, 32) and labels int64 (N,), validated."""
    batch = read_pickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise UserError(f"{path} is not a CIFAR-10 batch (expected a dict with b'data' and b'labels')")
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", type(data).__name__)
        raise UserError(f"{path} holds data of shape {shape} ({getattr(data, 'dtype', '?')}); CIFAR-10 needs uint8 (N, 3072)")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{path} holds labels that are not integers") from None
    if labels.shape != (data.shape[0],):
        raise UserError(f"{path} holds {data.shape[0]} images but {labels.size} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        bad = labels[(labels < 0) | (labels > 9)][0]
        raise UserError(f"{path} holds label {int(bad)}, outside 0..9")
    # Each row is 1024 red, then 1024 green, then 1024 blue values, each a row-major 32x32 plane.
    return data.reshape(-1, 3, 32, 32), labels


def read_classes(folder: Path) -> list[str]:
    meta_path = folder / "batches.meta"
    if not meta_path.is_file():
        return list(CLASSES)
    meta = read_pickle(meta_path)
    names = meta.get(b"label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != 10:
        raise UserError(f"{meta_path} does not hold 10 label_names")
    return [name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name) for name in names]


def batch_files(folder: Path, split: str) -> list[Path]:
    """`test_batch`, or `data_batch_1..K` in numeric order (K = 5 in the official set; tests may write fewer)."""
    if split == "test":
        return [folder / "test_batch"] if (folder / "test_batch").is_file() else []
    numbered = [path for path in folder.glob("data_batch_*") if path.name[11:].isdigit() and path.is_file()]
    return sorted(numbered, key=lambda path: int(path.name[11:]))


def _candidate_dirs(root: Path | None) -> list[Path]:
    dirs = []
    if root is not None:
        dirs += [Path(root), Path(root) / "cifar10"]
    if os.environ.get("DARKROOM_DATA"):
        dirs += [Path(os.environ["DARKROOM_DATA"]), Path(os.environ["DARKROOM_DATA"]) / "cifar10"]
    return dirs + [cache_dir() / "cifar10"]


def _extract(tarball: Path, into: Path, split: str) -> Path:
    """Extract the tarball's batch folder into `into` via a temporary folder, so a half-done extraction never
    counts; under a lock, so ranks started together extract once."""
    with folder_lock(into):
        if batch_files(into / FOLDER, split):  # another process extracted it while this one waited
            return into / FOLDER
        return _extract_locked(tarball, into)


def _extract_locked(tarball: Path, into: Path) -> Path:
    scratch = Path(tempfile.mkdtemp(prefix=".extract-", dir=into))
    try:
        safe_extract(tarball, scratch)
        if not (scratch / FOLDER).is_dir():
            raise UserError(f"{tarball} does not contain a {FOLDER}/ folder")
        final = into / FOLDER
        if final.exists():
            shutil.rmtree(final)
        os.replace(scratch / FOLDER, final)
        return final
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def locate(split: str, root: Path | None, download: bool) -> Path:
    """The extracted `cifar-10-batches-py/` folder holding `split`, extracting or downloading as needed."""
    for directory in _candidate_dirs(root):
        folder = directory / FOLDER
        if batch_files(folder, split):
            return folder
        if (directory / TARBALL).is_file():
            try:
                return _extract(directory / TARBALL, directory, split)
            except PermissionError:  # a read-only data folder: extract into the cache instead
                return _extract(directory / TARBALL, cache_dir() / "cifar10", split)
    if not download:
        where = f"in {root}" if root is not None else "(pass a data root, set $DARKROOM_DATA, or allow the download)"
        raise UserError(f"CIFAR-10 ({FOLDER}/ or {TARBALL}) not found {where}")
    target = cache_dir() / "cifar10"
    return _extract(fetch(URL, target / TARBALL, md5=MD5), target, split)


def load_cifar10(split: str, root: Path | None = None, download: bool = True) -> ImageArrays:
    """CIFAR-10 `split` ('train' 50000 or 'test' 10000 images) as uint8 (N, 3, 32, 32) with int64 labels."""
    if split not in SPLITS:
        raise UserError(f"unknown CIFAR-10 split {split!r}; choose train or test")
    folder = locate(split, root, download)
    parts = [read_batch(path) for path in batch_files(folder, split)]
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    return ImageArrays(torch.from_numpy(images), torch.from_numpy(labels), read_classes(folder), f"cifar10:{split}")


class _Python2Pickler(pickle._Pickler):
    """Writes bytes and ASCII str as Python 2 `str` opcodes, as the official batches (pickled under Python 2) do."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_python2_str(self, obj: bytes | str) -> None:
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str
    dispatch[str] = save_python2_str


def _python2_pickle(obj: object) -> bytes:
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def write_cifar10_tarball(path: Path, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                          n_train_batches: int = 5, test_images: np.ndarray | torch.Tensor | None = None,
                          test_labels: np.ndarray | torch.Tensor | None = None) -> Path:
    """Write `cifar-10-python.tar.gz` in the official layout (for tests and fixtures).

    images uint8 (N, 3, 32, 32). Without test arrays, the images are cut into n_train_batches + 1 equal
    runs and the last becomes `test_batch`, as the official 6 x 10000 split; a remainder goes to training.
    """
    images, labels = np.asarray(images, dtype=np.uint8), np.asarray(labels, dtype=np.int64)
    if test_images is None:
        n_test = len(images) // (n_train_batches + 1)
        images, test_images = images[:len(images) - n_test], images[len(images) - n_test:]
        labels, test_labels = labels[:len(labels) - n_test], labels[len(labels) - n_test:]
    test_images, test_labels = np.asarray(test_images, dtype=np.uint8), np.asarray(test_labels, dtype=np.int64)
    files = {"batches.meta": {b"num_cases_per_batch": len(test_images), b"label_names": [c.encode() for c in CLASSES],
                              b"num_vis": 3072}}
    cuts = np.array_split(np.arange(len(images)), n_train_batches)
    batches = [(f"data_batch_{i + 1}", images[cut], labels[cut], f"training batch {i + 1} of {n_train_batches}")
               for i, cut in enumerate(cuts)] + [("test_batch", test_images, test_labels, "testing batch 1 of 1")]
    for name, batch_images, batch_labels, description in batches:
        files[name] = {b"batch_label": description.encode(), b"labels": [int(label) for label in batch_labels],
                       b"data": np.ascontiguousarray(batch_images.reshape(len(batch_images), 3072)),
                       b"filenames": [f"image_{i}.png".encode() for i in range(len(batch_images))]}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, content in files.items():
            raw = _python2_pickle(content)
            info = tarfile.TarInfo(f"{FOLDER}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path
