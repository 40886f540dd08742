"""Property tests of the data layer's defences: damaged image bytes give BadImage or a valid image (never
another exception); random bytes given to the CIFAR unpickler give UserError; random archive member names
either land inside the destination or are refused."""
from __future__ import annotations

import io
import os
import tarfile
import zipfile

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from darkroom.data.cifar import read_pickle
from darkroom.data.download import safe_extract
from darkroom.data.images import BadImage, decode_image, to_uint8_tensor
from darkroom.errors import UserError


def _encoded(format: str, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    image = Image.fromarray(array).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format)
    return buffer.getvalue()


SEEDS = [_encoded("PNG"), _encoded("PNG", "P"), _encoded("PNG", "LA"), _encoded("JPEG"), _encoded("JPEG", "L"),
         _encoded("WEBP"), _encoded("GIF", "P"), _encoded("BMP")]
FAST = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 120)), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):  # flip a few bits anywhere, header included
        position = draw(st.integers(0, len(data) - 1))
        data[position] ^= 1 << draw(st.integers(0, 7))
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


@FAST
@given(data=damaged(), mode=st.sampled_from(["L", "RGB"]))
def test_damaged_images_decode_or_raise_bad_image(data, mode):
    try:
        image = decode_image(data, "fuzzed.png", mode)
    except BadImage as error:
        assert "fuzzed.png" in str(error)
        return
    x = to_uint8_tensor(image)
    assert image.mode == mode and x.dtype.is_floating_point is False
    assert x.shape == (1 if mode == "L" else 3, image.height, image.width) and image.width > 0 and image.height > 0


@FAST
@given(data=st.binary(max_size=300) | damaged())
def test_random_bytes_to_unpickler_give_user_error(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "fuzzed_data_batch_1"  # one file, rewritten per example
    path.write_bytes(b"\x80\x02" + data)
    try:
        read_pickle(path)
    except UserError:
        pass


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


NAME_PARTS = st.sampled_from(["a", "b", "..", ".", "", "/", "//", "c.txt", "\\", "C:", "~"])


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 80)), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(parts=st.lists(NAME_PARTS, min_size=1, max_size=5), link=st.lists(NAME_PARTS, max_size=4), zip_format=st.booleans())
def test_archive_members_land_inside_or_are_refused(tmp_path_factory, parts, link, zip_format):
    work = tmp_path_factory.mktemp("work")
    name, target = "/".join(parts), "/".join(link)
    archive = work / ("fuzz.zip" if zip_format else "fuzz.tar")
    if zip_format:
        with zipfile.ZipFile(archive, "w") as bundle:
            bundle.writestr(name or "x", b"payload")
    else:
        with tarfile.open(archive, "w") as tar:
            info = tarfile.TarInfo(name or "x")
            if target:
                info.type, info.linkname = tarfile.SYMTYPE, target
            else:
                info.size = 7
            tar.addfile(info, io.BytesIO(b"payload"))
    dest = work / "dest"
    try:
        extracted = safe_extract(archive, dest)
    except UserError:
        extracted = []
    real_dest = os.path.realpath(dest)
    for path in extracted:
        assert _inside(real_dest, os.path.realpath(os.path.dirname(path)))
        assert _inside(real_dest, os.path.realpath(path))  # for a link: where it points
    outside = {entry.name for entry in work.iterdir()}
    assert outside <= {"fuzz.zip", "fuzz.tar", "dest"}
