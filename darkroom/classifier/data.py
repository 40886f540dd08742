"""The classifier's data: resident on the device (airbench's way), or streamed from disk by DataLoader workers for
image folders and .csv lists too big to hold. Both serve the same batches: the epoch order and the crop and flip
draws come from the run's data generator and decoding is the resident path's, so --stream changes the speed and
the memory used, not the numbers (mean and std aside: a streamed set too big to sample whole takes them from a sample).

    data = load(DataSettings("photos/", None, 1.0, 1.0, 0, 64, "auto", 4, 256, False), dist.setup("auto"))
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from darkroom import dist
from darkroom.data import folders, sources
from darkroom.data.arrays import ImageArrays
from darkroom.data.images import BadImage, center_crop, open_image, resize_shorter, shown, to_uint8_tensor
from darkroom.data.loaders import make_loader
from darkroom.data.resident import Augment, ResidentImages, alternating_flip_bits, channel_stats
from darkroom.errors import UserError

HOLDOUT = 0.1  # sources.load's test fraction of a folder or list without a test/ or val/ part
STATS_BYTES = 256 << 20  # mean/std (and the whitening stem) from at most this much decoded training set
WHITEN_IMAGES = 5000


@dataclass(frozen=True)
class DataSettings:
    """The data half of the classifier's config, passed explicitly."""
    spec: str
    root: str | None
    sample: float
    test_sample: float
    seed: int
    image_size: int | None
    stream: str  # auto | always | never
    workers: int
    batch_size: int  # global
    channels_last: bool


@dataclass
class ClassifierData:
    train: Images
    test: Images
    classes: list[str]
    source: str
    mean: torch.Tensor  # (C,) in [0, 1] units
    std: torch.Tensor
    shape: tuple[int, int, int]  # (C, H, W) of every image
    whiten_images: torch.Tensor | None  # uint8 (n, C, H, W) training images for a whitening stem; None on resume

    @property
    def streamed(self) -> bool:
        return isinstance(self.train, StreamedImages)


def load_arrays(settings: DataSettings) -> tuple[ImageArrays, ImageArrays]:
    """Both splits decoded into memory, checked to fit together."""
    train = sources.load(settings.spec, "train", settings.root, settings.sample, settings.seed, settings.image_size)
    test = sources.load(settings.spec, "test", settings.root, settings.test_sample, settings.seed, settings.image_size)
    if train.images.shape[1:] != test.images.shape[1:]:
        raise UserError(f"train images are {tuple(train.images.shape[1:])} but test images are "
                        f"{tuple(test.images.shape[1:])}; pass --image-size")
    bad = train.labels[(train.labels < 0) | (train.labels >= len(train.classes))]
    if bad.numel():
        raise UserError(f"{train.source} has label {int(bad[0])}, outside 0..{len(train.classes) - 1}")
    return train, test


def load(settings: DataSettings, info: dist.DistInfo, meta: dict | None = None) -> ClassifierData:
    """Resident or streamed train and test sets. `meta` (a checkpoint's) fixes channels, mean and std on resume."""
    name, _ = sources.parse_spec(settings.spec)
    if name not in sources.BUILTIN and settings.stream != "never":
        train = list_split(settings.spec, "train", settings.sample, settings.seed)
        test = list_split(settings.spec, "test", settings.test_sample, settings.seed)
        first = open_image(train.paths[0], None)  # its size and mode stand in for every image in the estimate
        height, width = (settings.image_size,) * 2 if settings.image_size else (first.height, first.width)
        decoded = (len(train) + len(test)) * (1 if first.mode == "L" else 3) * height * width
        if stream_wanted(settings.stream, decoded, memory_budget(info.device)):
            return load_streamed(settings, info, train, test, (height, width), meta)
    train_arrays, test_arrays = load_arrays(settings)
    mean, std = (meta["mean"], meta["std"]) if meta else channel_stats(train_arrays.images)
    common = dict(rank=info.rank, world_size=info.world_size, channels_last=settings.channels_last)
    train_set = ResidentImages(train_arrays, info.device, mean, std, settings.batch_size, **common)
    test_set = ResidentImages(test_arrays, info.device, mean, std, 1000, **common)
    return ClassifierData(train_set, test_set, train_arrays.classes, train_arrays.source, mean, std,
                          tuple(train_arrays.images.shape[1:]), train_set.images[:WHITEN_IMAGES])


def stream_wanted(stream: str, decoded_bytes: int, budget: int) -> bool:
    return stream == "always" or (stream == "auto" and decoded_bytes > budget)


def memory_budget(device: torch.device) -> int:
    """A quarter of the memory a resident set would fill: available RAM (split among this host's ranks, each of
    which decodes the set) and, on CUDA, the device's free memory."""
    budget = available_ram() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if device.type == "cuda":
        budget = min(budget, torch.cuda.mem_get_info(device)[0])
    return budget // 4


def available_ram() -> int:
    try:
        with open("/proc/meminfo") as handle:
            fields = dict(line.split(":", 1) for line in handle)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):  # not Linux: half the physical memory
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


# -- listing without decoding (the same files, labels and order as sources.load) ------------------------


@dataclass
class LabelledFiles:
    paths: list[Path]
    labels: list[int]
    classes: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index: list[int]) -> "LabelledFiles":
        return LabelledFiles([self.paths[i] for i in index], [self.labels[i] for i in index], self.classes, self.source)


def list_split(spec: str, split: str, sample: float, seed: int) -> LabelledFiles:
    """sources.load's choice of files for a folder or .csv spec: a train/ and test/ (val/, valid/) part, else a
    seeded hold-out of HOLDOUT; then the seeded `sample` (sources.split_indices, so both paths pick the same files)."""
    path = Path(spec.removeprefix("folder:").removeprefix("csv:"))
    if not path.exists():
        raise UserError(f"data path {path} does not exist")
    if path.suffix.lower() == ".csv":
        files, holdout = list_csv(path), HOLDOUT
    elif not path.is_dir():
        raise UserError(f"data path {path} is neither a folder nor a .csv file")
    else:
        parts = [path / part for part in ((split,) if split == "train" else ("test", "val", "valid"))]
        part = next((part for part in parts if part.is_dir()), None)
        files, holdout = list_class_folder(part or path), None if part else HOLDOUT
    files = files.subset(sources.split_indices(len(files), split, holdout, sample, seed))
    if len(files) == 0:
        raise UserError(f"{spec} {split} holds no images")
    return files


def list_class_folder(root: Path) -> LabelledFiles:
    """folders.read_image_folder's files and labels: one subfolder per class, class names sorted."""
    return LabelledFiles(*folders.read_image_folder(root), shown(root))


def list_csv(csv_path: Path) -> LabelledFiles:
    """folders.read_csv_list's rows; a classifier needs a label on every row."""
    paths, labels, classes = folders.read_csv_list(csv_path)
    if labels and labels[0] < 0:
        raise UserError(f"{shown(csv_path)} has no label column (expected path,label); a classifier needs a label on "
                        "every row")
    return LabelledFiles(paths, labels, classes, shown(csv_path))


# -- the streamed path ------------------------------------------------------------------------------------


class FileImages(Dataset):
    """index -> (uint8 (C, H, W), int64 label), decoded as folders.decode_files does: shorter side resized to
    `size` and centre-cropped, or (size None) left as it is and required to be `shape`'s H x W."""

    def __init__(self, files: LabelledFiles, channels: int, size: int | None, shape: tuple[int, int]) -> None:
        # fixed-width bytes, not a list of Path objects: forked workers would copy every page a refcount touches
        self.paths = np.array([os.fsencode(path) for path in files.paths])
        self.labels = torch.tensor(files.labels, dtype=torch.int64)
        self.mode, self.size, self.shape = "L" if channels == 1 else "RGB", size, shape

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        path = os.fsdecode(self.paths[index])
        image = open_image(path, None)
        if self.size:
            image = center_crop(resize_shorter(image, self.size), self.size)
        elif (image.height, image.width) != self.shape:
            raise BadImage(f"{shown(path)} is {image.width}x{image.height} but the first training image is "
                           f"{self.shape[1]}x{self.shape[0]}; pass --image-size to resize them all")
        return to_uint8_tensor(image.convert(self.mode)), self.labels[index]


class _Positions(Sampler):
    """The items this rank reads, in order: its share of each batch listed in `batches` (lists of indices)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches:
            yield from batch

    def __len__(self) -> int:
        return sum(len(batch) for batch in self.batches)


class StreamedImages:
    """FileImages behind ResidentImages' interface: DataLoader workers decode (pinned memory on CUDA), the device
    normalises and augments with ResidentImages.train_batch's draws, so both paths make the same batches."""

    def __init__(self, files: FileImages, device: torch.device, mean: torch.Tensor, std: torch.Tensor, batch_size: int,
                 rank: int, world_size: int, channels_last: bool, workers: int, seed: int) -> None:
        self.files, self.device, self.batch_size = files, device, batch_size
        self.rank, self.world_size, self.channels_last = rank, world_size, channels_last
        self.mean = (mean * 255).to(device).view(1, -1, 1, 1)
        self.std = (std * 255).to(device).view(1, -1, 1, 1)
        self.flip_bits: torch.Tensor | None = None
        self.per_rank = batch_size // world_size
        self.positions = _Positions()  # persistent workers: re-iterating the loader re-reads it
        self.loader = make_loader(files, self.per_rank, workers, False, seed, False, sampler=self.positions)
        # Fork the (persistent) workers now, before run() opens the run folder: a process forked after RunFolder took
        # its flock shares the lock, and workers outlive a SIGKILLed parent by seconds, refusing the restart.
        iter(self.loader)
        self._batches: Iterator | None = None
        self._order: torch.Tensor | None = None
        self._next_step = 0

    def __len__(self) -> int:
        return len(self.files)

    def steps_per_epoch(self) -> int:
        return len(self) // self.batch_size

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.to(self.device, non_blocking=True).float() - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def epoch_order(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(len(self), generator=generator, device=generator.device).to(self.device)

    def train_batch(self, order: torch.Tensor, step: int, epoch: int, augment: Augment,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `step` of the epoch whose permutation is `order` (ResidentImages.train_batch, draw for draw)."""
        global_index = order[step * self.batch_size:(step + 1) * self.batch_size]
        if augment.alternating_flip and self.flip_bits is None:
            self.flip_bits = alternating_flip_bits(len(self))
        crop_offsets, flips = augment.draw(global_index, epoch, generator, self.flip_bits)
        mine = slice(self.rank * self.per_rank, (self.rank + 1) * self.per_rank)
        images, labels = self._next_batch(order, step)
        x = (images.to(self.device, non_blocking=True).float() - self.mean) / self.std
        x = augment.apply(x, crop_offsets[:, mine], flips[mine])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, labels.to(self.device, non_blocking=True)

    def _next_batch(self, order: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's uint8 share of batch `step`; a new order or an unexpected step (a resume) restarts the
        workers' reading at that step, so a resumed epoch skips the batches already done without decoding them."""
        if order is not self._order or step != self._next_step:
            rows = order.cpu()[:self.steps_per_epoch() * self.batch_size].view(-1, self.batch_size)
            self.positions.batches = rows[step:, self.rank * self.per_rank:(self.rank + 1) * self.per_rank].tolist()
            self._batches, self._order = _unwrapped(self.loader), order
        self._next_step = step + 1
        return next(self._batches)

    def eval_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's share in order, un-augmented: ResidentImages.eval_batches' chunks of `batch_size`, ranks
        interleaved, read in the training batch's per-rank size (what the workers' prefetch memory is sized for)."""
        n = len(self)
        self.positions.batches = [list(range(start, min(start + batch_size, n)))
                                  for start in range(self.rank * batch_size, n, batch_size * self.world_size)]
        self._order = None  # a later train_batch restarts its reading
        for images, labels in _unwrapped(self.loader):
            yield self.normalise(images), labels.to(self.device, non_blocking=True)


Images = ResidentImages | StreamedImages  # what the training loop and evaluate() read batches from


def _unwrapped(loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The loader's batches; a BadImage raised in a worker carries the worker's traceback: keep its last line."""
    batches = iter(loader)
    while True:
        try:
            yield next(batches)
        except StopIteration:
            return
        except BadImage as error:
            lines = [line for line in str(error).strip().splitlines() if line.strip()]
            raise BadImage(lines[-1].split("BadImage: ", 1)[-1].strip() if lines else str(error)) from None


def load_streamed(settings: DataSettings, info: dist.DistInfo, train: LabelledFiles, test: LabelledFiles,
                  shape: tuple[int, int], meta: dict | None) -> ClassifierData:
    """StreamedImages for both splits. Channels, mean and std come from a seeded sample of the training files (all
    of them up to STATS_BYTES decoded: then the resident path's numbers exactly), or from `meta` on resume."""
    whiten = None
    if meta:
        channels, mean, std = meta["channels"], meta["mean"], meta["std"]
    else:
        n = min(len(train), max(1, STATS_BYTES // (3 * shape[0] * shape[1])))
        index = range(len(train)) if n == len(train) else sorted(
            torch.randperm(len(train), generator=torch.Generator().manual_seed(settings.seed))[:n].tolist())
        sample = folders.decode_files([train.paths[i] for i in index], None, settings.image_size)  # (n, C, H, W)
        channels, (mean, std), whiten = sample.shape[1], channel_stats(sample), sample[:WHITEN_IMAGES]
    common = dict(device=info.device, mean=mean, std=std, rank=info.rank, world_size=info.world_size,
                  channels_last=settings.channels_last, workers=settings.workers, seed=settings.seed)
    train_set = StreamedImages(FileImages(train, channels, settings.image_size, shape),
                               batch_size=settings.batch_size, **common)
    test_set = StreamedImages(FileImages(test, channels, settings.image_size, shape),
                              batch_size=settings.batch_size, **common)
    return ClassifierData(train_set, test_set, train.classes, train.source, mean, std, (channels, *shape), whiten)
