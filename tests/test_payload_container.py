"""The exact-recovery container: original region pixels come back bit for bit from PNG, JPEG and
WebP outputs; a wrong secret, a flipped byte and a resized image are told apart and never restore."""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from g2face.io import read_image, write_image
from g2face.payload import Secret
from g2face.payload.carriers import (
    ContainerError,
    ImageMismatchError,
    NotAContainerError,
    Region,
    TamperedContainerError,
    UnsupportedContainerError,
    WrongSecretError,
    open_container,
    restore_regions,
    seal_regions,
)
from g2face.payload.carriers.container import HEADER_BYTES, TAG_BYTES


def _key() -> Secret:
    return Secret(secrets.token_bytes(32), "key")


KEY = _key()


@pytest.fixture(scope="module")
def original() -> np.ndarray:
    path = Path(__file__).resolve().parent / "fixtures" / "grace_hopper.jpg"
    return np.asarray(Image.open(path).convert("RGB"))


def _ellipse(height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    return ((xs - width / 2 + 0.5) / (width / 2)) ** 2 + ((ys - height / 2 + 0.5) / (height / 2)) ** 2 <= 1


def _faces(original: np.ndarray) -> list[Region]:
    # two overlapping "faces" and one touching the image corner
    return [
        Region.from_image(original, _ellipse(150, 120), 200, 100),
        Region.from_image(original, _ellipse(90, 80), 280, 180),
        Region.from_image(original, _ellipse(40, 40), 0, 0),
    ]


def _anonymize(original: np.ndarray, regions: list[Region]) -> np.ndarray:
    out = original.copy()
    for r in regions:
        x0, y0, x1, y1 = r.box
        out[y0:y1, x0:x1][r.mask] = 255 - out[y0:y1, x0:x1][r.mask]
    return out


def _changed(regions, shape) -> np.ndarray:
    union = np.zeros(shape[:2], bool)
    for r in regions:
        x0, y0, x1, y1 = r.box
        union[y0:y1, x0:x1] |= r.mask
    return union


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
@pytest.mark.parametrize("secret", [KEY, Secret.from_password("correct horse")], ids=["key", "password"])
def test_regions_come_back_exactly_from_a_written_file(tmp_path, original, suffix, secret):
    regions = _faces(original)
    anonymized = _anonymize(original, regions)
    blob = seal_regions(regions, secret, original.shape)
    path = write_image(tmp_path / f"anon{suffix}", anonymized, quality=95, block=blob)

    loaded = read_image(path)
    restored = restore_regions(loaded.rgb, open_container(loaded.block, secret))
    union = _changed(regions, original.shape)
    np.testing.assert_array_equal(restored[union], original[union])
    np.testing.assert_array_equal(restored[~union], loaded.rgb[~union])
    if suffix == ".png":
        np.testing.assert_array_equal(restored, original)


def test_rgba_regions_and_the_png_fallback_for_regions_wider_than_webp_allows():
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (40, 50, 4), dtype=np.uint8)
    opened = open_container(
        seal_regions([Region.from_image(rgba, _ellipse(30, 30), 5, 5)], KEY, rgba.shape), KEY
    )
    np.testing.assert_array_equal(
        restore_regions(np.zeros_like(rgba), opened)[5:35, 5:35][_ellipse(30, 30)],
        rgba[5:35, 5:35][_ellipse(30, 30)],
    )
    wide = rng.integers(0, 256, (3, 16_400, 3), dtype=np.uint8)  # WebP stops at 16,383 px a side
    region = Region.from_image(wide, np.ones((3, 16_400), bool))
    np.testing.assert_array_equal(
        restore_regions(np.zeros_like(wide), open_container(seal_regions([region], KEY, wide.shape), KEY)),
        wide,
    )


def test_opened_regions_hold_only_the_masked_pixels(original):
    region = _faces(original)[0]
    (opened,) = open_container(seal_regions([region], KEY, original.shape), KEY).regions
    assert (opened.x0, opened.y0) == (region.x0, region.y0)
    np.testing.assert_array_equal(opened.mask, region.mask)
    np.testing.assert_array_equal(opened.pixels[region.mask], region.pixels[region.mask])
    assert not opened.pixels[~region.mask].any()


def test_no_regions_and_fresh_salts(original):
    blob = seal_regions([], KEY, original.shape)
    assert open_container(blob, KEY).regions == ()
    assert blob[:HEADER_BYTES] != seal_regions([], KEY, original.shape)[:HEADER_BYTES]  # salt + nonce


def test_wrong_password_and_wrong_key_are_told_apart_from_tampering(original):
    regions = _faces(original)[:1]
    with pytest.raises(WrongSecretError, match="wrong password or key file"):
        open_container(
            seal_regions(regions, Secret.from_password("a"), original.shape), Secret.from_password("b")
        )
    with pytest.raises(WrongSecretError):
        open_container(seal_regions(regions, KEY, original.shape), _key())
    with pytest.raises(WrongSecretError):  # a password never opens a key-file container
        open_container(seal_regions(regions, KEY, original.shape), Secret.from_password("a"))


def test_every_flipped_ciphertext_or_tag_byte_is_detected_as_tampering(original):
    region = Region.from_image(original, _ellipse(24, 20), 250, 150)
    blob = seal_regions([region], KEY, original.shape)
    assert len(blob) > HEADER_BYTES + TAG_BYTES
    for position in range(HEADER_BYTES, len(blob)):
        damaged = bytearray(blob)
        damaged[position] ^= 1 << (position % 8)
        with pytest.raises(TamperedContainerError):
            open_container(bytes(damaged), KEY)
    for length in (HEADER_BYTES + TAG_BYTES - 1, len(blob) - 1):
        with pytest.raises(TamperedContainerError):
            open_container(blob[:length], KEY)
    with pytest.raises(TamperedContainerError):
        open_container(blob + b"\x00", KEY)


def test_every_flipped_header_byte_is_an_error_and_never_restores(original):
    blob = seal_regions(_faces(original)[:1], KEY, original.shape)
    expected = {
        0: NotAContainerError,
        1: NotAContainerError,
        2: NotAContainerError,
        3: NotAContainerError,
        4: UnsupportedContainerError,
    }
    for position in range(HEADER_BYTES):
        damaged = bytearray(blob)
        damaged[position] ^= 0x10
        with pytest.raises(expected.get(position, TamperedContainerError)):
            open_container(bytes(damaged), KEY)
    for junk in (b"", b"G2F", b"G2FC", secrets.token_bytes(300)):
        with pytest.raises(ContainerError):
            open_container(junk, KEY)


def test_restoring_into_a_resized_or_converted_image_is_refused(original):
    opened = open_container(seal_regions(_faces(original), KEY, original.shape), KEY)
    for image in (original[:-1], np.dstack([original, original[:, :, :1]]), original.astype(np.int16)):
        with pytest.raises(ImageMismatchError, match="resized, cropped or converted"):
            restore_regions(image, opened)


def test_region_checks(original):
    with pytest.raises(ValueError, match="selects no pixel"):
        Region.from_image(original, np.zeros((5, 5), bool))
    with pytest.raises(ValueError, match="outside"):
        Region.from_image(original, np.ones((5, 5), bool), original.shape[1] - 2, 0)
    with pytest.raises(ValueError, match="bool"):
        Region(0, 0, np.ones((2, 2), np.uint8), np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="outside"):
        seal_regions([Region(0, 0, np.ones((2, 2), bool), np.zeros((2, 2, 3), np.uint8))], KEY, (1, 1, 3))
    with pytest.raises(ValueError, match="channels"):
        seal_regions([Region(0, 0, np.ones((2, 2), bool), np.zeros((2, 2, 3), np.uint8))], KEY, (2, 2, 4))


def _wrong_secret_trials(trials: int, blob: bytes) -> int:
    """How many of `trials` random key files open `blob` (must be none)."""
    opened = 0
    for _ in range(trials):
        try:
            open_container(blob, _key())
            opened += 1
        except WrongSecretError:
            pass
    return opened


def _tiny_container() -> bytes:
    pixels = np.full((4, 4, 3), 7, np.uint8)
    return seal_regions([Region(0, 0, np.ones((4, 4), bool), pixels)], KEY, (4, 4, 3))


def test_200_random_keys_and_two_passwords_never_open_a_container():
    assert _wrong_secret_trials(200, _tiny_container()) == 0
    blob = seal_regions([], Secret.from_password("right"), (4, 4, 3))
    for guess in ("wrong", "Right"):
        with pytest.raises(WrongSecretError):
            open_container(blob, Secret.from_password(guess))


@pytest.mark.slow
def test_10000_random_keys_and_ten_passwords_never_open_a_container():
    assert _wrong_secret_trials(10_000, _tiny_container()) == 0
    blob = seal_regions([], Secret.from_password("right"), (4, 4, 3))
    for guess in range(10):
        with pytest.raises(WrongSecretError):
            open_container(blob, Secret.from_password(f"guess {guess}"))


def test_associated_data_binds_a_container_to_its_place(original):
    regions = _faces(original)[:1]
    blob = seal_regions(regions, KEY, original.shape, associated_data=b"clip A frame 7")
    (opened,) = open_container(blob, KEY, associated_data=b"clip A frame 7").regions
    np.testing.assert_array_equal(opened.pixels[opened.mask], regions[0].pixels[regions[0].mask])
    for elsewhere in (b"clip A frame 8", b""):
        with pytest.raises(TamperedContainerError, match="belongs to another place|altered"):
            open_container(blob, KEY, associated_data=elsewhere)
    with pytest.raises(TamperedContainerError, match="belongs to another place"):
        open_container(seal_regions(regions, KEY, original.shape), KEY, associated_data=b"clip A frame 7")


def test_a_container_sealed_by_an_earlier_release_still_opens():
    """tests/fixtures/container_v1_release.bin: a 16x12 RGB image's 3x4 region, sealed before
    associated data existed, with the key file bytes 0..31."""
    blob = (Path(__file__).resolve().parent / "fixtures" / "container_v1_release.bin").read_bytes()
    (region,) = open_container(blob, Secret(bytes(range(32)), "key")).regions
    assert region.box == (4, 5, 7, 9)
    expected = [
        [[79, 35, 93], [63, 131, 188], [69, 254, 233]],
        [[47, 186, 244], [0, 105, 58], [23, 158, 13]],
        [[170, 214, 222], [216, 17, 110], [58, 181, 22]],
        [[238, 24, 16], [223, 213, 22], [159, 175, 38]],
    ]
    np.testing.assert_array_equal(region.pixels, np.array(expected, np.uint8))
