"""CycleGAN's two unpaired image domains: where they come from, how they are checked, and the batches.

Sources: two Fashion-MNIST (or MNIST, CIFAR-10) classes in memory, a `trainA/ trainB/` folder or .zip,
an official dataset name or URL (downloaded with a checksum, extracted safely), or two arbitrary folders.
Every item is resized to the load size, randomly cropped and flipped (as the reference), with its random
draws seeded by (seed, domain, epoch, position): the same batches whatever the workers, ranks or resumes.
"""
from __future__ import annotations

import hashlib
import os
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from darkroom.data import sources
from darkroom.data.images import BadImage, IMAGE_EXTENSIONS, list_images, shown
from darkroom.data.loaders import StreamingImages
from darkroom.errors import UserError

OFFICIAL_BASE = "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets"
# The sets the reference's download script knows. No sha256 is published for them, and this checkout was
# written without network access, so none is pinned here: pass --sha256 to verify one; unpinned downloads
# are still checked against the zip's own CRCs, and their sha256 is printed so it can be pinned.
OFFICIAL_SHA256: dict[str, str | None] = {name: None for name in (
    "apple2orange", "summer2winter_yosemite", "horse2zebra", "monet2photo", "cezanne2photo", "ukiyoe2photo",
    "vangogh2photo", "maps", "cityscapes", "facades", "iphone2dslr_flower", "ae_photos", "mini", "mini_pix2pix",
    "mini_colorization", "grumpifycat")}
GRAYSCALE_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")


@dataclass
class DomainFiles:
    """One domain before decoding: image files, or images in memory (uint8 (N, C, H, W))."""
    name: str
    paths: list[Path] | None = None
    arrays: torch.Tensor | None = None
    left_out: list[str] = field(default_factory=list)  # why each unreadable file was left out (--on-bad-image skip)

    def __len__(self) -> int:
        return len(self.paths) if self.paths is not None else self.arrays.shape[0]

    def subset(self, index: list[int], left_out: list[str] | None = None) -> "DomainFiles":
        """The items at `index`; `left_out` (default: this domain's) goes with them."""
        left_out = self.left_out if left_out is None else left_out
        if self.paths is not None:
            return DomainFiles(self.name, paths=[self.paths[i] for i in index], left_out=left_out)
        return DomainFiles(self.name, arrays=self.arrays[index], left_out=left_out)


class TensorImages(Dataset):
    """uint8 (N, C, H, W) in memory -> PIL images, so in-memory sets take the same resize/crop path as files."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> Image.Image:
        image = self.images[index]  # (C, H, W)
        if image.shape[0] == 1:
            return Image.fromarray(image[0].numpy(), "L")
        return Image.fromarray(image.permute(1, 2, 0).numpy(), "RGB")


# -- finding the domains -------------------------------------------------------------------------------


def resolve_domains(data: str, data_a: str | None, data_b: str | None, data_root: str | None,
                    sha256: str | None, download_base: str, progress: bool) -> tuple[DomainFiles, DomainFiles, str]:
    """The training images of domains A and B, and a description of where they came from."""
    if data_a or data_b:
        if not (data_a and data_b):
            raise UserError("--data-a and --data-b go together: pass both folders")
        return _folder_domain(data_a, "--data-a"), _folder_domain(data_b, "--data-b"), f"{data_a} <-> {data_b}"
    name, classes = sources.parse_spec(data)
    if name in sources.BUILTIN:
        if len(classes) != 2:
            raise UserError(f"--data {data} must name exactly two classes, as in fashion-mnist:sneaker,ankle-boot")
        train = sources.load(data, "train", data_root)
        return (DomainFiles(classes[0], arrays=train.images[train.labels == 0]),
                DomainFiles(classes[1], arrays=train.images[train.labels == 1]), data)
    if re.match(r"^https?://", data):
        root = fetch_zip(data, sha256, progress)
    elif data in OFFICIAL_SHA256 and not Path(data).exists():
        root = fetch_zip(f"{download_base.rstrip('/')}/{data}.zip", sha256 or OFFICIAL_SHA256[data], progress)
    else:
        root = Path(data)
    from darkroom.data.folders import UnpairedFolders
    folders = UnpairedFolders(root)
    return (DomainFiles(shown(folders.folders[("train", "A")]), paths=folders.paths("train", "A")),
            DomainFiles(shown(folders.folders[("train", "B")]), paths=folders.paths("train", "B")), shown(folders.root))


BUILTIN_SIDES = {"fashion-mnist": 28, "mnist": 28, "cifar10": 32}  # px


def native_side(data: str, data_a: str | None, data_b: str | None, probe: int = 16) -> int | None:
    """The domains' image size where it is known without downloading or decoding: the built-in sets' 28 or 32 px,
    else the largest shorter side among the first `probe` files of each local folder (headers only); None for a
    dataset not on disk yet (a URL or an official name) or a folder that cannot be read (the run says why later)."""
    if data_a or data_b:
        roots = [Path(folder) for folder in (data_a, data_b) if folder]
    else:
        name, _ = sources.parse_spec(data)
        if name in BUILTIN_SIDES:
            return BUILTIN_SIDES[name]
        root = Path(data)
        roots = [root / "trainA", root / "trainB"] if root.is_dir() else []
    sides = []
    for root in roots:
        if not root.is_dir():
            return None
        for path in list_images(root)[:probe]:
            try:
                with Image.open(path) as image:
                    sides.append(min(image.size))
            except Exception:  # noqa: BLE001 - a bad file is the data checks' to name, with the flag at fault
                continue
    return max(sides) if sides else None


def _folder_domain(folder: str, flag: str) -> DomainFiles:
    path = Path(folder)
    if not path.is_dir():
        raise UserError(f"{flag} {folder} does not exist or is not a folder")
    paths = list_images(path)
    if not paths:
        raise UserError(f"{flag} {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return DomainFiles(shown(path), paths=paths)


def fetch_zip(url: str, sha256: str | None, progress: bool) -> Path:
    """Download a dataset zip into the cache (resumable, checksummed) and test its CRCs; returns the zip path."""
    from darkroom.data.download import cache_dir, download

    name = url.rstrip("/").rsplit("/", 1)[-1]
    if not name.lower().endswith(".zip"):
        raise UserError(f"--data {url} must name a .zip file (the official CycleGAN layout)")
    path = download(url, cache_dir() / "cyclegan" / name, sha256=sha256, progress=progress)
    try:
        with zipfile.ZipFile(path) as bundle:
            broken = bundle.testzip()
    except (zipfile.BadZipFile, OSError) as error:
        path.unlink(missing_ok=True)
        raise UserError(f"download of {url} is not a readable zip archive ({error}); it was removed") from None
    if broken is not None:
        path.unlink(missing_ok=True)
        raise UserError(f"download of {url} is corrupt (member {broken} fails its CRC check); it was removed")
    if sha256 is None:
        hasher = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(block)
        actual = hasher.hexdigest()
        print(f"note: no published checksum for {name}; verified its zip CRCs only; sha256 {actual} "
              f"(pass --sha256 to pin it)")
    return path


# -- checking the images -------------------------------------------------------------------------------


def _probe(path: Path) -> str:
    """The file's Pillow mode from its header (cheap): a corrupt or unreadable file fails here, named."""
    try:
        with Image.open(path) as image:
            if image.width == 0 or image.height == 0:
                raise BadImage(f"{shown(path)} is an image of zero size")
            return image.mode
    except BadImage:
        raise
    except Exception as error:  # noqa: BLE001 - Pillow raises many types on bad bytes
        detail = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        raise BadImage(f"{shown(path)} is not a readable image ({detail})") from None


def _probe_or_error(path: Path) -> str | BadImage:
    try:
        return _probe(path)
    except BadImage as error:
        return error


def check_domain(domain: DomainFiles, channels: str, label: str, on_bad_image: str) -> tuple[int, DomainFiles, int]:
    """(1 or 3, the domain, unreadable files dropped): channels as asked, else what every file of the domain is; a
    domain mixing grayscale and colour is an error. A file whose header does not decode stops the run naming it, or
    with on_bad_image "skip" is left out and counted (a domain left with none is an error)."""
    if domain.arrays is not None:
        return (int(channels) if channels != "auto" else domain.arrays.shape[1]), domain, 0
    with ThreadPoolExecutor(8) as pool:
        probed = list(pool.map(_probe_or_error, domain.paths))
    bad = [index for index, mode in enumerate(probed) if isinstance(mode, BadImage)]
    if bad and on_bad_image != "skip":
        raise UserError(f"{probed[bad[0]]} (pass --on-bad-image skip to leave such files out)")
    if len(bad) == len(probed):
        raise UserError(f"domain {label} has no readable image: {probed[0]}")
    if bad:
        kept = [index for index in range(len(probed)) if not isinstance(probed[index], BadImage)]
        left_out = [str(probed[index]) for index in bad]
        domain, probed = domain.subset(kept, left_out), [probed[index] for index in kept]
        if int(os.environ.get("RANK", "0")) == 0:  # rank 0 names them (the trainer prints the count)
            for sentence in left_out:
                print(f"skipped {sentence} (domain {label}, --on-bad-image skip)", flush=True)
    if channels != "auto":
        return int(channels), domain, len(bad)
    gray = [path for path, mode in zip(domain.paths, probed) if mode in GRAYSCALE_MODES]
    colour = [path for path, mode in zip(domain.paths, probed) if mode not in GRAYSCALE_MODES]
    if gray and colour:
        raise UserError(f"domain {label} mixes grayscale ({shown(gray[0])}) and colour ({shown(colour[0])}) images; "
                        "pass --channels 1 or --channels 3 to convert them all")
    return (1 if gray else 3), domain, len(bad)


def split_validation(domain: DomainFiles, count: int, seed: int, label: str) -> tuple[DomainFiles, DomainFiles | None]:
    """A seeded hold-out of `count` training images (for sample grids and validation metrics; never test images)."""
    count = min(count, len(domain) // 10)
    if count < 1:
        return domain, None
    order = torch.randperm(len(domain), generator=torch.Generator().manual_seed(seed + (label == "B"))).tolist()
    return domain.subset(sorted(order[count:])), domain.subset(sorted(order[:count]), left_out=[])  # counted once


class DomainImages(StreamingImages):
    """StreamingImages whose `skipped` also counts the domain's files check_domain left out (the metrics line's
    skipped_images: every unreadable file, whether its header or its pixels failed)."""

    def __init__(self, domain: DomainFiles, crop_size: int, load_size: int, channels: int, train: bool, flip: bool,
                 on_bad_image: str) -> None:
        source = domain.paths if domain.paths is not None else TensorImages(domain.arrays)
        super().__init__(source, size=crop_size, channels=channels, train=train, load_size=load_size,
                         on_bad_image=on_bad_image, flip=flip)
        self.left_out = len(domain.left_out)

    @property
    def skipped(self) -> int:
        return self.left_out + super().skipped


def streaming(domain: DomainFiles, crop_size: int, load_size: int, channels: int, train: bool, flip: bool,
              on_bad_image: str) -> DomainImages:
    return DomainImages(domain, crop_size, load_size, channels, train, flip, on_bad_image)


def fixed_images(dataset: StreamingImages, limit: int) -> torch.Tensor:
    """The first `limit` items, centre-cropped (train=False): uint8 (n, C, crop, crop)."""
    return torch.stack([dataset[i][0] for i in range(min(limit, len(dataset)))])


# -- batches -------------------------------------------------------------------------------------------


def _item_seed(seed: int, domain: int, epoch: int, position: int) -> int:
    return (((seed * 1_000_003 + domain) * 100_003 + epoch) * 10_000_019 + position) % (2 ** 63 - 1)


def epoch_order(n_items: int, length: int, seed: int, domain: int, epoch: int) -> torch.Tensor:
    """`length` item indices: shuffled passes over the domain, as many as an epoch of max(|A|, |B|) needs."""
    generator = torch.Generator().manual_seed(_item_seed(seed, domain, epoch, 0) ^ 0x5EED)
    passes = -(-length // n_items)
    return torch.cat([torch.randperm(n_items, generator=generator) for _ in range(passes)])[:length]


class PairSampler(Sampler):
    """Yields ((seed, index) of A, (seed, index) of B) for this rank's share of steps [start, steps_per_epoch).

    Global step s covers epoch positions [s*B, (s+1)*B); rank r takes a contiguous slice of B / world_size,
    so the union over ranks is exactly the one-process batch.
    """

    def __init__(self, sizes: tuple[int, int], steps_per_epoch: int, batch_size: int, rank: int, world_size: int,
                 seed: int) -> None:
        self.sizes, self.steps_per_epoch, self.seed = sizes, steps_per_epoch, seed
        self.batch_size, self.local = batch_size, batch_size // world_size
        self.rank = rank
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start) * self.local

    def __iter__(self):
        length = self.steps_per_epoch * self.batch_size
        orders = [epoch_order(n, length, self.seed, domain, self.epoch) for domain, n in enumerate(self.sizes)]
        for step in range(self.start, self.steps_per_epoch):
            for j in range(self.local):
                position = step * self.batch_size + self.rank * self.local + j
                yield tuple((_item_seed(self.seed, domain, self.epoch, position + 1), int(orders[domain][position]))
                            for domain in (0, 1))


class PairItems(Dataset):
    """((seed_a, i), (seed_b, j)) -> (image_a, image_b, error): crops and flips drawn from the item's own seed.

    A file that fails to decode comes back as zeros with its error sentence, for the loop to report cleanly
    (an exception raised in a DataLoader worker would reach the user as a multi-line traceback).
    """

    def __init__(self, a: StreamingImages, b: StreamingImages) -> None:
        self.domains = (a, b)

    def __len__(self) -> int:
        return max(len(domain) for domain in self.domains)

    def __getitem__(self, key: tuple) -> tuple[torch.Tensor, torch.Tensor, str]:
        images, errors = [], []
        for dataset, (seed, index) in zip(self.domains, key):
            with torch.random.fork_rng(devices=[]):
                # the CPU generator only (what fork_rng(devices=[]) restores): torch.manual_seed would also
                # reseed CUDA's generator on every item, outside the fork
                torch.default_generator.manual_seed(seed)
                try:
                    images.append(dataset[index][0])
                except BadImage as error:
                    images.append(torch.zeros(dataset.channels, dataset.size, dataset.size, dtype=torch.uint8))
                    errors.append(str(error))
        return images[0], images[1], errors[0] if errors else ""
