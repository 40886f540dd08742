"""LSUN scene sets (bedrooms...) from their published lmdb: keys -> encoded WebP/JPEG/PNG bytes.

    images = LsunImages("bedroom_train_lmdb")   # a folder holding data.mdb
    image = images[0]                           # PIL 'RGB'; feed it to loaders.StreamingImages
"""
from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
from pathlib import Path

import lmdb
import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from darkroom.data.images import BadImage, decode_image, shown
from darkroom.errors import UserError

BAD_IMAGE_POLICIES = ("skip", "fail")
_OPEN: dict[str, tuple[int, lmdb.Environment]] = {}  # real path -> (pid that opened it, environment)


def open_environment(path: Path) -> lmdb.Environment:
    """One read-only environment per database per process (py-lmdb refuses a second open in one process).

    One inherited across a fork (DataLoader workers) is closed in the child and opened afresh, as LMDB
    asks: an environment must not be used in a process other than the one that opened it.
    """
    if not path.exists():
        raise UserError(f"LSUN lmdb {shown(path)} does not exist")
    key = os.path.realpath(path)
    opened = _OPEN.get(key)
    if opened is not None and opened[0] == os.getpid():
        return opened[1]
    if opened is not None:
        opened[1].close()
    try:
        environment = lmdb.open(key, subdir=not path.is_file(), readonly=True, lock=False, readahead=False,
                                meminit=False, max_readers=256)
    except lmdb.Error as error:
        raise UserError(f"{shown(path)} is not a readable lmdb database ({error})") from None
    _OPEN[key] = (os.getpid(), environment)
    return environment


class LsunImages(Dataset):
    """Map-style dataset over an LSUN lmdb: index -> decoded PIL image in `mode`.

    on_bad_image 'skip' serves the next decodable value instead and counts the skip in `.skipped`
    (shared with DataLoader workers); 'fail' raises BadImage naming the key.
    """

    def __init__(self, path: str | os.PathLike, mode: str = "RGB", on_bad_image: str = "fail") -> None:
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise UserError(f"on_bad_image must be 'skip' or 'fail', not {on_bad_image!r}")
        self.path = Path(path)
        self.mode = mode
        self.on_bad_image = on_bad_image
        self._skipped = multiprocessing.Value("q", 0)  # shared memory: workers add to the same counter
        with self._environment().begin() as transaction:
            keys = list(transaction.cursor().iternext(keys=True, values=False))
        if not keys:
            raise UserError(f"LSUN lmdb {shown(self.path)} holds no entries")
        # Millions of keys: one fixed-width numpy array instead of millions of bytes objects
        # (numpy strips trailing NULs, so keys ending in NUL stay a list).
        self.keys: np.ndarray | list[bytes] = keys if any(key.endswith(b"\0") for key in keys) else np.array(keys, dtype=bytes)

    def _environment(self) -> lmdb.Environment:
        return open_environment(self.path)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def skipped(self) -> int:
        return self._skipped.value

    def key(self, index: int) -> bytes:
        return bytes(self.keys[index])

    def _decode(self, index: int) -> Image.Image:
        key = self.key(index)
        name = f"{shown(self.path)} key {key.decode('ascii', 'replace')}"
        with self._environment().begin() as transaction:
            value = transaction.get(key)
        if value is None:
            raise BadImage(f"{name} has no value")
        return decode_image(value, name, self.mode)

    def __getitem__(self, index: int) -> Image.Image:
        try:
            return self._decode(index)
        except BadImage:
            if self.on_bad_image == "fail":
                raise
        with self._skipped.get_lock():
            self._skipped.value += 1
        for step in range(1, len(self)):  # the next decodable value stands in, so batches keep their size
            try:
                return self._decode((index + step) % len(self))
            except BadImage:
                continue
        raise UserError(f"LSUN lmdb {shown(self.path)} holds no decodable image")


def write_lsun_lmdb(path: str | os.PathLike, images: list[Image.Image | bytes], format: str = "WEBP") -> Path:
    """Write an lmdb in LSUN's layout: 40-hex-digit keys -> encoded images (for tests).

    Keys start with the item's position in hex so that index i reads back images[i]; the rest is the
    value's sha1, as in LSUN. A bytes item is stored as given (to plant undecodable values).
    """
    values = []
    for image in images:
        if isinstance(image, bytes):
            values.append(image)
            continue
        buffer = io.BytesIO()
        image.save(buffer, format)
        values.append(buffer.getvalue())
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path), map_size=max(1 << 20, 4 * sum(len(value) for value in values) + (1 << 20)))
    with env.begin(write=True) as transaction:
        for position, value in enumerate(values):
            key = (f"{position:08x}" + hashlib.sha1(value).hexdigest()[8:]).encode()
            transaction.put(key, value)
    env.close()
    return path
