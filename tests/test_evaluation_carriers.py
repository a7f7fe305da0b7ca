"""The recovery protocol's image-level paths (g2face.evaluation.carriers) through the real default
pipeline on a committed public-domain photo: the exact container per output format, the in-pixel
payload after attacks, wrong secrets, the face-width table. Needs the cached priors; skipped
with a reason otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from g2face import hub
from g2face.evaluation.carriers import ATTACKS, carrier_record, rescale_to_face_width, width_record
from g2face.io import read_image
from g2face.models.zoo import PACKAGED_WEIGHTS
from g2face.payload import Secret
from g2face.pipeline.g2face import G2FacePipeline

ASSETS = ("mobilestylegan", "sface", "face-landmarker", "dlib-age-gender")
needs_default = pytest.mark.skipif(
    not (PACKAGED_WEIGHTS / "g2face-lite.safetensors").is_file() or not all(hub.is_cached(a) for a in ASSETS),
    reason="needs the shipped g2face-lite weights and the cached priors (g2face weights fetch --all)",
)
PHOTO = Path(__file__).parent / "fixtures" / "astronaut.png"
SECRET, WRONG = Secret(bytes(range(32)), "key"), Secret(bytes(32), "key")


@pytest.fixture(scope="module")
def pipeline() -> G2FacePipeline:
    return G2FacePipeline.from_pretrained("g2face-lite")


def test_attacks_move_coordinates_as_they_move_pixels():
    image = np.zeros((200, 300, 3), np.uint8)
    image[100, 150] = 255
    for name in ("crop10", "resize0.75"):
        attacked, matrix = ATTACKS[name](image)
        x, y = matrix @ np.array([150.0, 100.0, 1.0])
        peak = np.unravel_index(attacked.sum(2).argmax(), attacked.shape[:2])
        assert abs(peak[0] - y) <= 1 and abs(peak[1] - x) <= 1, name


def test_rescale_to_face_width():
    from g2face.types import FaceDetection

    face = FaceDetection((10, 10, 60, 70), tuple((20.0 + i, 30.0) for i in range(5)), 0.9)
    scaled, factor = rescale_to_face_width(np.zeros((100, 80, 3), np.uint8), face, 100)
    assert factor == 2 and scaled.shape == (200, 160, 3)


@needs_default
def test_both_paths_recover_and_a_wrong_secret_never_verifies(pipeline):
    image = read_image(PHOTO).rgb
    face = pipeline.detector.detect(image)[0]
    record = carrier_record(
        pipeline, image, face, SECRET, WRONG, crop=lambda im: im[:8, :8], attacks=("png", "strip_jpeg90")
    )
    assert {k: int(record[f"container.{k}"]) for k in ("png", "jpeg95", "webp")} == {
        "png": 1,
        "jpeg95": 1,
        "webp": 1,
    }
    assert int(record["pixel_payload"]) == 1
    assert int(record["pixel.png"]) == 1 and int(record["pixel.strip_jpeg90"]) == 1
    assert int(record["wrong.container"]) == 0 and int(record["wrong.pixel"]) == 0
    assert record["view.strip_jpeg90"].shape == (8, 8, 3)


@needs_default
def test_a_face_too_small_for_the_payload_counts_as_not_verified(pipeline):
    image = read_image(PHOTO).rgb
    face = pipeline.detector.detect(image)[0]
    record = width_record(pipeline, image, face, SECRET, 40)
    if int(record["detected"]):
        assert int(record["pixel_payload"]) == 0 and int(record["verified"]) == 0
