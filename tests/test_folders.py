"""Image folders, CSV lists and unpaired CycleGAN folders read back with planted pixels and labels;
decoding of every Pillow mode, refusal of broken files, and listing that survives symlink loops."""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from darkroom.data.folders import UnpairedFolders, load_csv_list, load_image_folder
from darkroom.data.images import BadImage, decode_image, list_images, open_image, to_uint8_tensor
from darkroom.errors import UserError


def _solid(path: Path, color: int | tuple[int, int, int], size: tuple[int, int] = (8, 6), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


def _png_bytes(image: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format)
    return buffer.getvalue()


# ---- image folder ---------------------------------------------------------------------------------

def test_image_folder_classes_labels_pixels(tmp_path):
    _solid(tmp_path / "dog" / "b.png", (0, 0, 200))
    _solid(tmp_path / "dog" / "nested" / "c.png", (0, 100, 0))
    _solid(tmp_path / "cat" / "a.png", (10, 20, 30))
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "cat" / "._a.png").write_bytes(b"macOS resource fork, not an image")
    arrays = load_image_folder(tmp_path, channels=None, size=None)
    assert arrays.classes == ["cat", "dog"]
    assert arrays.labels.tolist() == [0, 1, 1]
    assert arrays.images.shape == (3, 3, 6, 8) and arrays.images.dtype == torch.uint8
    assert arrays.images[0, :, 0, 0].tolist() == [10, 20, 30]
    assert arrays.images[1, :, 0, 0].tolist() == [0, 0, 200]  # dog/b.png sorts before dog/nested/c.png
    assert arrays.images[2, :, 3, 4].tolist() == [0, 100, 0]


def test_channels_inferred_and_forced(tmp_path):
    _solid(tmp_path / "a" / "x.png", 77, mode="L")
    _solid(tmp_path / "b" / "y.png", 200, mode="L")
    gray = load_image_folder(tmp_path, channels=None, size=None)
    assert gray.images.shape[1] == 1 and gray.images[:, 0, 0, 0].tolist() == [77, 200]
    assert load_image_folder(tmp_path, channels=3, size=None).images[0, :, 0, 0].tolist() == [77, 77, 77]
    _solid(tmp_path / "b" / "z.png", (255, 0, 0))
    mixed = load_image_folder(tmp_path, channels=None, size=None)
    assert mixed.images.shape[1] == 3
    as_gray = load_image_folder(tmp_path, channels=1, size=None)
    assert as_gray.images[2, 0, 0, 0].item() == 76  # ITU-R 601 luma of pure red: 0.299 * 255


def test_differing_sizes_need_a_size(tmp_path):
    _solid(tmp_path / "a" / "1.png", (0, 0, 0), size=(8, 6))
    _solid(tmp_path / "a" / "2.png", (0, 0, 0), size=(9, 6))
    with pytest.raises(UserError, match=r"2\.png is 9x6 but .*1\.png is 8x6"):
        load_image_folder(tmp_path, channels=None, size=None)


def test_size_resizes_shorter_side_and_center_crops(tmp_path):
    wide = np.zeros((32, 64, 3), np.uint8)
    wide[:, :16] = (255, 0, 0)  # left quarter red, middle half green, right quarter blue
    wide[:, 16:48] = (0, 255, 0)
    wide[:, 48:] = (0, 0, 255)
    Image.fromarray(wide).save(_solid(tmp_path / "a" / "wide.png", 0))
    _solid(tmp_path / "a" / "tall.png", (9, 9, 9), size=(20, 50))
    arrays = load_image_folder(tmp_path, channels=None, size=16)
    assert arrays.images.shape == (2, 3, 16, 16)
    # Only the green middle survives the crop (bicubic blurs the outermost columns a little).
    assert (arrays.images[1, 1, :, 1:-1] == 255).all() and (arrays.images[1, 0] < 40).all() and (arrays.images[1, 2] < 40).all()
    assert (arrays.images[0] == 9).all()


def test_empty_class_folder_named(tmp_path):
    _solid(tmp_path / "full" / "x.png", 0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="class folder .*empty holds no images"):
        load_image_folder(tmp_path, channels=None, size=None)


def test_folder_without_classes(tmp_path):
    _solid(tmp_path / "x.png", 0)
    with pytest.raises(UserError, match="no class subfolders"):
        load_image_folder(tmp_path, channels=None, size=None)
    with pytest.raises(UserError, match="does not exist"):
        load_image_folder(tmp_path / "nope", channels=None, size=None)


# ---- CSV lists ------------------------------------------------------------------------------------

def _csv_set(tmp_path: Path, n: int = 10) -> Path:
    for i in range(n):
        _solid(tmp_path / "img" / f"{i}.png", i * 10, mode="L")
    return tmp_path


@pytest.mark.parametrize("header", ["", "fn,label\n"])
def test_csv_with_and_without_header(tmp_path, header):
    _csv_set(tmp_path)
    (tmp_path / "list.csv").write_text(header + "img/3.png,dog\nimg/1.png,cat\n\nimg/2.png,dog\n")
    arrays = load_csv_list(tmp_path / "list.csv")
    assert arrays.classes == ["cat", "dog"]
    assert arrays.labels.tolist() == [1, 0, 1]
    assert arrays.images[:, 0, 0, 0].tolist() == [30, 10, 20]


def test_csv_integer_labels_and_other_root(tmp_path):
    _csv_set(tmp_path)
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "list.csv").write_text("3.png,2\n0.png,0\n")
    arrays = load_csv_list(tmp_path / "lists" / "list.csv", root=tmp_path / "img")
    assert arrays.labels.tolist() == [2, 0] and arrays.classes == ["0", "1", "2"]


def test_csv_without_labels_gives_minus_one(tmp_path):
    _csv_set(tmp_path)
    (tmp_path / "list.csv").write_text("img/4.png\nimg/5.png\n")
    arrays = load_csv_list(tmp_path / "list.csv")
    assert arrays.labels.tolist() == [-1, -1] and arrays.classes == []


def test_csv_sample_fraction_is_seeded_subset(tmp_path):
    _csv_set(tmp_path, n=20)
    (tmp_path / "list.csv").write_text("".join(f"img/{i}.png,{i % 2}\n" for i in range(20)))
    first = load_csv_list(tmp_path / "list.csv", sample=0.25, seed=3)
    again = load_csv_list(tmp_path / "list.csv", sample=0.25, seed=3)
    other = load_csv_list(tmp_path / "list.csv", sample=0.25, seed=4)
    assert len(first) == 5 and torch.equal(first.images, again.images)
    values = first.images[:, 0, 0, 0].tolist()
    assert values == sorted(values)  # file order kept
    assert all((value // 10) % 2 == label for value, label in zip(values, first.labels.tolist()))
    assert not torch.equal(first.images, other.images)


@pytest.mark.parametrize("text, line", [("img/1.png,cat\nimg/2.png\n", 2), ("img/1.png,cat\nimg/2.png,\n", 2),
                                        ("fn,label\nimg/1.png,a\nimg/2.png,b,c\n", 3)])
def test_csv_missing_field_names_file_and_line(tmp_path, text, line):
    _csv_set(tmp_path)
    (tmp_path / "list.csv").write_text(text)
    with pytest.raises(UserError, match=rf"list\.csv line {line} has a missing or extra field"):
        load_csv_list(tmp_path / "list.csv")


def test_csv_missing_image_file(tmp_path):
    _csv_set(tmp_path)
    (tmp_path / "list.csv").write_text("img/1.png,a\nimg/99.png,b\n")
    with pytest.raises(UserError, match=r"line 2 names 'img/99.png'"):
        load_csv_list(tmp_path / "list.csv")


# ---- decoding -------------------------------------------------------------------------------------

def _mode_images() -> dict[str, tuple[Image.Image, list[int]]]:
    """Pillow image of each mode, and the RGB value its (0, 0) pixel must decode to."""
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    transparent = palette.copy()
    transparent.info["transparency"] = 1
    sixteen = Image.fromarray(np.full((4, 4), 257 * 100, np.uint16))
    return {
        "L": (Image.new("L", (4, 4), 90), [90, 90, 90]),
        "LA": (Image.new("LA", (4, 4), (0, 0)), [255, 255, 255]),  # transparent black on white
        "RGBA-opaque": (Image.new("RGBA", (4, 4), (0, 0, 255, 255)), [0, 0, 255]),
        "RGBA-clear": (Image.new("RGBA", (4, 4), (255, 0, 0, 0)), [255, 255, 255]),
        "RGBA-half": (Image.new("RGBA", (4, 4), (0, 0, 0, 128)), [127, 127, 127]),
        "P": (palette, [10, 200, 30]),
        "P-transparent": (transparent, [255, 255, 255]),
        "CMYK": (Image.new("CMYK", (4, 4), (0, 0, 0, 0)), [255, 255, 255]),
        "I;16": (sixteen, [100, 100, 100]),
        "1": (Image.new("1", (4, 4), 1), [255, 255, 255]),
    }


@pytest.mark.parametrize("name", sorted(_mode_images()))
def test_every_mode_decodes_to_l_and_rgb(tmp_path, name):
    image, rgb = _mode_images()[name]
    path = tmp_path / ("x.tiff" if image.mode == "CMYK" else "x.png")
    image.save(path)
    as_rgb = to_uint8_tensor(open_image(path, "RGB"))
    assert as_rgb.shape == (3, 4, 4)
    assert [abs(a - b) <= 1 for a, b in zip(as_rgb[:, 0, 0].tolist(), rgb)] == [True] * 3
    as_l = to_uint8_tensor(open_image(path, "L"))
    assert as_l.shape == (1, 4, 4)


def test_exif_rotation_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    Image.new("RGB", (40, 20), (50, 50, 50)).save(tmp_path / "r.jpg", exif=exif)
    assert open_image(tmp_path / "r.jpg", "RGB").size == (20, 40)


@pytest.mark.parametrize("content", ["zero", "truncated-png", "truncated-jpeg", "text"])
def test_broken_files_are_bad_images_naming_the_file(tmp_path, content):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = {"zero": b"", "truncated-png": _png_bytes(noise)[:500], "truncated-jpeg": _png_bytes(noise, "JPEG")[:300],
            "text": b"hello, I am not an image"}[content]
    path = tmp_path / f"broken-{content}.png"
    path.write_bytes(data)
    with pytest.raises(BadImage, match=f"broken-{content}"):
        open_image(path, "RGB")
    _solid(tmp_path / "set" / "a" / "ok.png", 0)
    path.rename(tmp_path / "set" / "a" / path.name)
    with pytest.raises(BadImage, match=f"set/a/broken-{content}"):
        load_image_folder(tmp_path / "set", channels=None, size=None)


def test_decompression_bomb_limit_kept(tmp_path, monkeypatch):
    Image.new("L", (100, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4000)  # 10000 pixels: over the limit (warning range)
    with pytest.raises(BadImage, match="too large"):
        open_image(tmp_path / "big.png", "L")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # over twice the limit (error range)
    with pytest.raises(BadImage, match="too large"):
        decode_image((tmp_path / "big.png").read_bytes(), "big bytes", "L")


# ---- listing --------------------------------------------------------------------------------------

def test_symlink_loop_does_not_hang(tmp_path):
    _solid(tmp_path / "a" / "x.png", 0)
    _solid(tmp_path / "a" / "b" / "y.png", 0)
    os.symlink(tmp_path / "a", tmp_path / "a" / "b" / "loop")  # a/b/loop -> a
    os.symlink("..", tmp_path / "a" / "up")  # a/up -> a's parent (the root)
    os.symlink(tmp_path / "missing", tmp_path / "a" / "dangling")
    found = list_images(tmp_path)
    assert sorted(path.name for path in found) == ["x.png", "y.png"]


def test_symlinked_folder_followed(tmp_path):
    _solid(tmp_path / "real" / "x.png", 0)
    (tmp_path / "set").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "set" / "linked")
    assert list_images(tmp_path / "set") == [tmp_path / "set" / "linked" / "x.png"]
    assert list_images(tmp_path / "real", recursive=False) == [tmp_path / "real" / "x.png"]


def test_non_utf8_file_names(tmp_path):
    name = os.fsdecode(b"caf\xe9-\xff.PNG")  # Latin-1 bytes: not valid UTF-8
    _solid(tmp_path / "a" / name, (1, 2, 3))
    (tmp_path / "a" / os.fsdecode(b"bad\xfe.png")).write_bytes(b"junk")
    found = list_images(tmp_path)
    assert [os.fsencode(path.name) for path in found] == [b"bad\xfe.png", b"caf\xe9-\xff.PNG"]
    assert to_uint8_tensor(open_image(found[1], "RGB"))[:, 0, 0].tolist() == [1, 2, 3]
    with pytest.raises(BadImage) as error:
        open_image(found[0], "RGB")
    str(error.value).encode("utf-8")  # the message prints on a UTF-8 terminal


# ---- unpaired -------------------------------------------------------------------------------------

def test_unpaired_folders_from_zip(tmp_path):
    archive = tmp_path / "horse2zebra.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for folder, value, count in [("trainA", 10, 3), ("trainB", 20, 2), ("testA", 30, 1), ("testB", 40, 1)]:
            for i in range(count):
                bundle.writestr(f"horse2zebra/{folder}/{i}.jpg", _png_bytes(Image.new("RGB", (12, 10), (value,) * 3), "JPEG"))
    folders = UnpairedFolders(archive)
    train_a = folders.load("train", "A", size=8)
    assert train_a.images.shape == (3, 3, 8, 8) and train_a.labels.tolist() == [-1, -1, -1]
    assert abs(int(folders.load("test", "B").images[0, 0, 0, 0]) - 40) <= 2
    assert len(folders.paths("train", "B")) == 2
    assert UnpairedFolders(archive).root == folders.root  # the second call reuses the extraction


def test_unpaired_folders_missing(tmp_path):
    _solid(tmp_path / "trainA" / "x.png", 0)
    with pytest.raises(UserError, match="no trainA/ and trainB/"):
        UnpairedFolders(tmp_path)
    _solid(tmp_path / "trainB" / "y.png", 0)
    folders = UnpairedFolders(tmp_path)
    with pytest.raises(UserError, match="no testA/"):
        folders.paths("test", "A")


@pytest.mark.parametrize("train_sample, test_sample", [(0.3, 1.0), (1.0, 0.5), (0.5, 0.2)])
def test_csv_and_folder_splits_never_share_an_image_whatever_the_samples(tmp_path, train_sample, test_sample):
    """The hold-out is cut from every listed image before --sample / --test-sample thin each split."""
    from darkroom.data import sources
    from darkroom.classifier.data import list_split

    for i in range(25):  # pixel value i names the image
        _solid(tmp_path / "set" / f"c{i % 2}" / f"{i}.png", i, mode="L")
    (tmp_path / "list.csv").write_text("".join(f"set/c{i % 2}/{i}.png,c{i % 2}\n" for i in range(25)))
    for spec in (str(tmp_path / "list.csv"), str(tmp_path / "set")):
        train = sources.load(spec, "train", sample=train_sample, seed=1)
        test = sources.load(spec, "test", sample=test_sample, seed=1)
        train_ids, test_ids = set(train.images[:, 0, 0, 0].tolist()), set(test.images[:, 0, 0, 0].tolist())
        assert not train_ids & test_ids, spec
        n_test = round(25 * 0.1)  # 2 (round half to even)
        assert len(train) == max(1, round((25 - n_test) * train_sample)) and len(test) == max(1, round(n_test * test_sample))
        for split, arrays in (("train", train), ("test", test)):  # the streaming path lists the same images
            files = list_split(spec, split, train_sample if split == "train" else test_sample, 1)
            assert sorted(int(Path(path).stem) for path in files.paths) == sorted(arrays.images[:, 0, 0, 0].tolist())
