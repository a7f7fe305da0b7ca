"""The g2face byte block in PNG, JPEG and WebP files: exact round trip, files that Pillow, OpenCV and
libpng / libjpeg / libwebp still decode to the same pixels, multi-segment JPEG, and hooks in
write_image / read_image."""

from __future__ import annotations

import io
import struct

import cv2
import numpy as np
import pytest
from PIL import Image

from g2face.io import ImageWriteError, read_image, write_image
from g2face.io.blocks import (
    JPEG_SEGMENT_DATA,
    JPEG_SIGNATURE,
    BlockError,
    add_block,
    find_block,
    sniff_format,
)


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    ys, xs = np.mgrid[0:72, 0:96]
    noise = np.random.default_rng(0).integers(0, 40, (72, 96, 3))
    return (np.dstack([xs * 2, ys * 3, (xs + ys)]) + noise).clip(0, 255).astype(np.uint8)


def _encode(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


ENCODINGS = {
    "png": ("PNG", {}),
    "jpeg-q95": ("JPEG", {"quality": 95}),
    "jpeg-exif": ("JPEG", {"quality": 90, "exif": Image.Exif()}),
    "webp-lossy": ("WEBP", {"quality": 90}),
    "webp-lossless": ("WEBP", {"lossless": True}),
    "webp-rgba-lossless": ("WEBP", {"lossless": True}),
    "webp-rgba-lossy": ("WEBP", {"quality": 80}),
}


def _source(rgb: np.ndarray, name: str) -> np.ndarray:
    if "rgba" not in name:
        return rgb
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[10:30, 20:60] = 90
    return np.dstack([rgb, alpha])


@pytest.mark.parametrize("name", ENCODINGS)
@pytest.mark.parametrize("size", [0, 1, 1000, 70_000])
def test_block_round_trip_and_decoders_see_the_same_pixels(rgb, name, size):
    fmt, options = ENCODINGS[name]
    array = _source(rgb, name)
    plain = _encode(array, fmt, **options)
    block = np.random.default_rng(size).bytes(size)
    carrying = add_block(plain, fmt, block)
    assert find_block(carrying) == block
    assert find_block(plain) is None
    with Image.open(io.BytesIO(plain)) as a, Image.open(io.BytesIO(carrying)) as b:
        assert a.mode == b.mode and a.size == b.size
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    flag = cv2.IMREAD_UNCHANGED
    decoded_plain = cv2.imdecode(np.frombuffer(plain, np.uint8), flag)
    decoded_carrying = cv2.imdecode(np.frombuffer(carrying, np.uint8), flag)
    assert decoded_carrying is not None
    np.testing.assert_array_equal(decoded_plain, decoded_carrying)


def test_png_chunk_passes_pillows_crc_check(rgb):
    carrying = add_block(_encode(rgb, "PNG"), "PNG", b"secret stuff" * 100)
    with Image.open(io.BytesIO(carrying)) as im:
        im.verify()  # checks every chunk's CRC
    with Image.open(io.BytesIO(carrying)) as im:
        im.load()
        assert im.private_chunks == [(b"gfCt", b"secret stuff" * 100, True)]  # after IDAT, before IEND


def test_large_block_in_jpeg_is_split_into_ordered_app9_segments(rgb):
    block = np.random.default_rng(1).bytes(3 * JPEG_SEGMENT_DATA + 17)
    carrying = add_block(_encode(rgb, "JPEG", quality=95), "JPEG", block)
    assert find_block(carrying) == block
    starts = [i for i in range(len(carrying) - 1) if carrying[i : i + 2] == b"\xff\xe9"]
    segments = [s for s in starts if carrying[s + 4 : s + 4 + len(JPEG_SIGNATURE)] == JPEG_SIGNATURE]
    assert len(segments) == 4
    assert carrying[2:4] == b"\xff\xe0" and segments[0] > 4  # JFIF APP0 stays right after SOI
    for index, start in enumerate(segments):
        (length,) = struct.unpack_from(">H", carrying, start + 2)
        assert length <= 0xFFFF
        assert struct.unpack_from(">HH", carrying, start + 4 + len(JPEG_SIGNATURE)) == (index, 4)


def test_simple_webp_becomes_extended_with_a_consistent_riff_size(rgb):
    plain = _encode(rgb, "WEBP", lossless=True)
    assert plain[12:16] == b"VP8L"
    carrying = add_block(plain, "WEBP", b"abc")  # odd size: padded
    assert carrying[12:16] == b"VP8X"
    assert struct.unpack_from("<I", carrying, 4)[0] == len(carrying) - 8
    width_minus_1 = int.from_bytes(carrying[24:27], "little")
    height_minus_1 = int.from_bytes(carrying[27:30], "little")
    assert (width_minus_1 + 1, height_minus_1 + 1) == (96, 72)


def test_malformed_truncated_or_foreign_bytes_never_raise(rgb):
    for data in (b"", b"not an image", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBP", b"\xff\xd8\xff"):
        assert find_block(data) is None
    for fmt in ("PNG", "JPEG", "WEBP"):
        whole = add_block(_encode(rgb, fmt), fmt, b"y" * 3000)
        for cut in range(0, len(whole), 97):
            found = find_block(whole[:cut])
            assert found is None or (isinstance(found, bytes) and len(found) <= 3000)


def test_a_missing_jpeg_segment_leaves_a_shorter_block_for_the_container_to_reject(rgb):
    block = np.random.default_rng(3).bytes(2 * JPEG_SEGMENT_DATA + 5)
    carrying = add_block(_encode(rgb, "JPEG"), "JPEG", block)
    second = carrying.index(b"\xff\xe9" + struct.pack(">H", 0xFFFF) + JPEG_SIGNATURE + struct.pack(">H", 1))
    without_second = carrying[:second] + carrying[second + 2 + 0xFFFF :]
    assert find_block(without_second) == block[:JPEG_SEGMENT_DATA] + block[2 * JPEG_SEGMENT_DATA :]


def test_add_block_refuses_other_formats_mismatches_and_a_second_block(rgb):
    with pytest.raises(BlockError, match="BMP files cannot carry"):
        add_block(_encode(rgb, "BMP"), "BMP", b"x")
    with pytest.raises(BlockError, match="not a PNG file"):
        add_block(_encode(rgb, "JPEG"), "PNG", b"x")
    once = add_block(_encode(rgb, "PNG"), "png", b"x")
    with pytest.raises(BlockError, match="already carries"):
        add_block(once, "PNG", b"y")
    assert sniff_format(once) == "PNG"


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_write_image_splices_and_read_image_exposes_the_block(tmp_path, rgb, suffix):
    block = np.random.default_rng(2).bytes(100_000)
    path = write_image(tmp_path / f"out{suffix}", rgb, block=block)
    plain = write_image(tmp_path / f"plain{suffix}", rgb)
    loaded = read_image(path)
    assert loaded.block == block
    assert read_image(plain).block is None
    np.testing.assert_array_equal(loaded.rgb, read_image(plain).rgb)
    assert not list(tmp_path.glob(".*.tmp"))


def test_write_image_with_a_block_in_a_format_without_room_is_an_input_error(tmp_path, rgb):
    with pytest.raises(ImageWriteError, match="cannot carry the recovery container"):
        write_image(tmp_path / "out.bmp", rgb, block=b"x")
    assert not (tmp_path / "out.bmp").exists()
