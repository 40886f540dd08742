"""Image sets on disk read into memory: a folder with one subfolder per class, a CSV of
`relative_path,label` rows (the lesson's format), and CycleGAN's unpaired `trainA/ trainB/ testA/ testB/`.
"""
from __future__ import annotations

import csv
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image

from darkroom.data.arrays import ImageArrays
from darkroom.data.images import IMAGE_EXTENSIONS, BadImage, center_crop, list_images, open_image, resize_shorter, shown, to_uint8_tensor
from darkroom.errors import UserError

DECODE_THREADS = min(8, os.cpu_count() or 1)  # Pillow releases the GIL while decoding


def _load_one(path: Path, size: int | None) -> Image.Image:
    image = open_image(path, None)  # 'L' for grayscale files, else 'RGB'
    return center_crop(resize_shorter(image, size), size) if size else image


def decode_files(paths: list[Path], channels: int | None, size: int | None) -> torch.Tensor:
    """Image files -> uint8 (N, C, H, W). channels None: 1 if every file is grayscale, else 3.

    Without `size` every image must already share one size; with it, shorter side resized + centre crop.
    The first file that does not decode raises its BadImage.
    """
    decoded = _decode_each(paths, channels, size)
    bad = next((image for image in decoded if isinstance(image, BadImage)), None)
    if bad is not None:
        raise bad
    return _stack(paths, decoded, channels, size)


def decode_usable(paths: list[Path], channels: int | None, size: int | None
                  ) -> tuple[torch.Tensor, list[int], list[BadImage]]:
    """decode_files of the files that decode: (their images, their indices in `paths`, the others' BadImage)."""
    decoded = _decode_each(paths, channels, size)
    kept = [index for index, image in enumerate(decoded) if not isinstance(image, BadImage)]
    images = _stack([paths[index] for index in kept], [decoded[index] for index in kept], channels, size)
    return images, kept, [image for image in decoded if isinstance(image, BadImage)]


def _attempt(path: Path, size: int | None) -> Image.Image | BadImage:
    try:
        return _load_one(path, size)
    except BadImage as error:
        return error


def _decode_each(paths: list[Path], channels: int | None, size: int | None) -> list[Image.Image | BadImage]:
    if channels not in (None, 1, 3):
        raise UserError(f"channels must be 1 or 3, not {channels}")
    if size is not None and size < 1:
        raise UserError(f"image size must be positive, not {size}")
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        return list(pool.map(lambda path: _attempt(path, size), paths))


def _stack(paths: list[Path], images: list[Image.Image], channels: int | None, size: int | None) -> torch.Tensor:
    if not images:
        return torch.zeros((0, channels or 3, size or 0, size or 0), dtype=torch.uint8)
    first = images[0].size
    for path, image in zip(paths, images):
        if image.size != first:
            raise UserError(f"{shown(path)} is {image.width}x{image.height} but {shown(paths[0])} is "
                            f"{first[0]}x{first[1]}; pass an image size to resize them all")
    if channels is None:
        channels = 1 if all(image.mode == "L" for image in images) else 3
    mode = "L" if channels == 1 else "RGB"
    return torch.stack([to_uint8_tensor(image.convert(mode)) for image in images])


def _subfolders(root: Path) -> list[Path]:
    return sorted((entry for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith(".")),
                  key=lambda path: os.fsencode(path.name))


def read_image_folder(root: str | os.PathLike) -> tuple[list[Path], list[int], list[str]]:
    """The files of a folder with one subfolder per class (class names sorted), checked, without decoding an image:
    (paths, labels, classes)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder {shown(root)} does not exist or is not a folder")
    class_dirs = _subfolders(root)
    if not class_dirs:
        raise UserError(f"image folder {shown(root)} has no class subfolders (expected one subfolder per class)")
    paths: list[Path] = []
    labels: list[int] = []
    for index, class_dir in enumerate(class_dirs):
        found = list_images(class_dir)
        if not found:
            raise UserError(f"class folder {shown(class_dir)} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        paths += found
        labels += [index] * len(found)
    classes = [os.fsencode(path.name).decode("utf-8", "replace") for path in class_dirs]
    return paths, labels, classes


def load_image_folder(root: str | os.PathLike, channels: int | None = None, size: int | None = None) -> ImageArrays:
    """read_image_folder's files decoded -> uint8 (N, C, H, W) with int64 labels."""
    paths, labels, classes = read_image_folder(root)
    images = decode_files(paths, channels, size)
    return ImageArrays(images, torch.tensor(labels, dtype=torch.int64), classes, shown(Path(root)))


def _read_rows(csv_path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank row."""
    rows = []
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheets write a BOM
            reader = csv.reader(handle)
            for row in reader:
                fields = [field.strip() for field in row]
                if any(fields):
                    rows.append((reader.line_num, fields))
        return rows
    except FileNotFoundError:
        raise UserError(f"CSV file {shown(csv_path)} does not exist") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"CSV file {shown(csv_path)} is not a readable UTF-8 CSV ({error})") from None


def _is_header(fields: list[str], root: Path) -> bool:
    """A first row is a header when its first field neither names a file nor looks like an image name."""
    name = fields[0]
    return not (root / name).is_file() and os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS


def _parse_labels(rows: list[tuple[int, list[str]]]) -> tuple[list[int], list[str]]:
    """Integer labels as given (classes '0'..'K-1'), or class names mapped to their sorted order."""
    names = [fields[1] for _, fields in rows]
    if all(name.isdigit() for name in names):
        labels = [int(name) for name in names]
        return labels, [str(label) for label in range(max(labels, default=-1) + 1)]
    classes = sorted(set(names))
    index = {name: position for position, name in enumerate(classes)}
    return [index[name] for name in names], classes


def read_csv_list(csv_path: str | os.PathLike, root: str | os.PathLike | None = None
                  ) -> tuple[list[Path], list[int], list[str]]:
    """The rows of a CSV of `relative_path,label` (header optional), checked, without decoding an image:
    (paths, labels, classes). Paths are relative to `root` (default: the CSV's folder); a one-column CSV gives
    labels -1 (unlabelled, as a GAN reads it)."""
    csv_path = Path(csv_path)
    root = Path(root) if root is not None else csv_path.parent
    rows = _read_rows(csv_path)
    if rows and _is_header(rows[0][1], root):
        rows = rows[1:]
    if not rows:
        raise UserError(f"CSV file {shown(csv_path)} lists no images")
    width = 2 if len(rows[0][1]) >= 2 else 1
    for line, fields in rows:
        if len(fields) != width or not all(fields):
            expected = "path,label" if width == 2 else "path"
            raise UserError(f"{shown(csv_path)} line {line} has a missing or extra field (expected {expected}, got {','.join(fields)!r})")
    paths = [root / fields[0] for _, fields in rows]
    for (line, fields), path in zip(rows, paths):
        if not path.is_file():
            raise UserError(f"{shown(csv_path)} line {line} names {fields[0]!r}, which is not a file under {shown(root)}")
    labels, classes = _parse_labels(rows) if width == 2 else ([-1] * len(rows), [])
    return paths, labels, classes


def load_csv_list(csv_path: str | os.PathLike, root: str | os.PathLike | None = None, sample: float = 1.0,
                  seed: int = 0, size: int | None = None, channels: int | None = None) -> ImageArrays:
    """read_csv_list's rows decoded -> uint8 (N, C, H, W) with int64 labels. `sample` < 1 keeps a seeded random
    fraction of the rows, in file order."""
    if not 0.0 < sample <= 1.0:
        raise UserError(f"sample fraction must be in (0, 1], not {sample}")
    paths, labels, classes = read_csv_list(csv_path, root)
    if sample < 1.0:
        keep = sorted(torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed))[
            :max(1, round(len(paths) * sample))].tolist())
        paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
    images = decode_files(paths, channels, size)
    return ImageArrays(images, torch.tensor(labels, dtype=torch.int64), classes, shown(Path(csv_path)))


class UnpairedFolders:
    """CycleGAN's unpaired layout: `trainA/ trainB/` (and usually `testA/ testB/`) at `root` or one level down.

    A .zip (as the CycleGAN sets are published) is extracted safely next to itself first.
    """

    SPLITS = ("train", "test")
    DOMAINS = ("A", "B")

    def __init__(self, root: str | os.PathLike) -> None:
        root = Path(root)
        if root.is_file() and root.suffix.lower() == ".zip":
            root = self._extract(root)
        if not root.is_dir():
            raise UserError(f"unpaired image folder {shown(root)} does not exist")
        candidates = [root] + _subfolders(root)
        found = next((folder for folder in candidates if (folder / "trainA").is_dir() and (folder / "trainB").is_dir()), None)
        if found is None:
            raise UserError(f"{shown(root)} has no trainA/ and trainB/ folders (the CycleGAN layout), nor does any subfolder")
        self.root = found
        self.folders = {(split, domain): found / f"{split}{domain}" for split in self.SPLITS for domain in self.DOMAINS
                        if (found / f"{split}{domain}").is_dir()}

    @staticmethod
    def _extract(archive: Path) -> Path:
        from darkroom.data.download import folder_lock, safe_extract

        target = archive.with_suffix("")
        if target.is_dir():
            return target
        with folder_lock(archive.parent):  # ranks started together extract once
            if not target.is_dir():  # extract beside it, then rename, so an interrupted extraction never counts
                scratch = target.with_name(f".{target.name}.extracting")
                shutil.rmtree(scratch, ignore_errors=True)
                safe_extract(archive, scratch)
                os.replace(scratch, target)
        return target

    def paths(self, split: str, domain: str) -> list[Path]:
        """Sorted image files of `split` ('train'/'test') and `domain` ('A'/'B')."""
        if (split, domain) not in self.folders:
            raise UserError(f"{shown(self.root)} has no {split}{domain}/ folder")
        found = list_images(self.folders[(split, domain)])
        if not found:
            raise UserError(f"{shown(self.folders[(split, domain)])} holds no images")
        return found

    def load(self, split: str, domain: str, size: int | None = None, channels: int | None = None) -> ImageArrays:
        """All images of one split and domain in memory, labels -1 (unpaired sets have no classes)."""
        paths = self.paths(split, domain)
        images = decode_files(paths, channels, size)
        return ImageArrays(images, torch.full((len(paths),), -1, dtype=torch.int64), [],
                           shown(self.folders[(split, domain)]))
