"""In-pixel payload carrier: embed into a committed photo, re-detect, read back through the codec."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from g2face.align import face_mask_in_image
from g2face.detection import YuNetDetector
from g2face.payload import PayloadCodec, Secret
from g2face.payload.carriers.pixel import DctQimCarrier, FaceTooSmallError, _spiral, read_payload

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def detector():
    return YuNetDetector()


@pytest.fixture(scope="module")
def codec():
    return PayloadCodec()


@pytest.fixture(scope="module")
def secret():
    return Secret(bytes(range(32)), "key")


@pytest.fixture(scope="module")
def carrying(detector, codec, secret):
    """grace_hopper.jpg (a 170 px wide face) carrying a payload, the original, and its embedding."""
    image = np.asarray(Image.open(FIXTURES / "grace_hopper.jpg").convert("RGB"))
    face = detector.detect(image)[0]
    allowed = face_mask_in_image(image.shape, face) >= 1
    embedding = np.random.default_rng(0).normal(size=128)
    embedding /= np.linalg.norm(embedding)
    payload = codec.encode(embedding, secret, salt=bytes(8))
    out = DctQimCarrier(codec.n_bits).embed(image, face, allowed, payload.bits)
    return image, out, allowed, face, embedding


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _recovers(image, detector, codec, secret, embedding) -> bool:
    decoded = read_payload(image, detector.detect(image)[0], codec, secret)
    return decoded is not None and decoded.verified and float(decoded.embedding @ embedding) > 0.99


def test_pixels_outside_allowed_unchanged(carrying):
    image, out, allowed, _, _ = carrying
    assert np.array_equal(out[~allowed], image[~allowed])
    assert (out != image).any()


def test_psnr_at_least_40_db(carrying):
    image, out, allowed, _, _ = carrying
    mse = ((out.astype(np.float64) - image) ** 2)[allowed].mean()
    assert 10 * np.log10(255**2 / mse) >= 40


def test_png_round_trip_has_no_bit_errors(carrying, codec):
    image, out, allowed, face, _ = carrying
    buffer = io.BytesIO()
    Image.fromarray(out).save(buffer, "PNG")
    reread = np.asarray(Image.open(buffer))
    assert np.array_equal(reread, out)
    payload = codec.encode(carrying[4], Secret(bytes(range(32)), "key"), salt=bytes(8))
    # the anchor block the embedder used, read on the exact detection: every carried bit is right
    candidate = next(DctQimCarrier(codec.n_bits).read(reread, face, max_shift=0))
    carried = candidate.logits != 0
    assert carried.mean() == 1.0
    assert np.array_equal(candidate.logits[carried] > 0, payload.bits[carried].astype(bool))


def test_png_and_jpeg_90_decode_verified(carrying, detector, codec, secret):
    _, out, _, _, embedding = carrying
    assert _recovers(out, detector, codec, secret, embedding)
    assert _recovers(_jpeg(out, 90), detector, codec, secret, embedding)


def test_crop_by_a_non_multiple_of_8_decodes(carrying, detector, codec, secret):
    _, out, _, _, embedding = carrying
    height, width = out.shape[:2]
    top, left = round(0.05 * height) | 1, round(0.05 * width) | 1  # odd: never on the old grid
    cropped = out[top : top + round(0.9 * height), left : left + round(0.9 * width)]
    assert _recovers(cropped, detector, codec, secret, embedding)


def test_resized_to_three_quarters_decodes(carrying, detector, codec, secret):
    _, out, _, _, embedding = carrying
    height, width = out.shape[:2]
    smaller = np.asarray(
        Image.fromarray(out).resize((round(0.75 * width), round(0.75 * height)), Image.BICUBIC)
    )
    assert _recovers(smaller, detector, codec, secret, embedding)


def test_wrong_secret_never_verifies(carrying, detector, codec):
    _, out, _, _, _ = carrying
    face = detector.detect(out)[0]
    for seed in range(3):
        wrong = Secret(np.random.default_rng(seed).bytes(32), "key")
        decoded = read_payload(out, face, codec, wrong)
        assert decoded is not None and not decoded.verified  # found, but not unlocked


def test_image_without_payload_reads_nothing(carrying, detector, codec, secret):
    image = carrying[0]
    assert read_payload(image, detector.detect(image)[0], codec, secret) is None


def test_too_small_face_raises(carrying, detector, codec):
    image = np.asarray(Image.fromarray(carrying[0]).resize((128, 150)))
    face = detector.detect(image)[0]
    carrier = DctQimCarrier(codec.n_bits)
    allowed = face_mask_in_image(image.shape, face) >= 1
    assert carrier.capacity(image.shape, face, allowed).coverage < carrier.min_coverage
    with pytest.raises(FaceTooSmallError, match="too small"):
        carrier.embed(image, face, allowed, np.zeros(codec.n_bits, np.uint8))


def test_layout_is_fixed_by_its_key():
    """The layout is public and must never change for a given key: readers of old files need it."""
    a, b = DctQimCarrier(1296), DctQimCarrier(1296, layout_key=b"other")
    assert np.array_equal(a._byte_of_cell(324), DctQimCarrier(1296)._byte_of_cell(324))
    assert sorted(a._byte_of_cell(162)) == list(range(162))
    assert not np.array_equal(a._byte_of_cell(162), b._byte_of_cell(162))
    # golden values: a change here breaks every carrying image already written
    assert a._byte_of_cell(170)[[0, 1, 2, 3, 160, 161, 162, 163]].tolist() == [
        72,
        4,
        118,
        15,
        78,
        133,
        128,
        48,
    ]
    assert _spiral(2)[:6].tolist() == [[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1], [-1, -1]]
