"""Training batches for the GAN trainer: in-memory sets (built-ins, small folders, CSV lists) or streamed
ones (big folders and lists, LSUN lmdb), in [-1, 1], each rank taking its slice of every global batch.

Both kinds draw their order, crops and flips from the run's seed and their own counters only, so a
resumed run sees exactly the batches an uninterrupted one would (`state_dict` / `load_state_dict`).
"""
from __future__ import annotations

import csv
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Sampler

from darkroom.data import sources
from darkroom.data.images import IMAGE_EXTENSIONS, BadImage, center_crop, list_images, open_image, resize_shorter, shown, to_uint8_tensor
from darkroom.data.loaders import StreamingImages, make_loader
from darkroom.errors import UserError

STREAM_MAX_IMAGES = 50_000  # `--stream auto`: decode into memory up to this many files ...
STREAM_MAX_BYTES = 1 << 30  # ... and this many decoded bytes; beyond either, stream from disk


@dataclass(frozen=True)
class DataSettings:
    """The data half of the GAN config, passed explicitly (no config object crosses into this module)."""
    spec: str
    root: str | None
    sample: float
    size: int
    load_size: int  # shorter side resized to this, then a random size x size crop
    channels: int  # 0 = 1 if every image is grayscale, else 3
    flip: bool
    stream: str  # auto | always | never
    workers: int
    on_bad_image: str  # skip | fail
    allow_upscale: bool
    seed: int


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (the generator's tanh range)."""
    return x.float().div_(127.5).sub_(1.0)


class MemoryBatches:
    """A uint8 (N, C, L, L) set on `device`: seeded epoch permutations, random size x size crops, optional flips."""

    kind = "memory"

    def __init__(self, images: torch.Tensor, source: str, size: int, flip: bool, batch_size: int, rank: int,
                 world_size: int, seed: int, device: torch.device, skipped: int = 0) -> None:
        self.images = images.to(device)
        self.source, self.size, self.flip, self.device = source, size, flip, device
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        # order, crops and flips drawn on the device: no host draw and no copy per batch (a resume across device
        # types is refused, so a run's draws never change device)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.order: torch.Tensor | None = None
        self.position = 0
        self.skipped = skipped

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    def next_batch(self) -> torch.Tensor:
        """This rank's slice of the next global batch: float (B / world, C, size, size) in [-1, 1]."""
        n, b = len(self), self.batch_size
        device = self.generator.device
        if self.order is None or self.position + b > n:
            self.order, self.position = torch.randperm(n, generator=self.generator, device=device), 0
        index = self.order[self.position:self.position + b]  # (B,)
        self.position += b
        load = self.images.shape[-1]
        offsets = torch.randint(0, load - self.size + 1, (2, b), generator=self.generator, device=device)
        flips = torch.rand(b, generator=self.generator, device=device) < 0.5
        per_rank = b // self.world_size
        mine = slice(self.rank * per_rank, (self.rank + 1) * per_rank)
        x = self.images[index[mine]]  # (b, C, L, L) uint8
        if load > self.size:
            x = _crop(x, offsets[:, mine], self.size)
        if self.flip:
            x = torch.where(flips[mine][:, None, None, None], x.flip(-1), x)
        return to_unit_range(x)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        order = state["order"]  # a checkpoint loads onto the CPU
        self.order, self.position = None if order is None else order.to(self.device), state["position"]


def _crop(x: torch.Tensor, offsets: torch.Tensor, size: int) -> torch.Tensor:
    """Crop image i of x (B, C, L, L) at (offsets[0, i], offsets[1, i]) to (B, C, size, size)."""
    rows = offsets[0][:, None] + torch.arange(size, device=x.device)  # (B, size)
    cols = offsets[1][:, None] + torch.arange(size, device=x.device)
    batch = torch.arange(x.shape[0], device=x.device)[:, None, None, None]
    channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return x[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


class _GanStream(StreamingImages):
    """StreamingImages addressed by key = epoch * N + index: each item's crop and flip are seeded by its key,
    so batches do not depend on DataLoader workers or on where a run was resumed. Images whose shorter side
    is below `min_side` count as bad images (upscaled training images are blurry, usually a mistake)."""

    def __init__(self, source, settings: DataSettings, channels: int, min_side: int) -> None:
        super().__init__(source, settings.size, channels, True, settings.load_size, settings.on_bad_image, settings.flip)
        self.seed, self.min_side = settings.seed, min_side

    def _image(self, index: int) -> Image.Image:
        image = super()._image(index)
        if min(image.size) < self.min_side:
            name = shown(self.source[index]) if isinstance(self.source, list) else f"item {index}"
            raise BadImage(f"{name} is {image.width}x{image.height}, smaller than the {self.min_side}-pixel load size "
                           "(pass --allow-upscale, a smaller --image-size, or --on-bad-image skip)")
        return image

    def __getitem__(self, key: int) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(self.seed * 1_000_003 + key)
            return super().__getitem__(key % len(self))


class _RankSampler(Sampler):
    """Keys of this rank's slice of every global batch of epoch `epoch`, from global batch `start` on."""

    def __init__(self, n: int, batch_size: int, rank: int, world_size: int, seed: int) -> None:
        self.n, self.batch_size, self.rank, self.world_size, self.seed = n, batch_size, rank, world_size, seed
        self.epoch, self.start = 0, 0

    def batches_per_epoch(self) -> int:
        return self.n // self.batch_size

    def __iter__(self):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 7919 + self.epoch))
        per_rank = self.batch_size // self.world_size
        for batch in range(self.start, self.batches_per_epoch()):
            index = order[batch * self.batch_size:(batch + 1) * self.batch_size]
            for i in index[self.rank * per_rank:(self.rank + 1) * per_rank].tolist():
                yield self.epoch * self.n + i

    def __len__(self) -> int:
        return (self.batches_per_epoch() - self.start) * (self.batch_size // self.world_size)


class StreamBatches:
    """Streamed set: DataLoader workers decode, resize and crop; the loop sees float batches in [-1, 1]."""

    kind = "stream"

    def __init__(self, dataset: _GanStream, source: str, batch_size: int, rank: int, world_size: int, seed: int,
                 workers: int, device: torch.device) -> None:
        self.dataset, self.source, self.device, self.workers, self.seed = dataset, source, device, workers, seed
        self.sampler = _RankSampler(len(dataset), batch_size, rank, world_size, seed)
        if self.sampler.batches_per_epoch() == 0:
            raise UserError(f"--batch-size {batch_size} is larger than the {len(dataset)} images in {source}")
        self.per_rank = batch_size // world_size
        self.batches_done = 0  # global batches of the current epoch already served
        self._iterator = None

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def channels(self) -> int:
        return self.dataset.channels

    @property
    def skipped(self) -> int:
        inner = self.dataset.source
        return self.dataset.skipped + (inner.skipped if hasattr(inner, "skipped") else 0)

    def _start(self) -> None:
        self.sampler.start = self.batches_done
        loader = make_loader(self.dataset, self.per_rank, self.workers, False, self.seed, True, sampler=self.sampler)
        self._iterator = iter(loader)

    def next_batch(self) -> torch.Tensor:
        if self.batches_done >= self.sampler.batches_per_epoch():
            self.sampler.epoch, self.batches_done, self._iterator = self.sampler.epoch + 1, 0, None
        if self._iterator is None:
            self._start()
        try:
            x, _ = next(self._iterator)  # (b, C, size, size) uint8
        except BadImage as error:  # raised in a worker: keep only the original one-sentence message
            raise BadImage(f"{_worker_message(error)} (--on-bad-image skip skips such files)") from None
        self.batches_done += 1
        return to_unit_range(x.to(self.device, non_blocking=True))

    def state_dict(self) -> dict:
        return {"epoch": self.sampler.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.epoch, self.batches_done, self._iterator = state["epoch"], state["batches_done"], None


def _worker_message(error: Exception) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    last = lines[-1] if lines else str(error)
    return last.split("BadImage: ", 1)[-1].strip()


def is_lsun(path: Path) -> bool:
    return (path.is_dir() and (path / "data.mdb").is_file()) or path.suffix in (".mdb", ".lmdb")


def csv_paths(csv_path: Path, sample: float, seed: int) -> list[Path]:
    """The lesson's CSV: relative paths in the first column (labels, if any, ignored), header optional;
    `sample` < 1 keeps a seeded random fraction of the rows (the lesson's 10% quick-experiment CSV)."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            rows = [row[0].strip() for row in csv.reader(handle) if row and row[0].strip()]
    except FileNotFoundError:
        raise UserError(f"CSV file {shown(csv_path)} does not exist") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"CSV file {shown(csv_path)} is not a readable UTF-8 CSV ({error})") from None
    if rows and not (csv_path.parent / rows[0]).is_file() and os.path.splitext(rows[0])[1].lower() not in IMAGE_EXTENSIONS:
        rows = rows[1:]  # a header
    if not rows:
        raise UserError(f"CSV file {shown(csv_path)} lists no images")
    if sample < 1.0:
        keep = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[:max(1, round(len(rows) * sample))]
        rows = [rows[i] for i in sorted(keep.tolist())]
    return [csv_path.parent / row for row in rows]


def _decode_one(path: Path, load_size: int, min_side: int) -> Image.Image:
    image = open_image(path, None)  # 'L' for grayscale files, else 'RGB'
    if min(image.size) < min_side:
        raise BadImage(f"{shown(path)} is {image.width}x{image.height}, smaller than the {min_side}-pixel load size "
                       "(pass --allow-upscale, a smaller --image-size, or --on-bad-image skip)")
    return center_crop(resize_shorter(image, load_size), load_size)


def decode_in_memory(paths: list[Path], settings: DataSettings, min_side: int) -> tuple[torch.Tensor, int]:
    """Decode every file to uint8 (N, C, L, L); bad files fail (named) or are skipped and counted."""
    def attempt(path: Path) -> Image.Image | BadImage:
        try:
            return _decode_one(path, settings.load_size, min_side)
        except BadImage as error:
            return error

    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        decoded = list(pool.map(attempt, paths))
    bad = [item for item in decoded if isinstance(item, BadImage)]
    if bad and settings.on_bad_image == "fail":
        raise BadImage(f"{bad[0]}; {len(bad)} of {len(paths)} files are unusable (--on-bad-image skip skips them)")
    images = [item for item in decoded if not isinstance(item, BadImage)]
    if not images:
        raise UserError(f"none of the {len(paths)} image files in {settings.spec} is usable ({bad[0]})")
    channels = settings.channels or (1 if all(image.mode == "L" for image in images) else 3)
    mode = "L" if channels == 1 else "RGB"
    return torch.stack([to_uint8_tensor(image.convert(mode)) for image in images]), len(bad)


def _builtin(settings: DataSettings) -> tuple[torch.Tensor, str]:
    arrays = sources.load(settings.spec, "train", settings.root, settings.sample, settings.seed)
    images = arrays.images  # (N, C, H, W) uint8
    if settings.channels and settings.channels != images.shape[1]:
        images = images.expand(-1, 3, -1, -1) if settings.channels == 3 else images.float().mean(1, keepdim=True).round().to(torch.uint8)
    if images.shape[-1] != settings.load_size or images.shape[-2] != settings.load_size:
        chunks = [F.interpolate(chunk.float(), size=(settings.load_size, settings.load_size), mode="bilinear",
                                antialias=True, align_corners=False).round().clamp(0, 255).to(torch.uint8)
                  for chunk in images.split(4096)]
        images = torch.cat(chunks)
    return images.contiguous(), arrays.source


def image_paths(settings: DataSettings) -> list[Path]:
    path = Path(settings.spec.removeprefix("folder:").removeprefix("csv:"))
    if not path.exists():
        raise UserError(f"data path {shown(path)} does not exist")
    if path.suffix.lower() == ".csv":
        return csv_paths(path, settings.sample, settings.seed)
    if not path.is_dir():
        raise UserError(f"data path {shown(path)} is neither a folder, a .csv list nor an LSUN lmdb")
    paths = list_images(path)
    if not paths:
        raise UserError(f"image folder {shown(path)} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    if settings.sample < 1.0:
        keep = torch.randperm(len(paths), generator=torch.Generator().manual_seed(settings.seed))
        paths = [paths[i] for i in sorted(keep[:max(1, round(len(paths) * settings.sample))].tolist())]
    return paths


def _peek_channels(paths: list[Path]) -> int:
    """Streaming with --channels 0: grayscale only if the first readable files all are."""
    modes = []
    for path in paths[:16]:
        try:
            modes.append(open_image(path, None).mode)
        except BadImage:
            continue
    return 1 if modes and all(mode == "L" for mode in modes) else 3


def build_batches(settings: DataSettings, batch_size: int, rank: int, world_size: int, device: torch.device):
    """MemoryBatches or StreamBatches for `settings.spec` (built-in name, folder, .csv or LSUN lmdb)."""
    name, _ = sources.parse_spec(settings.spec)
    min_side = 0 if settings.allow_upscale else settings.load_size
    common = dict(batch_size=batch_size, rank=rank, world_size=world_size, seed=settings.seed)
    if name in sources.BUILTIN:
        images, source = _builtin(settings)
        return MemoryBatches(images, source, settings.size, settings.flip, device=device, **common)
    path = Path(settings.spec.removeprefix("folder:").removeprefix("csv:"))
    if is_lsun(path):
        from darkroom.data.lsun import LsunImages

        channels = settings.channels or 3
        lsun = LsunImages(path, "L" if channels == 1 else "RGB", settings.on_bad_image)
        dataset = _GanStream(lsun, settings, channels, min_side)
        return StreamBatches(dataset, shown(path), workers=settings.workers, device=device, **common)
    paths = image_paths(settings)
    channels = settings.channels or 3
    decoded_bytes = len(paths) * channels * settings.load_size ** 2
    stream = settings.stream == "always" or (
        settings.stream == "auto" and (len(paths) > STREAM_MAX_IMAGES or decoded_bytes > STREAM_MAX_BYTES))
    if stream:
        channels = settings.channels or _peek_channels(paths)
        dataset = _GanStream(paths, settings, channels, min_side)
        return StreamBatches(dataset, shown(path), workers=settings.workers, device=device, **common)
    images, skipped = decode_in_memory(paths, settings, min_side)
    if images.shape[0] < batch_size:
        raise UserError(f"--batch-size {batch_size} is larger than the {images.shape[0]} usable images in {shown(path)}")
    return MemoryBatches(images, shown(path), settings.size, settings.flip, device=device, skipped=skipped, **common)
