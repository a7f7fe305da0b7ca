"""Alignment geometry, the soft mask and paste-back, on synthetic images (no detector needed)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from g2face.align import (
    FFHQ_TEMPLATE,
    align_face,
    alignment_matrix,
    crop_source_width,
    estimate_similarity,
    face_mask,
    face_mask_in_image,
    invert_affine,
    paste_faces,
    seen_in_profile,
    template_points,
    transform_points,
    warp_affine,
)
from g2face.types import FaceDetection


def _similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def _detection_for(matrix_crop_to_image: np.ndarray, size: int = 256) -> FaceDetection:
    """A detection whose landmarks are exactly the template carried into the image by `matrix`."""
    points = transform_points(template_points(size), matrix_crop_to_image)
    x0, y0 = points.min(0) - 20
    x1, y1 = points.max(0) + 20
    return FaceDetection((x0, y0, x1, y1), tuple(map(tuple, points)), 0.9)


def test_template_is_mirror_symmetric_ffhq_layout():
    right_eye, left_eye, nose, mouth_right, mouth_left = FFHQ_TEMPLATE
    assert right_eye[0] < 0.5 < left_eye[0] and mouth_right[0] < 0.5 < mouth_left[0]
    assert right_eye[1] < nose[1] < mouth_right[1]
    np.testing.assert_allclose(right_eye[0] + left_eye[0], 1.0, atol=1e-4)
    np.testing.assert_allclose(nose[0], 0.5, atol=1e-4)


def test_estimate_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 500, size=(5, 2))
    truth = _similarity(1.7, -23.0, 40.0, -12.5)
    np.testing.assert_allclose(estimate_similarity(src, transform_points(src, truth)), truth, atol=1e-9)


@pytest.mark.parametrize("size", [128, 256, 512])
def test_landmarks_round_trip_through_template_and_back(size):
    rng = np.random.default_rng(size)
    for _ in range(20):
        exact = _detection_for(
            _similarity(rng.uniform(0.2, 4), rng.uniform(-60, 60), *rng.uniform(0, 900, 2)), size
        )
        m = alignment_matrix(exact, size)
        assert np.abs(transform_points(exact.points, m) - template_points(size)).max() < 1e-6
        noisy = FaceDetection(exact.box, tuple(map(tuple, exact.points + rng.normal(0, 3, (5, 2)))), 0.9)
        m = alignment_matrix(noisy, size)
        back = transform_points(transform_points(noisy.points, m), invert_affine(m))
        assert np.abs(back - noisy.points).max() < 0.5


@pytest.mark.parametrize("scale", [0.3, 0.6, 1.0, 2.5])
def test_crop_pixels_sit_where_the_matrix_says(scale):
    """Blobs drawn at the landmarks appear in the crop at the template points (pixel-centre
    conventions, including the antialiased path for shrinking warps)."""
    size = 256
    det = _detection_for(_similarity(1 / scale, 17.0, 300.0, 250.0), size)
    ys, xs = np.mgrid[0:1200, 0:1200]
    sigma = 3 / scale  # 3 px in the crop
    canvas = sum(np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)) for x, y in det.points)
    image = np.repeat(np.rint(canvas * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    aligned = align_face(image, det, size)
    grey = aligned.crop[:, :, 0].astype(np.float64)
    ys, xs = np.mgrid[0:size, 0:size]
    for tx, ty in template_points(size):
        near = (xs - tx) ** 2 + (ys - ty) ** 2 < 12**2
        w = grey * near
        centroid = np.array([(w * xs).sum(), (w * ys).sum()]) / w.sum()
        assert np.abs(centroid - (tx, ty)).max() < 0.5


def test_warp_matches_plain_warp_affine_when_not_shrinking():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (80, 90, 3), dtype=np.uint8)
    m = _similarity(1.5, 10, -5, 3)
    expected = cv2.warpAffine(
        image, m, (100, 70), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT_101
    )
    np.testing.assert_array_equal(warp_affine(image, m, (100, 70)), expected)


def test_face_mask_is_soft_and_vanishes_at_the_border():
    mask = face_mask(256)
    assert mask.dtype == np.float32 and mask.shape == (256, 256)
    assert mask.min() == 0.0 and mask.max() == 1.0
    assert (
        mask[128, 128] == 1.0
        and (mask[0] == 0).all()
        and (mask[:, 0] == 0).all()
        and (mask[:, -1] == 0).all()
    )
    assert ((mask > 0) & (mask < 1)).sum() > 0.1 * (mask > 0).sum()  # a real feather, not a hard edge
    # the template's eyes, nose and mouth are fully inside
    for x, y in template_points(256).round().astype(int):
        assert mask[y, x] == 1.0
    assert not mask.flags.writeable


def test_paste_back_changes_only_masked_pixels_and_respects_order():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (400, 500, 3), dtype=np.uint8)
    faces = [
        align_face(image, _detection_for(_similarity(0.5, 0, 120, 100)), 128),
        align_face(image, _detection_for(_similarity(0.5, 0, 150, 110)), 128),  # overlaps the first
    ]
    red, blue = np.zeros((128, 128, 3), np.uint8), np.zeros((128, 128, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    out = paste_faces(image, [red, blue], faces)
    support = np.zeros(image.shape[:2], bool)
    for face in faces:
        support |= warp_affine(face_mask(128), face.inverse, (500, 400), interpolation=cv2.INTER_LINEAR) > 0
    changed = (out != image).any(axis=2)
    assert changed.any() and not (changed & ~support).any()
    np.testing.assert_array_equal(out[~support], image[~support])
    # the later face is on top where both masks are full
    cx, cy = transform_points(np.array([[64.0, 72.0]]), faces[1].inverse)[0].round().astype(int)
    assert tuple(out[cy, cx]) == (0, 0, 255)


def test_face_mask_in_image_is_what_paste_back_blends_with():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (300, 340, 3), dtype=np.uint8)
    detection = _detection_for(_similarity(0.6, 8, 90, 60))
    face = align_face(image, detection, 128)
    mask = face_mask_in_image(image.shape, detection, 128)
    white = np.full((128, 128, 3), 255, np.uint8)
    out = paste_faces(image, [white], [face])
    np.testing.assert_array_equal(out[mask == 0], image[mask == 0])
    core = mask >= 1
    assert core.sum() > 1000 and (out[core] == 255).all()


def test_paste_back_of_face_partly_outside_the_image():
    image = np.full((100, 100, 3), 7, np.uint8)
    face = align_face(image, _detection_for(_similarity(0.5, 30, -20, 40)), 128)
    out = paste_faces(image, [np.full((128, 128, 3), 200, np.uint8)], [face])
    assert (out == 200).any() and (out == 7).any()


@pytest.mark.parametrize("scale", [0.25, 1.0, 3.0])
def test_crop_source_width_is_the_photo_pixels_the_crop_spans(scale):
    """A face drawn at `scale` photo pixels per crop pixel: its 256 px crop spans 256 × scale."""
    detection = _detection_for(_similarity(scale, 12.0, 300.0, 200.0))
    assert crop_source_width(detection, 256) == pytest.approx(256 * scale, rel=1e-6)


def _five_points(points, box=(0.0, 0.0, 100.0, 120.0)) -> FaceDetection:
    return FaceDetection(box, tuple(map(tuple, points)), 0.9)


@pytest.mark.parametrize("angle", [0.0, 90.0, 180.0, 35.0])
def test_a_profile_is_seen_in_the_detectors_five_points_at_any_roll(angle):
    """Eyes nearly on top of each other with the nose beside both is a profile; a frontal face and
    a half-turned one (nose between the eyes) are not, whichever way the head is rolled."""
    profile = np.array([[40.0, 40.0], [44.0, 41.0], [20.0, 65.0], [35.0, 85.0], [38.0, 85.0]])
    frontal = np.array([[30.0, 40.0], [70.0, 40.0], [50.0, 62.0], [36.0, 85.0], [64.0, 85.0]])
    half_turned = np.array([[40.0, 40.0], [58.0, 40.0], [44.0, 62.0], [38.0, 85.0], [55.0, 85.0]])
    rotation = _similarity(1.0, angle, 200.0, 200.0)

    def rolled(points):
        return _five_points(transform_points(points, rotation), (100.0, 100.0, 300.0, 300.0))

    scale = _similarity(2.0, 0.0, 0.0, 0.0)  # the points above span a 100 px box; this one 200
    assert seen_in_profile(rolled(transform_points(profile, scale)))
    assert not seen_in_profile(rolled(transform_points(frontal, scale)))
    assert not seen_in_profile(rolled(transform_points(half_turned, scale)))
    # eyes that close with the nose between them: a tiny or foreshortened face, not a profile
    assert not seen_in_profile(_five_points([[40, 40], [44, 40], [42, 62], [38, 85], [46, 85]]))


def test_a_crop_at_its_source_resolution_loses_what_pasting_back_loses():
    """`at_source_resolution`: a crop spanning 64 photo pixels is its 64 px area mean brought back
    up; a crop from a large face is returned as it is; gradients flow (the push uses it)."""
    import torch

    from g2face.nn.crops import at_source_resolution

    torch.manual_seed(0)
    crops = (torch.rand(2, 3, 256, 256) * 2 - 1).requires_grad_()
    out = at_source_resolution(crops, [64.0, 300.0])
    assert torch.equal(out[1], crops[1])
    expected = torch.nn.functional.interpolate(
        torch.nn.functional.avg_pool2d(crops[:1], 4), size=(256, 256), mode="bilinear", align_corners=False
    )
    assert torch.allclose(out[:1], expected, atol=1e-6)
    assert out[0].std() < 0.5 * crops[0].std()  # pixel noise does not survive 4x down and up
    out[0].sum().backward()
    assert crops.grad is not None and crops.grad[0].abs().sum() > 0
    assert at_source_resolution(crops, None) is crops
