"""The readers of what real photos wear (`g2face.models.readers`): glasses, hair on the chin."""

from __future__ import annotations

import numpy as np
import pytest

from g2face import hub
from g2face.models.fusion import GLASSES_EDGE, GLASSES_EDGE_ORIGINAL, GLASSES_SURE_ORIGINAL
from g2face.models.readers import (
    EYE_BAND_SIZE,
    EYE_CORNERS,
    GLASSES_AGREED_PROBABILITY,
    GLASSES_CANDIDATE_PROBABILITY,
    GLASSES_DOUBT_PROBABILITY,
    GLASSES_NONE_PROBABILITY,
    GLASSES_READER_MIN_SPAN,
    GLASSES_SURE_PROBABILITY,
    LOWER_FACE_SIZE,
    MOUTH_CORNERS,
    LinearReader,
    candidate_glasses,
    chin_features,
    chin_hair_reader,
    eye_band,
    eye_band_features,
    glasses_reader,
    glasses_state,
    lower_face_band,
)


def _mesh(centre=(128.0, 120.0), angle_degrees=0.0, eye_distance=80.0, width=150.0) -> np.ndarray:
    """478 mesh points whose outer eye corners lie `eye_distance` apart around `centre`, turned by
    `angle_degrees`, the rest spread over `width` on the same line."""
    angle = np.radians(angle_degrees)
    direction = np.array([np.cos(angle), np.sin(angle)])
    along = np.linspace(-width / 2, width / 2, 478)
    points = np.asarray(centre) + along[:, None] * direction
    left, right = EYE_CORNERS
    points[left] = np.asarray(centre) - eye_distance / 2 * direction
    points[right] = np.asarray(centre) + eye_distance / 2 * direction
    return points.astype(np.float32)


def test_the_eye_band_is_read_level_and_centred_between_the_eye_corners():
    """A tilted head's band is turned so the eye corners lie on one row, mirror-placed about the
    band's centre: two bright dots on the corners land at the same height, as far left as right."""
    for angle in (0.0, 20.0, -35.0):
        points = _mesh(angle_degrees=angle)
        crop = np.zeros((256, 256, 3), np.uint8)
        for index in EYE_CORNERS:
            x, y = np.round(points[index]).astype(int)
            crop[y - 2 : y + 3, x - 2 : x + 3] = 255
        band = eye_band(crop, points)
        assert band.shape == EYE_BAND_SIZE[::-1]
        half = EYE_BAND_SIZE[0] // 2
        spots = [np.unravel_index(np.argmax(side), side.shape) for side in (band[:, :half], band[:, half:])]
        (row_left, column_left), (row_right, column_right) = spots
        assert abs(row_left - row_right) <= 1, angle
        assert abs(row_left - EYE_BAND_SIZE[1] / 2) <= 2, angle
        assert abs((half - column_left) - (column_right + 1)) <= 2, angle


def test_the_lower_face_band_is_read_with_the_mouth_level():
    """Bright dots on the two mouth corners of a tilted face land on one row of the band, as far
    left of its centre as right."""
    for angle in (0.0, 25.0, -30.0):
        points = _mesh(angle_degrees=angle)
        direction = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
        normal = np.array([-direction[1], direction[0]])
        centre = np.array([128.0, 150.0])
        points[2], points[152] = centre - 30 * normal, centre + 30 * normal  # nose base, chin
        points[MOUTH_CORNERS[0]], points[MOUTH_CORNERS[1]] = centre - 20 * direction, centre + 20 * direction
        crop = np.zeros((256, 256, 3), np.uint8)
        for index in MOUTH_CORNERS:
            x, y = np.round(points[index]).astype(int)
            crop[y - 1 : y + 2, x - 1 : x + 2] = 255
        band = lower_face_band(crop, points)[..., 0]
        assert band.shape == LOWER_FACE_SIZE[::-1]
        half = LOWER_FACE_SIZE[0] // 2
        (row_left, column_left), (row_right, column_right) = (
            np.unravel_index(np.argmax(side), side.shape) for side in (band[:, :half], band[:, half:])
        )
        assert abs(row_left - row_right) <= 1, angle
        assert abs(row_left - LOWER_FACE_SIZE[1] / 2) <= 2, angle
        assert abs((half - column_left) - (column_right + 1)) <= 2, angle


@pytest.mark.parametrize(
    "reader, features", [(glasses_reader, eye_band_features), (chin_hair_reader, chin_features)]
)
def test_the_shipped_readers_fit_their_features(reader, features):
    reader = reader()
    crop = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    values = features(crop, _mesh())
    assert reader.weight.shape == reader.mean.shape == reader.scale.shape == values.shape
    assert np.isfinite(reader.weight).all() and (reader.scale > 0).all()
    assert 0.0 <= reader.probability(values) <= 1.0
    with pytest.raises(ValueError, match="shapes differ"):
        LinearReader(reader.mean, reader.scale, reader.weight[:10], 0.0)


def test_three_states_from_the_reader_and_the_edge():
    """Below the 'none' bar the reader wins even over a sure edge (fringes and cap brims); the edge
    settles only what the reader leans towards."""
    assert glasses_state(GLASSES_NONE_PROBABILITY - 0.01, 10 * GLASSES_SURE_ORIGINAL) is False
    assert glasses_state(GLASSES_NONE_PROBABILITY, GLASSES_EDGE_ORIGINAL) is None
    assert glasses_state(GLASSES_SURE_PROBABILITY, 0.0) is True
    assert glasses_state(GLASSES_SURE_PROBABILITY - 0.01, GLASSES_SURE_ORIGINAL - 1) is None
    assert glasses_state(GLASSES_AGREED_PROBABILITY, GLASSES_SURE_ORIGINAL) is True
    assert glasses_state(GLASSES_AGREED_PROBABILITY - 0.01, GLASSES_SURE_ORIGINAL) is None
    assert glasses_state(GLASSES_DOUBT_PROBABILITY - 0.01, GLASSES_EDGE_ORIGINAL - 1) is False
    assert glasses_state(GLASSES_DOUBT_PROBABILITY - 0.01, GLASSES_EDGE_ORIGINAL) is None
    assert glasses_state(GLASSES_DOUBT_PROBABILITY, GLASSES_EDGE_ORIGINAL - 1) is None


def test_a_candidate_wears_glasses_by_its_edge_or_by_the_reader_where_shown_large_enough(monkeypatch):
    """The edge across the bridge decides alone on a small face's blurred preview; elsewhere the
    reader reading frames the edge misses (thin metal ones) counts too."""
    from types import SimpleNamespace

    import g2face.models.readers as readers

    reading = {}
    monkeypatch.setattr(readers, "glasses_score", lambda crop, points, span=None: reading["edge"])
    monkeypatch.setattr(readers, "eye_band_features", lambda crop, points: None)
    reader = SimpleNamespace(probability=lambda features: reading["p"])
    monkeypatch.setattr(readers, "glasses_reader", lambda: reader)
    crop, points = np.zeros((256, 256, 3), np.uint8), _mesh()
    small, large = GLASSES_READER_MIN_SPAN - 1, GLASSES_READER_MIN_SPAN
    cases = [
        # (edge, reader, span) -> wears
        ((GLASSES_EDGE, 0.0, small), True),
        ((GLASSES_EDGE - 1, GLASSES_CANDIDATE_PROBABILITY, None), True),
        ((GLASSES_EDGE - 1, GLASSES_CANDIDATE_PROBABILITY, large), True),
        ((GLASSES_EDGE - 1, GLASSES_CANDIDATE_PROBABILITY, small), False),
        ((GLASSES_EDGE - 1, GLASSES_CANDIDATE_PROBABILITY - 0.01, None), False),
    ]
    for (edge, probability, span), wears in cases:
        reading.update(edge=edge, p=probability)
        assert candidate_glasses(crop, points, span) is wears, (edge, probability, span)


ASSETS = ("face-landmarker",)


@pytest.mark.skipif(
    not all(hub.is_cached(a) for a in ASSETS), reason="needs the MediaPipe mesh (g2face weights fetch --all)"
)
@pytest.mark.parametrize(
    "name, wears, bare_chin",
    [
        ("grace_hopper.jpg", True, False),
        ("biden.jpg", False, True),
        ("obama.jpg", False, True),
        ("astronaut.png", False, True),
    ],
)
def test_the_public_domain_portraits_are_read_as_they_are(fixtures_dir, name, wears, bare_chin):
    """Grace Hopper wears translucent frames, the others none; a mirrored photo reads the same. The
    three younger chins read bare; Grace Hopper's wrinkled one is unsure (she is read as a woman,
    whose chin the anonymizer then counts as bare anyway)."""
    import torch

    from g2face.align import align_face
    from g2face.detection import YuNetDetector
    from g2face.io import read_image
    from g2face.models.readers import original_bare_chin, original_glasses
    from g2face.nn.crops import crops_to_tensor
    from g2face.priors.mediapipe_geometry import MediaPipeGeometry

    photo = read_image(fixtures_dir / name).rgb
    geometry = MediaPipeGeometry()
    for image in (photo, np.ascontiguousarray(photo[:, ::-1])):
        crop = align_face(image, YuNetDetector().detect(image)[0], 256).crop
        with torch.no_grad():
            points = geometry(crops_to_tensor([crop])).landmarks[0, :, :2].numpy() * 256 - 0.5
        assert original_glasses(crop, points) is wears
        # read as a candidate would be (a fake as clear as these photos reads the same)
        assert candidate_glasses(crop, points) is wears
        assert original_bare_chin(crop, points) is bare_chin
