"""The classifier's data: resident on the device (airbench's way), or streamed from disk by DataLoader workers for
image folders and .csv lists too big to hold. Both serve the same batches: the epoch order and the crop and flip
draws come from the run's data generator and decoding is the resident path's, so --stream changes the speed and
the memory used, not the numbers (mean and std aside: a streamed set too big to sample whole takes them from a sample;
and with --on-bad-image skip the resident path leaves an unreadable file out, where the next file stands in for it
in a streamed set).

    data = load(DataSettings("photos/", None, 1.0, 1.0, 0, 64, "auto", 4, 256, False), dist.setup("auto"))
"""
from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

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
    on_bad_image: str = "fail"  # fail | skip: an unreadable file of a folder or .csv list


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
    skipped_files: SkippedFiles  # both splits hold it too

    @property
    def streamed(self) -> bool:
        return isinstance(self.train, StreamedImages)


class SkippedFiles:
    """The unreadable files a run's data left out (--on-bad-image skip), each counted once: `found` while loading,
    plus those the streamed sets' DataLoader workers meet later (FileImages.skipped). len() is the count."""

    def __init__(self, found: int = 0, streams: tuple[FileImages, ...] = ()) -> None:
        self.found, self.streams = found, streams

    def __len__(self) -> int:
        return self.found + sum(files.skipped for files in self.streams)


class ResidentSplit(ResidentImages):
    """ResidentImages that carries its data set's SkippedFiles, as StreamedImages does."""

    def __init__(self, arrays: ImageArrays, device: torch.device, mean: torch.Tensor, std: torch.Tensor,
                 batch_size: int, rank: int, world_size: int, channels_last: bool, skipped_files: SkippedFiles) -> None:
        super().__init__(arrays, device, mean, std, batch_size, rank, world_size, channels_last)
        self.skipped_files = skipped_files


def say_skipped(sentences: list[str], info: dist.DistInfo, shown_at_most: int = 20) -> None:
    """Name the files left out (rank 0; a long list is cut after `shown_at_most`)."""
    if not info.is_main:
        return
    for sentence in sentences[:shown_at_most]:
        print(f"skipped {sentence} (--on-bad-image skip)", flush=True)
    if len(sentences) > shown_at_most:
        print(f"skipped {len(sentences) - shown_at_most} more unreadable files (--on-bad-image skip)", flush=True)


def unreadable(error: BadImage) -> BadImage:
    """--on-bad-image fail: the file's own sentence, with the way past it."""
    return BadImage(f"{error} (pass --on-bad-image skip to leave such files out)")


def load_arrays(settings: DataSettings, skipped: list[str] | None = None) -> tuple[ImageArrays, ImageArrays]:
    """Both splits decoded into memory, checked to fit together. A folder's or list's unreadable files stop it
    (on_bad_image fail) or are left out, their sentences added to `skipped`."""
    if sources.parse_spec(settings.spec)[0] in sources.BUILTIN:
        train = sources.load(settings.spec, "train", settings.root, settings.sample, settings.seed, settings.image_size)
        test = sources.load(settings.spec, "test", settings.root, settings.test_sample, settings.seed, settings.image_size)
    else:  # sources.load's files (list_split), each decoded or left out
        skipped = [] if skipped is None else skipped
        train = decode_split(list_split(settings.spec, "train", settings.sample, settings.seed), settings, skipped)
        test = decode_split(list_split(settings.spec, "test", settings.test_sample, settings.seed), settings, skipped)
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
        first = first_readable(train, settings.on_bad_image)  # its size and mode stand in for every image in the estimate
        height, width = (settings.image_size,) * 2 if settings.image_size else (first.height, first.width)
        decoded = (len(train) + len(test)) * (1 if first.mode == "L" else 3) * height * width
        if stream_wanted(settings.stream, decoded, memory_budget(info.device)):
            return load_streamed(settings, info, train, test, (height, width), meta)
    sentences: list[str] = []
    train_arrays, test_arrays = load_arrays(settings, sentences)
    say_skipped(sentences, info)
    skipped = SkippedFiles(found=len(sentences))
    mean, std = (meta["mean"], meta["std"]) if meta else channel_stats(train_arrays.images)
    common = dict(rank=info.rank, world_size=info.world_size, channels_last=settings.channels_last, skipped_files=skipped)
    train_set = ResidentSplit(train_arrays, info.device, mean, std, settings.batch_size, **common)
    test_set = ResidentSplit(test_arrays, info.device, mean, std, 1000, **common)
    return ClassifierData(train_set, test_set, train_arrays.classes, train_arrays.source, mean, std,
                          tuple(train_arrays.images.shape[1:]), train_set.images[:WHITEN_IMAGES], skipped)


def decode_split(files: LabelledFiles, settings: DataSettings, skipped: list[str]) -> ImageArrays:
    """The files decoded (folders.decode_files), unreadable ones stopping the run or left out and listed."""
    images, kept, bad = folders.decode_usable(files.paths, None, settings.image_size)
    if bad and settings.on_bad_image != "skip":
        raise unreadable(bad[0])
    if not kept:
        raise UserError(f"none of the {len(files)} image files of {files.source} is readable ({bad[0]})")
    skipped += [str(error) for error in bad]
    labels = torch.tensor([files.labels[index] for index in kept], dtype=torch.int64)
    return ImageArrays(images, labels, files.classes, files.source)


def first_readable(files: LabelledFiles, on_bad_image: str):
    """The first training file that decodes (a PIL image); with on_bad_image fail, the first file."""
    for path in files.paths:
        try:
            return open_image(path, None)
        except BadImage as error:
            if on_bad_image != "skip":
                raise unreadable(error) from None
    raise UserError(f"none of the {len(files)} image files of {files.source} is readable")


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
    `size` and centre-cropped, or (size None) left as it is and required to be `shape`'s H x W.

    An unreadable file raises BadImage (on_bad_image fail), or (skip) the next readable item stands in for it,
    image and label, and the file is flagged in memory shared with the DataLoader workers, so that it counts once
    (`skipped`) and the training process can name it once (`newly_skipped`)."""

    def __init__(self, files: LabelledFiles, channels: int, size: int | None, shape: tuple[int, int],
                 on_bad_image: str = "fail") -> None:
        # fixed-width bytes, not a list of Path objects: forked workers would copy every page a refcount touches
        self.paths = np.array([os.fsencode(path) for path in files.paths])
        self.labels = torch.tensor(files.labels, dtype=torch.int64)
        self.mode, self.size, self.shape = "L" if channels == 1 else "RGB", size, shape
        self.on_bad_image = on_bad_image
        self._bad = multiprocessing.Array("b", len(self.paths))  # 1 = unreadable (workers are forked: shared)
        self._count = multiprocessing.Value("q", 0, lock=False)  # flags set, under _bad's lock
        self._named: set[int] = set()  # the training process's own record of the files it has named

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def skipped(self) -> int:
        return self._count.value

    def mark_unreadable(self, index: int) -> None:
        with self._bad.get_lock():
            if not self._bad[index]:
                self._bad[index] = 1
                self._count.value += 1

    def newly_skipped(self) -> list[str]:
        """Sentences naming the files flagged since the last call (for the training process to print)."""
        if self.skipped == len(self._named):
            return []
        with self._bad.get_lock():
            flagged = np.flatnonzero(np.frombuffer(self._bad.get_obj(), dtype=np.int8)).tolist()
        sentences = []
        for index in (index for index in flagged if index not in self._named):
            self._named.add(index)
            try:
                self._decode(index)
                sentences.append(f"{shown(os.fsdecode(self.paths[index]))} could not be read")  # (since mended)
            except BadImage as error:
                sentences.append(str(error))
        return sentences

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        for step in range(len(self)):
            position = (index + step) % len(self)  # after an unreadable file, the next readable one stands in
            if self.on_bad_image == "skip" and self._bad[position]:
                continue
            try:
                return self._decode(position), self.labels[position]
            except BadImage as error:
                if self.on_bad_image != "skip":
                    raise unreadable(error) from None
                self.mark_unreadable(position)
        raise UserError(f"none of the {len(self)} image files is readable")

    def _decode(self, index: int) -> torch.Tensor:
        path = os.fsdecode(self.paths[index])
        image = open_image(path, None)
        if self.size:
            image = center_crop(resize_shorter(image, self.size), self.size)
        elif (image.height, image.width) != self.shape:
            raise BadImage(f"{shown(path)} is {image.width}x{image.height} but the first training image is "
                           f"{self.shape[1]}x{self.shape[0]}; pass --image-size to resize them all")
        return to_uint8_tensor(image.convert(self.mode))


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
                 rank: int, world_size: int, channels_last: bool, workers: int, seed: int,
                 skipped_files: SkippedFiles | None = None, say: bool = True) -> None:
        self.files, self.device, self.batch_size = files, device, batch_size
        self.skipped_files = skipped_files or SkippedFiles(streams=(files,))
        self.say = say  # name the files the workers skip (rank 0)
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
            self.flip_bits = alternating_flip_bits(len(self), self.device)
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
        batch = next(self._batches)
        self._name_skipped()
        return batch

    def _name_skipped(self) -> None:
        """Name the files the workers have left out since the last batch (here, so the lines go past the bar)."""
        for sentence in self.files.newly_skipped():
            if self.say:
                tqdm.write(f"skipped {sentence} (--on-bad-image skip)")

    def eval_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's share in order, un-augmented: ResidentImages.eval_batches' chunks of `batch_size`, ranks
        interleaved, read in the training batch's per-rank size (what the workers' prefetch memory is sized for)."""
        n = len(self)
        self.positions.batches = [list(range(start, min(start + batch_size, n)))
                                  for start in range(self.rank * batch_size, n, batch_size * self.world_size)]
        self._order = None  # a later train_batch restarts its reading
        for images, labels in _unwrapped(self.loader):
            self._name_skipped()
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
    whiten, found = None, []
    if meta:
        channels, mean, std = meta["channels"], meta["mean"], meta["std"]
    else:
        n = min(len(train), max(1, STATS_BYTES // (3 * shape[0] * shape[1])))
        index = range(len(train)) if n == len(train) else sorted(
            torch.randperm(len(train), generator=torch.Generator().manual_seed(settings.seed))[:n].tolist())
        sample, kept, bad = folders.decode_usable([train.paths[i] for i in index], None, settings.image_size)
        if bad and settings.on_bad_image != "skip":
            raise unreadable(bad[0])
        if not kept:
            raise UserError(f"none of the {len(index)} sampled image files of {train.source} is readable ({bad[0]})")
        kept_set = set(kept)
        found = list(zip([index[j] for j in range(len(index)) if j not in kept_set], bad))  # (train index, error)
        channels, (mean, std), whiten = sample.shape[1], channel_stats(sample), sample[:WHITEN_IMAGES]  # (n, C, H, W)
    files = [FileImages(split, channels, settings.image_size, shape, settings.on_bad_image) for split in (train, test)]
    skipped = SkippedFiles(streams=tuple(files))
    for position, _ in found:  # named now, as the resident path names its own
        files[0].mark_unreadable(position)
    say_skipped([sentence for sentence in files[0].newly_skipped()], info)
    common = dict(device=info.device, mean=mean, std=std, rank=info.rank, world_size=info.world_size,
                  channels_last=settings.channels_last, workers=settings.workers, seed=settings.seed,
                  skipped_files=skipped, say=info.is_main)
    train_set = StreamedImages(files[0], batch_size=settings.batch_size, **common)
    test_set = StreamedImages(files[1], batch_size=settings.batch_size, **common)
    return ClassifierData(train_set, test_set, train.classes, train.source, mean, std, (channels, *shape), whiten,
                          skipped)
