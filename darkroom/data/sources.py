"""Data specs -> in-memory train/test sets: one function every trainer calls.

Specs: `fashion-mnist`, `mnist`, `cifar10` (each optionally `:class,class` to keep some classes),
a folder with one subfolder per class (`train/` and `test/` or `val/` inside it when present,
else a seeded hold-out), or a `.csv` of `relative_path,label`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from darkroom.data.arrays import ImageArrays
from darkroom.errors import UserError

BUILTIN = ("fashion-mnist", "mnist", "cifar10")


def parse_spec(spec: str) -> tuple[str, list[str]]:
    """'fashion-mnist:sneaker,ankle-boot' -> ('fashion-mnist', ['sneaker', 'ankle-boot'])."""
    name, _, classes = spec.partition(":")
    if name in BUILTIN:
        return name, [c for c in classes.split(",") if c]
    return spec, []


def keep_classes(arrays: ImageArrays, wanted: list[str]) -> ImageArrays:
    """Keep only `wanted` classes, relabelled 0..len(wanted)-1 in the order given."""
    twice = next((name for index, name in enumerate(wanted) if name in wanted[:index]), None)
    if twice:
        raise UserError(f"{arrays.source}: class {twice!r} is named twice; name each class once")
    missing = [name for name in wanted if name not in arrays.classes]
    if missing:
        raise UserError(f"{arrays.source} has no class {missing[0]!r}; its classes are {', '.join(arrays.classes)}")
    old = torch.tensor([arrays.classes.index(name) for name in wanted])
    mask = (arrays.labels[:, None] == old[None, :])
    index = mask.any(1).nonzero().squeeze(1)
    relabel = mask[index].float().argmax(1)
    return ImageArrays(arrays.images[index], relabel, list(wanted), arrays.source)


def split_indices(n: int, split: str, holdout: float | None, sample: float, seed: int) -> list[int]:
    """Which of n listed images `split` holds. With `holdout`, a seeded share of all n is held out as the test split
    first, so train and test never share an image whatever the two sample fractions; then a seeded `sample`
    fraction of the split is kept. Without `holdout` (a folder's own train/ or test/ part) only the sample."""
    if not 0.0 < sample <= 1.0:
        raise UserError(f"sample fraction must be in (0, 1], not {sample}")
    if holdout is None and sample == 1.0:
        return list(range(n))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    if holdout is not None:
        n_test = max(1, int(round(n * holdout)))
        order = order[:n_test] if split == "test" else order[n_test:]
    if sample < 1.0:
        order = order[:max(1, round(len(order) * sample))]
    return order.tolist()


def load(spec: str, split: str, root: str | None = None, sample: float = 1.0, seed: int = 0,
         size: int | None = None, channels: int | None = None, holdout: float = 0.1) -> ImageArrays:
    """Load `split` ('train' or 'test') of the data named by `spec` as uint8 (N, C, H, W)."""
    name, wanted = parse_spec(spec)
    root_path = Path(root) if root else None
    if name in ("fashion-mnist", "mnist"):
        from darkroom.data.idx import load_idx_dataset
        arrays = load_idx_dataset(name, split, root_path)
    elif name == "cifar10":
        from darkroom.data.cifar import load_cifar10
        arrays = load_cifar10(split, root_path, download=True)
    else:
        arrays = _load_path(Path(name.removeprefix("folder:").removeprefix("csv:")), split, sample, seed, size, channels, holdout)
    if wanted:
        arrays = keep_classes(arrays, wanted)
    if sample < 1.0 and name in BUILTIN:
        order = torch.randperm(len(arrays), generator=torch.Generator().manual_seed(seed))
        arrays = arrays.subset(order[:max(1, int(len(arrays) * sample))])
    if len(arrays) == 0:
        raise UserError(f"{spec} {split} holds no images")
    return arrays


def _load_path(path: Path, split: str, sample: float, seed: int, size: int | None, channels: int | None,
               holdout: float) -> ImageArrays:
    from darkroom.data.folders import decode_files, load_image_folder, read_csv_list, shown

    if not path.exists():
        raise UserError(f"data path {path} does not exist")
    if path.suffix.lower() == ".csv":  # listed first, so only the images of the split and sample are decoded
        paths, labels, classes = read_csv_list(path)
        keep = split_indices(len(paths), split, holdout, sample, seed)
        images = decode_files([paths[i] for i in keep], channels, size)
        return ImageArrays(images, torch.tensor([labels[i] for i in keep], dtype=torch.int64), classes, shown(path))
    if not path.is_dir():
        raise UserError(f"data path {path} is neither a folder nor a .csv file")
    part = next((path / name for name in ((split,) if split == "train" else ("test", "val", "valid"))
                 if (path / name).is_dir()), None)
    arrays = load_image_folder(part or path, channels=channels, size=size)
    return arrays.subset(torch.tensor(split_indices(len(arrays), split, None if part else holdout, sample, seed)))
