"""Translate folders of images of any size with a trained CycleGAN run (what `darkroom translate` calls).

    darkroom translate runs/cyclegan-... --direction a2b photos/ zebras/
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from darkroom import checkpoint
from darkroom.data.images import BadImage, list_images, open_image, shown, to_uint8_tensor
from darkroom.errors import UserError
from darkroom.nets.cyclegan import translate_any_size
from darkroom.report.grid import to_uint8
from darkroom.cyclegan.nets import build_generator

DIRECTIONS = ("a2b", "b2a")


def load_generators(run_dir: str | os.PathLike, device: torch.device,
                    checkpoint_path: str | os.PathLike | None = None) -> tuple[nn.Module, nn.Module, dict]:
    """(g_ab, g_ba, meta) of a CycleGAN run, in eval mode on `device`; meta holds channels_a/b, crop_size, ..."""
    run_dir = Path(run_dir)
    path = Path(checkpoint_path) if checkpoint_path else run_dir / "checkpoints" / "last.pt"
    if checkpoint_path is None and not run_dir.is_dir():
        raise UserError(f"run folder {run_dir} does not exist")
    saved = checkpoint.load(path)
    if saved.get("task") != "cyclegan":
        raise UserError(f"{path} is not a CycleGAN checkpoint (task {saved.get('task')!r})")
    config, meta = saved["config"], saved["meta"]
    values = {**config, "memory_lean": False}
    g_ab = build_generator(values, meta["channels_a"], meta["channels_b"])
    g_ba = build_generator(values, meta["channels_b"], meta["channels_a"])
    g_ab.load_state_dict(saved["g_ab"])
    g_ba.load_state_dict(saved["g_ba"])
    meta = {**meta, "step": saved["state"]["step"], "config": config}
    return g_ab.to(device).eval(), g_ba.to(device).eval(), meta


@torch.no_grad()
def translate_images(generator: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = 64,
                     scale_to: int | None = None) -> torch.Tensor:
    """uint8 (N, C, H, W) of any H, W >= 5 -> uint8 (N, C', H, W), translated in batches.

    scale_to (a run's load size): resize so the shorter side is that many pixels first, the scale the generator
    was trained at, and the result back to H x W after (bicubic, antialiased). None translates at the given scale.
    """
    out = []
    height, width = images.shape[-2:]
    for chunk in images.split(batch_size):
        x = chunk.to(device).float().div_(127.5).sub_(1.0)  # (B, C, H, W) in [-1, 1]
        if scale_to and min(height, width) != scale_to:
            factor = scale_to / min(height, width)
            size = (max(scale_to, round(height * factor)), max(scale_to, round(width * factor)))
            x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False).clamp_(-1, 1)
        y = translate_any_size(generator, x)
        if y.shape[-2:] != (height, width):
            y = F.interpolate(y.float(), size=(height, width), mode="bicubic", antialias=True, align_corners=False)
        out.append(to_uint8(y).cpu())
    return torch.cat(out)


def _save(image: torch.Tensor, path: Path) -> None:
    """uint8 (C, H, W) -> the file `path`, its format from the extension; atomic (temp file, rename)."""
    from PIL import Image

    array = image.permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        picture.save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {shown(path)}: {error.strerror or error}") from None


def _batches(paths: list[Path], mode: str, batch_size: int, on_bad_image: str, skipped: list[str]):
    """Runs of up to `batch_size` consecutive images of one size: ([paths], uint8 (B, C, H, W))."""
    group: list[tuple[Path, torch.Tensor]] = []
    for path in paths:
        try:
            image = to_uint8_tensor(open_image(path, mode))
        except BadImage as error:
            if on_bad_image == "fail":
                raise UserError(f"{error}; nothing after it was translated (pass --on-bad-image skip to "
                                "list and skip such files)") from None
            skipped.append(str(error))
            continue
        if group and (len(group) == batch_size or group[0][1].shape != image.shape):
            yield [p for p, _ in group], torch.stack([x for _, x in group])
            group = []
        group.append((path, image))
    if group:
        yield [p for p, _ in group], torch.stack([x for _, x in group])


def translate_folder(run_dir: str | os.PathLike, direction: str, input_dir: str | os.PathLike,
                     output_dir: str | os.PathLike, device: torch.device, batch_size: int = 1, *,
                     on_bad_image: str = "fail", progress: bool = True, at_training_scale: bool = False) -> dict:
    """Translate every image under `input_dir` (any size, any mode) into `output_dir`, keeping relative paths and names.

    Each image is reflect-padded to a multiple of 4, translated and cropped back, so its size is kept; it is read
    with the generator's input channels and written with its output channels. An unreadable file stops the run
    with one sentence naming it (on_bad_image='fail') or is skipped and listed in the result ('skip').
    Returns {"translated", "skipped" (list of sentences), "output_dir", "direction", "step", "seconds"}.
    """
    if direction not in DIRECTIONS:
        raise UserError(f"direction must be a2b or b2a, not {direction!r}")
    if on_bad_image not in ("fail", "skip"):
        raise UserError(f"on_bad_image must be 'fail' or 'skip', not {on_bad_image!r}")
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, not {batch_size}")
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise UserError(f"input folder {shown(input_dir)} does not exist or is not a folder")
    if output_dir.resolve() == input_dir.resolve():
        raise UserError(f"output folder {shown(output_dir)} is the input folder; pick another so no original is overwritten")
    paths = list_images(input_dir)
    if not paths:
        raise UserError(f"input folder {shown(input_dir)} holds no images")
    inside = output_dir.resolve().is_relative_to(input_dir.resolve())
    if inside:  # never translate our own outputs from an earlier run
        paths = [path for path in paths if not path.resolve().is_relative_to(output_dir.resolve())]
    g_ab, g_ba, meta = load_generators(run_dir, device)
    generator = g_ab if direction == "a2b" else g_ba
    in_channels = meta["channels_a"] if direction == "a2b" else meta["channels_b"]
    mode = "L" if in_channels == 1 else "RGB"
    started, translated, skipped = time.time(), 0, []
    with tqdm(total=len(paths), desc=f"translate {direction}", unit="img", disable=not progress, leave=False) as bar:
        for names, images in _batches(paths, mode, batch_size, on_bad_image, skipped):
            outputs = translate_images(generator, images, device, batch_size,
                                       meta["load_size"] if at_training_scale else None)
            for path, image in zip(names, outputs):
                _save(image, output_dir / path.relative_to(input_dir))
            translated += len(names)
            bar.update(len(names))
        bar.update(len(paths) - bar.n)
    if skipped and not translated:
        raise UserError(f"none of the {len(paths)} images in {input_dir} could be read; the first: {skipped[0]}")
    return {"translated": translated, "skipped": skipped, "output_dir": str(output_dir), "direction": direction,
            "step": meta["step"], "seconds": time.time() - started}
