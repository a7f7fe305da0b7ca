"""FacePipeline end to end on the public-domain photos, and processing many files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from g2face.align import face_mask, warp_affine  # noqa: E402
from g2face.detection import YuNetDetector  # noqa: E402
from g2face.io import expand_inputs, read_image  # noqa: E402
from g2face.pipeline import FacePipeline, process_files  # noqa: E402

PORTRAITS = ["astronaut.png", "biden.jpg", "grace_hopper.jpg", "obama.jpg"]


@pytest.fixture(scope="module")
def detector() -> YuNetDetector:
    return YuNetDetector()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.mark.parametrize("name", PORTRAITS)
def test_identity_transform_reproduces_the_input(detector, fixtures_dir, name):
    # 512 px crops: at 256 px obama.jpg's face (eyes 100 px apart) is shrunk in the crop, and the
    # detail a 256 px crop cannot hold costs 0.7 dB (44.3 dB); 45 dB then tests the geometry alone.
    image = read_image(fixtures_dir / name).rgb
    result = FacePipeline(detector, lambda crops: crops, crop_size=512).process(image)
    assert len(result.faces) == 1
    assert _psnr(result.image, image) >= 45


def test_constant_colour_changes_only_pixels_inside_face_masks(detector, fixtures_dir):
    image = read_image(fixtures_dir / "astronaut.png").rgb
    image = np.hstack([image, image[:, ::-1]])  # two faces, one batch of two
    calls = []

    def paint(crops: torch.Tensor) -> torch.Tensor:
        calls.append(crops.shape)
        return torch.full_like(crops, 0.5)

    result = FacePipeline(detector, paint, crop_size=128, batch_size=1).process(image)
    assert len(result.faces) == 2 and calls == [(1, 3, 128, 128)] * 2
    support = np.zeros(image.shape[:2], bool)
    for face in result.faces:
        assert face.output_crop.shape == (128, 128, 3) and (face.output_crop == 191).all()
        warped = warp_affine(
            face_mask(128),
            face.aligned.inverse,
            image.shape[1::-1],
            interpolation=cv2.INTER_LINEAR,
            border=cv2.BORDER_CONSTANT,
        )
        support |= warped > 0
    changed = (result.image != image).any(axis=2)
    assert changed.sum() > 0.5 * support.sum()
    np.testing.assert_array_equal(result.image[~support], image[~support])


def test_given_detections_skip_the_detector_and_no_faces_is_a_no_op(detector, fixtures_dir):
    image = read_image(fixtures_dir / "grace_hopper.jpg").rgb
    result = FacePipeline(detector, lambda c: -c).process(image, detections=[])
    assert result.faces == () and (result.image == image).all() and result.image is not image


def test_transform_must_keep_the_shape(detector, fixtures_dir):
    image = read_image(fixtures_dir / "astronaut.png").rgb
    with pytest.raises(ValueError, match="transform returned"):
        FacePipeline(detector, lambda c: c[:, :, ::2, ::2]).process(image)


def test_process_files_mirrors_tree_keeps_alpha_and_survives_bad_inputs(detector, fixtures_dir, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    portrait = read_image(fixtures_dir / "astronaut.png").rgb
    small = cv2.resize(portrait, (256, 256), interpolation=cv2.INTER_AREA)
    Image.fromarray(small).save(src / "a.jpg")
    Image.fromarray(np.dstack([small, np.full(small.shape[:2], 200, np.uint8)])).save(src / "sub" / "b.png")
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(src / "sub" / "blank.png")
    (src / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    out = tmp_path / "out"
    report = process_files(FacePipeline(detector, lambda c: -c), expand_inputs([src]), out, suffix=".png")
    assert [o.ok for o in report.outcomes] == [True, True, False, False]
    assert "no face found" in report.failed[0].error and "truncated or corrupt" in report.failed[1].error
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["a.png", "sub", "sub/b.png"]
    assert read_image(out / "sub" / "b.png").alpha.min() == 200
    assert report.summary() == "4 inputs: 2 done, 2 failed"
