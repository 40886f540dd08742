"""Safe image decoding: any file Pillow reads, in any mode, becomes 'L' or 'RGB'; every failure is a BadImage.

Pillow's decompression-bomb limit (Image.MAX_IMAGE_PIXELS) stays in force, and images over it are refused
(where Pillow would only warn). Safe to call from several threads.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from darkroom.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")
MODES = ("L", "RGB")


class BadImage(UserError):
    """A file (or stored value) that is not a decodable image: truncated, empty, corrupt or too large."""


def shown(path: str | os.PathLike) -> str:
    """A printable form of a path whose name may not be valid UTF-8 (undecodable bytes become U+FFFD)."""
    return os.fsencode(path).decode("utf-8", "replace")


def _flatten(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 'L' or 'RGB': transparency composited on white, 16-bit and float scaled to 8-bit."""
    if image.mode in ("L", "RGB"):
        return image
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "1":
        return image.convert("L")
    elif image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16") or (image.mode.startswith("I") and values.max(initial=0) > 255):
            values = values / 257.0  # 0..65535 -> 0..255
        elif image.mode == "F" and values.max(initial=0) <= 1.0:
            values = values * 255.0  # float images in [0, 1]
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
    if image.mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        grayscale = image.mode in ("LA", "La")
        rgba = image.convert("RGBA")  # premultiplied modes are un-premultiplied here
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        composite = Image.alpha_composite(white, rgba).convert("RGB")
        return composite.convert("L") if grayscale else composite
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX


def _decode(source: str | os.PathLike | io.BytesIO, name: str, mode: str | None) -> Image.Image:
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be 'L' or 'RGB', not {mode!r}")
    try:
        with Image.open(source) as opened:  # reads the header only
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and opened.width * opened.height > limit:
                # Pillow itself only warns between 1x and 2x its limit; here anything over it is refused.
                raise Image.DecompressionBombError(f"{opened.width}x{opened.height} pixels exceeds the limit of {limit}")
            opened.load()
            image = ImageOps.exif_transpose(opened)  # phone photos store rotation in EXIF
            image = _flatten(image)
            image = image.convert(mode or image.mode)  # a copy that outlives the file
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:  # warning: if made an error
        raise BadImage(f"{name} is too large to decode safely ({error})") from None
    except FileNotFoundError:
        raise BadImage(f"{name} does not exist") from None
    except Exception as error:  # noqa: BLE001 - Pillow raises many types (OSError, SyntaxError, ValueError...) on bad bytes
        detail = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        raise BadImage(f"{name} is not a readable image ({detail})") from None
    if image.width == 0 or image.height == 0:
        raise BadImage(f"{name} is an image of zero size")
    return image


def open_image(path: str | os.PathLike, mode: str | None) -> Image.Image:
    """Decode the image file at `path` as mode 'L' or 'RGB' (a fully loaded copy; the file is closed).

    mode None keeps the file's nature: 'L' for grayscale files (1, L, LA, I;16...), else 'RGB'.
    """
    return _decode(path, shown(path), mode)


def decode_image(data: bytes, name: str, mode: str | None) -> Image.Image:
    """Decode encoded image bytes (PNG, JPEG, WebP, ...) as 'L' or 'RGB'; `name` is used in errors."""
    return _decode(io.BytesIO(data), name, mode)


def to_uint8_tensor(image: Image.Image) -> torch.Tensor:
    """A PIL 'L' or 'RGB' image -> uint8 tensor (C, H, W)."""
    array = np.array(image, dtype=np.uint8)  # (H, W) or (H, W, C); a copy, so the tensor owns writable memory
    if array.ndim == 2:
        return torch.from_numpy(array).unsqueeze(0)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def resize_shorter(image: Image.Image, size: int) -> Image.Image:
    """Scale so the shorter side is `size` pixels, keeping the aspect ratio (antialiased bicubic)."""
    scale = size / min(image.size)
    width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    if (width, height) == image.size:
        return image
    return image.resize((width, height), Image.BICUBIC)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return image.crop((left, top, left + size, top + size))


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"  # dotfiles and macOS zip debris (._x.jpg is not an image)


def list_images(root: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files under `root` (by extension, case-insensitive), sorted by their bytes.

    Symlinked folders are followed, each real folder visited once (no loops); hidden entries are skipped.
    """
    found: list[Path] = []
    visited: set[tuple[int, int]] = set()
    pending = [Path(root)]
    while pending:
        folder = pending.pop()
        try:
            info = folder.stat()
        except OSError:
            continue  # a dangling link
        if (info.st_dev, info.st_ino) in visited:
            continue
        visited.add((info.st_dev, info.st_ino))
        try:
            entries = list(os.scandir(folder))
        except OSError as error:
            raise UserError(f"cannot list folder {shown(folder)} ({error.strerror})") from None
        for entry in entries:
            if _hidden(entry.name):
                continue
            try:
                is_dir = entry.is_dir()  # follows symlinks
                is_file = not is_dir and entry.is_file()
            except OSError:
                continue
            if is_dir and recursive:
                pending.append(Path(entry.path))
            elif is_file and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(entry.path))
    return sorted(found, key=os.fsencode)
