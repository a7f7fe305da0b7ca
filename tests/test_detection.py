"""YuNet detector: single portraits, group photos, small faces in big images, output conventions."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from g2face.detection import FaceDetector, YuNetDetector, draw_detections
from g2face.detection.yunet import _tile_spans, _unturn
from g2face.io import read_image

PORTRAITS = ["astronaut.png", "biden.jpg", "grace_hopper.jpg", "obama.jpg"]


@pytest.fixture(scope="module")
def detector() -> YuNetDetector:
    return YuNetDetector()


@pytest.mark.parametrize("name", PORTRAITS)
def test_one_face_in_each_public_domain_portrait(detector, fixtures_dir, name):
    image = read_image(fixtures_dir / name).rgb
    faces = detector.detect(image)
    assert len(faces) == 1
    face = faces[0]
    x0, y0, x1, y1 = face.box
    right_eye, left_eye, nose, mouth_right, mouth_left = face.points
    assert face.score > 0.7 and 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]
    assert ((face.points >= (x0, y0)) & (face.points <= (x1, y1))).all()
    # subject's right eye and mouth corner appear on the image's left in these frontal portraits
    assert right_eye[0] < nose[0] < left_eye[0] and mouth_right[0] < mouth_left[0]
    assert max(right_eye[1], left_eye[1]) < nose[1] < min(mouth_right[1], mouth_left[1])


def test_all_six_faces_in_the_group_photo(detector, shared_data):
    path = shared_data / "wild" / "photos" / "group_t1.jpg"
    if not path.exists():
        pytest.skip(f"{path} not found")
    faces = detector.detect(read_image(path).rgb)
    assert len(faces) == 6


def test_small_faces_in_a_large_image_are_found(detector, fixtures_dir):
    """Faces ~40 px wide in a 2600 px canvas are ~10 px at the whole-image pass: only the tiled
    finer levels find them, and a face across a tile seam (x = 620…655 at full resolution, where
    the first tile ends at 640) is found once."""
    portrait = read_image(fixtures_dir / "astronaut.png").rgb
    small = cv2.resize(portrait, (200, 200), interpolation=cv2.INTER_AREA)  # face about 40 px wide
    canvas = np.full((1800, 2600, 3), 90, np.uint8)
    corners = [(550, 100), (2300, 120), (1200, 800), (470, 1500), (2350, 1550)]
    for x, y in corners:
        canvas[y : y + 200, x : x + 200] = small
    assert len(YuNetDetector(working_size=640).detect(cv2.resize(canvas, (640, 443)))) < len(corners)
    faces = detector.detect(canvas)
    assert len(faces) == len(corners)
    centres = sorted((round((f.box[0] + f.box[2]) / 2), round((f.box[1] + f.box[3]) / 2)) for f in faces)
    for (cx, cy), (x, y) in zip(centres, sorted(corners), strict=True):
        assert x < cx < x + 200 and y < cy < y + 200


def test_output_order_is_stable_and_by_score(detector, fixtures_dir):
    portrait = cv2.resize(
        read_image(fixtures_dir / "astronaut.png").rgb, (256, 256), interpolation=cv2.INTER_AREA
    )
    pair = np.hstack([portrait, portrait[:, ::-1]])
    first, second = detector.detect(pair), detector.detect(pair)
    assert len(first) == 2 and first == second
    assert first[0].score >= first[1].score


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_a_point_found_in_a_turned_image_maps_back_to_its_pixel(turns):
    """`_unturn`: a marked pixel of a 7 x 4 image, found in `np.rot90(image, turns)`, comes back
    to where it was (box corners and all five points), with the box's corners in order."""
    image = np.zeros((4, 7), np.uint8)
    marks = [(1, 2), (5, 0), (6, 3), (0, 1), (3, 3), (2, 0), (4, 2)]  # (x, y): 2 corners + 5 points
    for k, (x, y) in enumerate(marks):
        image[y, x] = k + 1
    turned = np.rot90(image, turns)
    found = []
    for k in range(len(marks)):
        y, x = np.argwhere(turned == k + 1)[0]
        found.append((x, y))
    row = np.concatenate([np.asarray(found, float).reshape(-1), [0.9]])
    back = _unturn(row, turns, width=7, height=4)
    corners = np.asarray(marks[:2], float)
    assert np.array_equal(back[:4], np.concatenate([corners.min(axis=0), corners.max(axis=0)]))
    assert np.array_equal(back[4:14].reshape(5, 2), np.asarray(marks[2:], float))
    assert back[14] == 0.9


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_a_face_in_a_photo_saved_sideways_or_upside_down_is_found_with_its_points_in_order(
    detector, fixtures_dir, turns
):
    """Upright-only scanning misses Grace Hopper turned a quarter; the turned scans find her, with
    each of the five points where the upright photo's detection puts it, turned the same way
    (a mirrored or upside-down order would align the face wrongly)."""
    image = read_image(fixtures_dir / "grace_hopper.jpg").rgb
    (upright,) = detector.detect(image)
    turned = np.ascontiguousarray(np.rot90(image, turns))
    if turns == 1:
        assert not YuNetDetector(rotated_scans=False).detect(turned)
    faces = detector.detect(turned)
    assert len(faces) == 1
    expected = np.asarray(upright.points, float)
    height, width = image.shape[:2]
    for k in range(turns):  # where np.rot90 takes each point, one quarter turn at a time
        before = width if k % 2 == 0 else height
        expected = np.stack([expected[:, 1], before - 1 - expected[:, 0]], axis=1)
    eye_distance = np.linalg.norm(expected[0] - expected[1])
    assert np.linalg.norm(faces[0].points - expected, axis=1).max() < 0.1 * eye_distance


@pytest.mark.parametrize("misnamed", [(1, 0, 2, 4, 3), (3, 4, 2, 0, 1), (4, 3, 2, 1, 0)])
def test_misnamed_points_are_named_as_the_face_shows_them(detector, fixtures_dir, misnamed):
    """A detection whose five points are mirrored, upside down or both (what YuNet reports for a
    face it sees tilted or upside down) gets them back in order from the level views; one in
    order is returned as it was."""
    import cv2 as opencv

    image = read_image(fixtures_dir / "grace_hopper.jpg").rgb
    bgr = opencv.cvtColor(image, opencv.COLOR_RGB2BGR)
    (face,) = detector.detect(image)
    row = np.concatenate([face.box, face.points.reshape(-1), [face.score]])
    same, seen = detector._points_in_order(bgr, row)
    assert seen and np.array_equal(same, row)
    wrong = np.concatenate([face.box, face.points[list(misnamed)].reshape(-1), [face.score]])
    fixed = detector._points_in_order(bgr, wrong)[0][4:14].reshape(5, 2)
    eye_distance = np.linalg.norm(face.points[1] - face.points[0])
    assert np.linalg.norm(fixed - face.points, axis=1).max() < 0.1 * eye_distance


def test_tile_spans_cover_with_overlap():
    for length in (100, 640, 641, 1280, 3001):
        spans = _tile_spans(length, 640, 128)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(stop - start <= 640 for start, stop in spans)
        assert all(a_stop - b_start >= 128 for (_, a_stop), (b_start, _) in itertools.pairwise(spans))


def test_protocol_input_checks_and_drawing(detector, fixtures_dir):
    assert isinstance(detector, FaceDetector)
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.detect(np.zeros((10, 10), np.uint8))
    assert detector.detect(np.zeros((64, 64, 3), np.uint8)) == []
    image = read_image(fixtures_dir / "astronaut.png").rgb
    drawn = draw_detections(image, detector.detect(image))
    assert drawn.shape == image.shape and (drawn != image).any() and image is not drawn


def test_guided_full_resolution_pass_finds_the_small_faces(fixtures_dir):
    """With `candidate_threshold`, full-resolution tiles are scanned only around weak responses of
    the level above: faces about 20 px wide in a 2600 px canvas (10 px, too small, at the level
    above) are still all found, with fewer network calls."""
    portrait = read_image(fixtures_dir / "grace_hopper.jpg").rgb
    small = cv2.resize(portrait, (48, 56), interpolation=cv2.INTER_AREA)
    canvas = np.full((1800, 2600, 3), 90, np.uint8)
    corners = [(550, 100), (2300, 120), (1200, 800), (470, 1500)]
    for x, y in corners:
        canvas[y : y + 56, x : x + 48] = small
    exhaustive = YuNetDetector(tile_size=640)
    guided = YuNetDetector(tile_size=640, candidate_threshold=0.05)
    calls = {}
    for name, detector in (("exhaustive", exhaustive), ("guided", guided)):
        run, calls[name] = detector._run, []
        detector._run = lambda patch, run=run, seen=calls[name]: seen.append(patch.shape) or run(patch)
    want, got = exhaustive.detect(canvas), guided.detect(canvas)
    assert len(got) == len(want) == len(corners)
    assert max(f.box[2] - f.box[0] for f in got) < 30  # small enough to need the full-resolution level
    assert len(calls["guided"]) < len(calls["exhaustive"])
    with pytest.raises(ValueError, match="candidate_threshold"):
        YuNetDetector(candidate_threshold=0.9)
    with pytest.raises(ValueError, match="tile_size"):
        YuNetDetector(tile_size=320)
