"""LSUN lmdb reading (written in the published layout with planted images and bad values) and the
streaming path over it: crops, flips, skips counted across DataLoader workers, seeded order."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from darkroom.data.images import BadImage
from darkroom.data.loaders import StreamingImages, make_loader
from darkroom.data.lsun import LsunImages, write_lsun_lmdb
from darkroom.errors import UserError


def _solid(value: int, size: tuple[int, int] = (12, 10)) -> Image.Image:
    return Image.new("RGB", size, (value, 255 - value, value // 2))


def _coordinates(width: int, height: int) -> Image.Image:
    """Red = column, green = row: any crop reveals where it was taken."""
    array = np.zeros((height, width, 3), np.uint8)
    array[..., 0] = np.arange(width)[None, :]
    array[..., 1] = np.arange(height)[:, None]
    return Image.fromarray(array)


def test_reads_back_planted_images(tmp_path):
    images = [_solid(value) for value in (0, 60, 120, 180, 240)]
    path = write_lsun_lmdb(tmp_path / "bedroom_train_lmdb", images, format="PNG")
    dataset = LsunImages(path)
    assert len(dataset) == 5 and len(dataset.key(0)) == 40
    for index, image in enumerate(images):
        assert np.array_equal(np.asarray(dataset[index]), np.asarray(image))
    assert LsunImages(path, mode="L")[1].mode == "L"


def test_webp_values_decode(tmp_path):
    path = write_lsun_lmdb(tmp_path / "db", [_solid(100, (64, 48))])  # WebP, as LSUN stores them
    image = LsunImages(path)[0]
    assert image.size == (64, 48)
    assert np.abs(np.asarray(image, dtype=int) - np.asarray(_solid(100, (64, 48)), dtype=int)).max() <= 8


def test_bad_value_fails_naming_the_key(tmp_path):
    path = write_lsun_lmdb(tmp_path / "db", [_solid(10), b"not an image", _solid(30)], format="PNG")
    dataset = LsunImages(path)
    with pytest.raises(BadImage, match=f"key {dataset.key(1).decode()}"):
        dataset[1]


def test_bad_value_skipped_and_counted(tmp_path):
    path = write_lsun_lmdb(tmp_path / "db", [_solid(10), b"", b"\x89PNG\r\n\x1a\n garbage", _solid(30)], format="PNG")
    dataset = LsunImages(path, on_bad_image="skip")
    assert np.asarray(dataset[1])[0, 0, 0] == 30  # the next decodable value stands in
    assert np.asarray(dataset[2])[0, 0, 0] == 30
    assert dataset.skipped == 2
    assert np.asarray(dataset[0])[0, 0, 0] == 10 and dataset.skipped == 2


def test_missing_or_empty_database(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        LsunImages(tmp_path / "nope")
    with pytest.raises(UserError, match="holds no entries"):
        LsunImages(write_lsun_lmdb(tmp_path / "empty", []))
    with pytest.raises(UserError, match="on_bad_image"):
        LsunImages(tmp_path, on_bad_image="ignore")


# ---- streaming ------------------------------------------------------------------------------------

def test_eval_center_crop_is_exact(tmp_path):
    path = write_lsun_lmdb(tmp_path / "db", [_coordinates(40, 20)], format="PNG")
    x, label = StreamingImages(LsunImages(path), size=16, channels=3, train=False, load_size=20)[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.uint8 and label.item() == -1
    assert x[0, 0].tolist() == list(range(12, 28)) and x[1, :, 0].tolist() == list(range(2, 18))


def test_train_random_crop_is_a_window_and_flips(tmp_path):
    path = write_lsun_lmdb(tmp_path / "db", [_coordinates(30, 20)], format="PNG")
    dataset = StreamingImages(LsunImages(path), size=8, channels=3, train=True, load_size=20)
    torch.manual_seed(0)
    lefts, flipped = set(), 0
    for _ in range(40):
        x, _ = dataset[0]
        columns, rows = x[0, 0].tolist(), x[1, :, 0].tolist()
        if columns[0] > columns[-1]:
            flipped += 1
            columns = columns[::-1]
        assert columns == list(range(columns[0], columns[0] + 8)) and rows == list(range(rows[0], rows[0] + 8))
        assert 0 <= columns[0] <= 22 and 0 <= rows[0] <= 12
        lefts.add(columns[0])
    assert len(lefts) > 5 and 5 < flipped < 35


def test_files_grayscale_and_resize(tmp_path):
    for index, value in enumerate((50, 150)):
        Image.new("RGB", (40, 30), (value, value, value)).save(tmp_path / f"{index}.png")
    (tmp_path / "2.png").write_bytes(b"truncated")
    dataset = StreamingImages(tmp_path, size=12, channels=1, train=False, on_bad_image="skip", labels=[4, 5, 6])
    x, label = dataset[1]
    assert x.shape == (1, 12, 12) and (x == 150).all() and label.item() == 5
    x, label = dataset[2]  # bad: wraps round to the first file
    assert (x == 50).all() and label.item() == 4 and dataset.skipped == 1
    with pytest.raises(BadImage, match="2.png"):
        StreamingImages(tmp_path, size=12, channels=1, train=False)[2]


def test_loader_workers_share_skip_count_and_seeded_order(tmp_path):
    values = [b"bad"] + [_solid(value) for value in range(10, 250, 15)]
    path = write_lsun_lmdb(tmp_path / "db", values, format="PNG")
    dataset = StreamingImages(LsunImages(path), size=8, channels=3, train=True, on_bad_image="skip")
    loader = make_loader(dataset, batch_size=4, workers=2, shuffle=True, seed=7, drop_last=False)
    assert loader.pin_memory == torch.cuda.is_available() and loader.persistent_workers
    first = torch.cat([x for x, _ in loader])
    assert first.shape == (17, 3, 8, 8) and dataset.skipped == 1
    again = torch.cat([x for x, _ in make_loader(dataset, 4, 2, True, 7, False)])
    assert torch.equal(first, again)  # same seed: same order and same crops


def test_loader_without_workers(tmp_path):
    path = write_lsun_lmdb(tmp_path / "db", [_solid(value) for value in range(0, 250, 25)], format="PNG")
    dataset = StreamingImages(LsunImages(path), size=8, channels=3, train=False)
    order = [int(x[:, 0, 0, 0].sum()) for x, _ in make_loader(dataset, 3, 0, True, 1, True)]
    assert len(order) == 3  # 10 items, batches of 3, last one dropped
    batches = [x[:, 0, 0, 0].tolist() for x, _ in make_loader(dataset, 3, 0, True, 1, True)]
    assert batches == [x[:, 0, 0, 0].tolist() for x, _ in make_loader(dataset, 3, 0, True, 1, True)]
    assert batches != [x[:, 0, 0, 0].tolist() for x, _ in make_loader(dataset, 3, 0, True, 2, True)]


def test_streaming_refuses_bad_arguments(tmp_path):
    with pytest.raises(UserError, match="load size 8 must be at least the crop size 16"):
        StreamingImages([tmp_path / "x.png"], size=16, channels=3, train=True, load_size=8)
    with pytest.raises(UserError, match="empty"):
        StreamingImages(tmp_path, size=8, channels=3, train=True)
    with pytest.raises(UserError, match="channels"):
        StreamingImages([tmp_path / "x.png"], size=8, channels=2, train=True)
