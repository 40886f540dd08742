"""The streaming path for image sets too big for memory (LSUN bedrooms, large folders): decode per item
in DataLoader workers, resize the shorter side, random crop + flip for training, centre crop for eval.

    loader = make_loader(StreamingImages(LsunImages(path), size=64, channels=3, train=True), 64, 8, True, 0, True)
"""
from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from darkroom import launch
from darkroom.data.images import BadImage, list_images, open_image, resize_shorter, shown, to_uint8_tensor
from darkroom.errors import UserError


class StreamingImages(Dataset):
    """index -> (uint8 (C, size, size), int64 label); label -1 where none was given.

    `paths_or_source`: a folder (every image under it), a list of image files, or a dataset whose items
    are PIL images (LsunImages). Undecodable items are skipped (the next one stands in, counted in
    `.skipped`, shared across workers) or raise BadImage, per `on_bad_image`.
    """

    def __init__(self, paths_or_source: str | os.PathLike | Sequence[str | os.PathLike] | Dataset, size: int,
                 channels: int = 3, train: bool = True, load_size: int | None = None, on_bad_image: str = "fail",
                 flip: bool = True, labels: Sequence[int] | None = None) -> None:
        if channels not in (1, 3):
            raise UserError(f"channels must be 1 or 3, not {channels}")
        if on_bad_image not in ("skip", "fail"):
            raise UserError(f"on_bad_image must be 'skip' or 'fail', not {on_bad_image!r}")
        self.load_size = load_size or size
        if size < 1 or self.load_size < size:
            raise UserError(f"load size {self.load_size} must be at least the crop size {size} (and both positive)")
        if isinstance(paths_or_source, (str, os.PathLike)):
            if not Path(paths_or_source).is_dir():
                raise UserError(f"image folder {shown(paths_or_source)} does not exist")
            paths_or_source = list_images(paths_or_source)
        self.source = paths_or_source if isinstance(paths_or_source, Dataset) else [Path(p) for p in paths_or_source]
        if len(self.source) == 0:
            raise UserError("the streaming image set is empty (no image files found)")
        if labels is not None and len(labels) != len(self.source):
            raise UserError(f"{len(labels)} labels given for {len(self.source)} images")
        self.labels = torch.as_tensor(labels if labels is not None else [-1] * len(self.source), dtype=torch.int64)
        self.size, self.channels, self.train, self.flip = size, channels, train, flip
        self.on_bad_image = on_bad_image
        self._skipped = multiprocessing.Value("q", 0)  # shared memory: DataLoader workers add to one counter

    def __len__(self) -> int:
        return len(self.source)

    @property
    def skipped(self) -> int:
        return self._skipped.value

    def _image(self, index: int) -> Image.Image:
        mode = "L" if self.channels == 1 else "RGB"
        if isinstance(self.source, list):
            return open_image(self.source[index], mode)
        image = self.source[index]
        return image if image.mode == mode else image.convert(mode)

    def _crop(self, image: Image.Image) -> torch.Tensor:
        x = to_uint8_tensor(resize_shorter(image, self.load_size))  # (C, H, W), min(H, W) == load_size
        height, width = x.shape[1:]
        if self.train:  # torch's RNG: DataLoader seeds it per worker from the loader's generator
            top = int(torch.randint(0, height - self.size + 1, ()))
            left = int(torch.randint(0, width - self.size + 1, ()))
        else:
            top, left = (height - self.size) // 2, (width - self.size) // 2
        x = x[:, top:top + self.size, left:left + self.size]
        if self.train and self.flip and bool(torch.rand(()) < 0.5):
            x = x.flip(-1)
        return x.contiguous()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        for step in range(len(self)):
            position = (index + step) % len(self)  # after a bad item, the next good one stands in
            try:
                return self._crop(self._image(position)), self.labels[position]
            except BadImage:
                if self.on_bad_image == "fail":
                    raise
                if step == 0:  # count each bad item once, when it is asked for itself
                    with self._skipped.get_lock():
                        self._skipped.value += 1
        raise UserError("no image in the streaming set could be decoded")


def worker_count(workers: int) -> int:
    """The DataLoader processes to start for `workers` asked for: at most this rank's share of the usable cores
    (more only contend for them, and PyTorch warns "N worker processes ... suggested max is M" above the cores)."""
    ranks_here = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return min(workers, max(1, launch.usable_cores() // ranks_here))


def make_loader(dataset: Dataset, batch_size: int, workers: int, shuffle: bool, seed: int, drop_last: bool,
                sampler: Sampler | None = None) -> DataLoader:
    """A DataLoader with a seeded order, pinned memory when CUDA is present, and workers kept alive across epochs.
    `workers` is capped by worker_count (the trainers' datasets seed each item's draws, so their batches do not
    depend on it; a bare StreamingImages draws from each worker's RNG, so its crops do).

    Pass a DistributedSampler as `sampler` under DDP (then shuffle must be False; the sampler shuffles).
    """
    if workers < 0 or batch_size < 1:
        raise UserError(f"workers must be >= 0 and batch size >= 1 (got {workers} and {batch_size})")
    workers = worker_count(workers)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      num_workers=workers, pin_memory=torch.cuda.is_available(), drop_last=drop_last,
                      persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
                      generator=torch.Generator().manual_seed(seed))
