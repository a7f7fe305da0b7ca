"""Geometric fusion (models/fusion.py) and the multi-band paste (align.blend_faces) on synthetic
meshes and images: no model assets needed."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from g2face.align import blend_faces, estimate_similarity, face_mask, invert_affine
from g2face.models import fusion
from g2face.models.fusion import (
    CHIN_TEXTURE_EDGE,
    EYE_CORNERS,
    EYE_OPENINGS,
    EYELID_PAIRS,
    FACIAL_HAIR_BARE_ORIGINAL,
    FACIAL_HAIR_EDGE,
    FACIAL_HAIR_GAIN_EDGE,
    FACIAL_HAIR_SURE_ORIGINAL,
    GLASSES_EDGE,
    GLASSES_EDGE_ORIGINAL,
    GLASSES_REFERENCE_WIDTH,
    GLASSES_SURE_ORIGINAL,
    KEEP_REGIONS,
    MOUTH_CORNERS,
    MOUTH_INNER_PAIRS,
    MOUTH_OPEN_MIN,
    MOUTH_UPPER_SHARE,
    NUM_MESH_POINTS,
    SUNGLASSES_EYES,
    SUNGLASSES_EYES_SHADED,
    SUNGLASSES_EYES_TINTED,
    UNDER_EYE_DIMMED_BY,
    UNDER_EYE_TINTED,
    UNDER_EYE_TINTED_ORIGINAL,
    FusionSettings,
    _features_mask,
    _shift_lab,
    brow_masks,
    chin_box,
    chin_texture,
    close_eyelids,
    edge_mismatch,
    eye_openness,
    face_region_mask,
    face_width,
    facial_hair_score,
    fit_render_to_original,
    follow_eyelids,
    follow_mouth,
    fuse_face,
    glasses_score,
    iris_masks,
    is_monochrome,
    lens_kind,
    match_brow_tone,
    match_cheek_tone,
    match_iris_tone,
    match_seam,
    mesh_warp,
    mouth_interior,
    mouth_openness,
    open_mouth,
    pull_push_fill,
    render_face_mask,
    skin_coloured,
    skin_mask,
    sunglasses_mask,
    sunglasses_score,
    textured_fill,
    tint_lenses,
    tinted_lens_mask,
    transfer_colour,
    under_eye_shade,
    warp_mesh_to,
    wears_tinted_glasses,
)
from g2face.models.fusion_anonymizer import (
    AGE_PIVOT,
    IDENTITY_JUDGES,
    LIGHT_EYES_ORIGINAL,
    ApparentAttributes,
    CandidateScore,
    CandidateSettings,
    FusionAnonymizer,
    _FaceSearch,
    candidate_seed,
    cheek_tone,
    choose_candidate,
    in_sface_units,
    original_facial_hair,
    probe_age_target,
    probe_targets,
    sure_gender_target,
    surely_same_gender,
)
from g2face.priors.attributes import Attributes
from g2face.types import AlignedFace, FaceDetection

SIZE = 128


def _mesh(centre=(64.0, 70.0), radius=(30.0, 38.0), seed=0) -> np.ndarray:
    """A stand-in mesh: 468 points filling an ellipse (+10 iris points), in crop pixels."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi, NUM_MESH_POINTS + 10)
    r = np.sqrt(rng.uniform(0, 1, NUM_MESH_POINTS + 10))
    r[:36] = 1.0  # an outline
    x = centre[0] + radius[0] * r * np.cos(angle)
    y = centre[1] + radius[1] * r * np.sin(angle)
    return np.stack([x, y, np.zeros_like(x)], 1)


def _image(seed: int, colour=(150, 110, 90)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((SIZE, SIZE, 3), colour, np.float64) + rng.normal(0, 12, (SIZE, SIZE, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_region_mask_is_soft_inside_the_grown_hull_and_zero_far_away():
    points = _mesh()
    mask = face_region_mask(points, SIZE, FusionSettings())
    assert mask.dtype == np.float32 and mask.min() == 0 and mask.max() == 1
    assert mask[70, 64] == 1  # the middle of the face
    assert mask[2, 2] == 0 and mask[125, 125] == 0  # far from it
    assert 0 < np.mean((mask > 0) & (mask < 1)) < 0.2  # a feathered edge, not a hard cut


def test_the_region_fades_in_below_its_top_over_the_forehead_feather():
    """The replaced region's top edge (a straight cut across the forehead) fades in over
    `forehead_feather` face heights; below that, and everywhere with 0, the mask is the plain one."""
    points = _mesh()
    plain = face_region_mask(points, SIZE, FusionSettings(forehead_feather=0.0))
    faded = face_region_mask(points, SIZE, FusionSettings(forehead_feather=0.2))
    mesh = points[:NUM_MESH_POINTS, :2]
    top, height = mesh[:, 1].min(), np.ptp(mesh[:, 1])
    cut = top + FusionSettings().forehead_inset * height
    ramp = slice(int(np.ceil(cut)), int(cut + 0.2 * height))
    assert (faded <= plain + 1e-6).all() and faded[ramp, 64].mean() < plain[ramp, 64].mean() - 0.1
    below = int(np.ceil(cut + 0.2 * height)) + 1
    np.testing.assert_allclose(faded[below:], plain[below:], atol=1e-6)
    assert np.all(np.diff(faded[ramp, 64]) >= -1e-6)  # a ramp down the forehead, no band
    with pytest.raises(ValueError, match="forehead_feather"):
        FusionSettings(forehead_feather=-0.1)


def test_warp_strength_zero_is_the_identity_and_one_moves_points_onto_the_target():
    image = _image(0)
    source = _mesh(seed=1)
    assert mesh_warp(image, source, source + 3, 0.0) is image
    assert warp_mesh_to(image, source, source) is image
    target = _mesh(seed=2)  # a partial warp is the warp to the points that far along
    np.testing.assert_array_equal(
        mesh_warp(image, source, target, 0.3),
        warp_mesh_to(image, source, source[:, :2] + 0.3 * (target[:, :2] - source[:, :2])),
    )
    # A pure translation of every mesh point moves the face by that much inside the mesh.
    stripes = np.zeros((SIZE, SIZE, 3), np.uint8)
    stripes[:, ::8] = 255
    moved = mesh_warp(stripes, source, source + np.array([2.0, 0.0, 0.0]), 1.0)
    centre_row = moved[70, 50:80, 0].astype(int)
    expected = np.roll(stripes[70, :, 0], 2)[50:80].astype(int)
    assert np.mean(np.abs(centre_row - expected)) < 40


def test_a_closed_eye_closes_the_fakes_and_a_wider_open_one_changes_nothing():
    render = _mean_face()
    original = render.copy()
    for upper, lower in EYELID_PAIRS[0]:  # the original's first eye shut: upper lids on the lower
        original[upper] = original[lower]
    assert eye_openness(render)[0] > 0.2 and eye_openness(original)[0] < 0.01
    out = follow_eyelids(render, original)
    assert eye_openness(out)[0] < 0.01  # shut as far as the original's
    for upper, lower in EYELID_PAIRS[0]:  # mostly the upper lid moves, as in a blink
        assert np.linalg.norm(out[upper] - render[upper]) > 3 * np.linalg.norm(out[lower] - render[lower])
    untouched = np.ones(len(render), bool)
    untouched[[i for pair in EYELID_PAIRS[0] for i in pair]] = False
    np.testing.assert_array_equal(out[untouched], render[untouched])  # the other eye, lids' skin, all else
    # an original opening its eyes wider than the render's: the render keeps its own
    wide = render.copy()
    for upper, lower in EYELID_PAIRS[0] + EYELID_PAIRS[1]:
        wide[upper] = render[upper] - 0.5 * (render[lower] - render[upper])
    np.testing.assert_array_equal(follow_eyelids(render, wide), render)
    # a half-closed original: the fake's gap halved too, whatever the eye's width
    half = render.copy()
    for upper, lower in EYELID_PAIRS[1]:
        half[upper] = render[upper] + 0.5 * (render[lower] - render[upper])
    bigger = 128 + 1.5 * (render - 128)
    ratio = eye_openness(follow_eyelids(bigger, half))[1] / eye_openness(bigger)[1]
    assert ratio == pytest.approx(0.5, abs=0.02)


def _shut_mouth(points: np.ndarray) -> np.ndarray:
    """A mesh with its inner lips together (each pair at the pair's midpoint)."""
    shut = points.copy()
    for upper, lower in MOUTH_INNER_PAIRS:
        shut[upper] = shut[lower] = (points[upper] + points[lower]) / 2
    return shut


def _draw_opening(image: np.ndarray, points: np.ndarray, colour: tuple[int, int, int]) -> None:
    """Fill the mouth's opening (inside the inner lip contours of the mesh `points`) with `colour`."""
    upper, lower = fusion._mouth_contours()
    ring = np.round(points[upper + lower[-2:0:-1], :2] * 16).astype(np.int32)
    cv2.fillPoly(image, [ring], colour, cv2.LINE_AA, 4)


def _opened_mouth(points: np.ndarray, by: float) -> np.ndarray:
    """A mesh with its lower inner lip dropped `by` mouth widths further than `points` has it."""
    opened = points.copy()
    width = np.linalg.norm(points[MOUTH_CORNERS[1]] - points[MOUTH_CORNERS[0]])
    for _, lower in MOUTH_INNER_PAIRS:
        opened[lower, 1] += by * width
    return opened


def test_an_open_mouth_opens_the_fakes_and_a_closed_or_narrower_one_changes_nothing():
    render = _shut_mouth(_mean_face())
    original = _opened_mouth(_mean_face(), 0.25)
    assert mouth_openness(render).max() < 1e-6 and mouth_openness(original).mean() > 0.3
    out = follow_mouth(render, original)
    # parted as wide, for its width, as the original's, pair by pair
    np.testing.assert_allclose(mouth_openness(out), mouth_openness(original), atol=1e-6)
    for upper, lower in MOUTH_INNER_PAIRS:  # mostly the lower lip (the jaw) moves
        up, down = np.linalg.norm(out[upper] - render[upper]), np.linalg.norm(out[lower] - render[lower])
        assert down == pytest.approx(up * (1 - MOUTH_UPPER_SHARE) / MOUTH_UPPER_SHARE, rel=1e-6)
    eyes_and_brows = [
        i for region in ("eyes", "brows") for ring in KEEP_REGIONS[region] for i in ring if i < 468
    ]
    np.testing.assert_array_equal(out[eyes_and_brows], render[eyes_and_brows])
    # the chin below the lower lip follows it part of the way; the lip's outer contour (17) with it
    assert 0 < out[152, 1] - render[152, 1] < out[14, 1] - render[14, 1]
    assert out[17, 1] > render[17, 1]
    # a closed original, one parted less than MOUTH_OPEN_MIN wider, or (not closing) a render
    # already open wider
    assert follow_mouth(render, render) is render
    assert follow_mouth(render, _opened_mouth(render, 0.5 * MOUTH_OPEN_MIN)) is render
    assert follow_mouth(original, render, close=False) is original


def test_a_render_open_wider_than_the_original_has_its_lips_brought_together():
    original = _shut_mouth(_mean_face())
    render = _opened_mouth(original, 0.25)
    out = follow_mouth(render, original)
    np.testing.assert_allclose(mouth_openness(out), mouth_openness(original), atol=1e-6)
    for upper, lower in MOUTH_INNER_PAIRS:  # the lips meet, the lower one moving most
        assert out[upper, 1] > render[upper, 1] and out[lower, 1] < render[lower, 1]
        up, down = np.linalg.norm(out[upper] - render[upper]), np.linalg.norm(out[lower] - render[lower])
        assert down == pytest.approx(up * (1 - MOUTH_UPPER_SHARE) / MOUTH_UPPER_SHARE, rel=1e-6)
    assert out[152, 1] < render[152, 1]  # the chin comes up with the lower lip
    # one parted less than MOUTH_OPEN_MIN wider is left as it is
    slightly = _opened_mouth(original, 0.5 * MOUTH_OPEN_MIN)
    assert follow_mouth(slightly, original) is slightly


def test_a_fake_of_a_closed_mouthed_original_shows_no_open_mouth():
    original_points = 128 + 1.5 * (_shut_mouth(_mean_face()) - 128)
    render_points = _opened_mouth(original_points, 0.3)
    original = np.full((SIZE * 2, SIZE * 2, 3), (200, 160, 140), np.uint8)
    render = original.copy()
    _draw_opening(render, render_points, (30, 20, 20))  # the dark of the render's open mouth
    # (no partial mesh warp: its interpolation across the opening blurs where the gap's edges are)
    fused = fuse_face(original, original_points, render, render_points, FusionSettings(warp_strength=0))
    parted = fuse_face(
        original, original_points, render, render_points, FusionSettings(warp_strength=0, close_mouth=False)
    )
    # down the mouth's middle: the dark gap as the render drew it, and no more than the seam of
    # closed lips with the lips brought together
    column = int(round(original_points[13, 0]))
    gap = (render[:, column, 0] < 60).sum()
    assert (parted.preview[:, column, 0] < 60).sum() > 0.5 * gap
    assert (fused.preview[:, column, 0] < 60).sum() <= 3 < 0.2 * gap


def test_open_mouth_parts_drawn_lips_and_the_interior_is_the_originals():
    points = 128 + 1.5 * (_shut_mouth(_mean_face()) - 128)
    image = np.full((SIZE * 2, SIZE * 2, 3), 200, np.uint8)
    outer = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146]
    lips = np.round(points[outer] * 16)
    cv2.fillPoly(image, [lips.astype(np.int32)], (180, 60, 60), cv2.LINE_AA, 4)
    assert open_mouth(image, points, points) is image
    opened = follow_mouth(points, _opened_mouth(points, 0.3))
    parted = open_mouth(image, points, opened)
    # the lips part: below the upper lip's inner contour at the mouth's middle the column reads
    # lip, then the stretched seam, then lip again lower down than before
    column = int(round(points[13, 0]))
    red = parted[:, column, 1] < 120
    assert red.sum() > (image[:, column, 1] < 120).sum()  # thicker in all: the seam stretched
    lowest = np.flatnonzero(image[:, column, 1] < 120).max()
    assert np.flatnonzero(red).max() > lowest + 5  # the lower lip dropped
    # away from the mouth (above the nose's base, the eyes) nothing moves
    top = int(points[[0, 37, 267], 1].min() - 0.45 * np.linalg.norm(points[308] - points[78]))
    np.testing.assert_array_equal(parted[:top], image[:top])
    # the original's interior (here white teeth) fills the fake's opening
    original = image.copy()
    original_points = _opened_mouth(points, 0.3)
    _draw_opening(original, original_points, (250, 250, 250))
    inside, opening = mouth_interior(original, original_points, opened)
    middle = opening > 0.99
    assert middle.sum() > 200 and opening.max() <= 1.0
    assert inside[middle].min() > 240  # the teeth, moved onto the fake's opening
    upper_lip = fusion._mouth_contours()[0]
    assert opening[: int(opened[upper_lip, 1].min()) - 3].max() < 0.01  # nothing above the lips


def test_a_fake_of_an_open_mouthed_original_shows_an_open_mouth():
    render_points = 128 + 1.5 * (_shut_mouth(_mean_face()) - 128)
    original_points = _opened_mouth(render_points, 0.35)
    render = np.full((SIZE * 2, SIZE * 2, 3), (200, 160, 140), np.uint8)
    original = render.copy()
    _draw_opening(original, original_points, (30, 20, 20))  # the dark of an open mouth
    dark = original[..., 0] < 60
    fused = fuse_face(original, original_points, render, render_points, FusionSettings())
    shut = fuse_face(original, original_points, render, render_points, FusionSettings(follow_mouth=False))
    assert (fused.preview[..., 0] < 60).sum() > 0.5 * dark.sum()
    assert (shut.preview[..., 0] < 60).sum() < 0.1 * dark.sum()


def test_close_eyelids_shuts_a_drawn_eye_to_its_lash_line_and_leaves_the_rest():
    points = 128 + 1.5 * (_mean_face() - 128)  # a face ~180 px wide
    image = np.full((SIZE * 2, SIZE * 2, 3), 200, np.uint8)
    for ring in EYE_OPENINGS:  # dark eye openings between the lids
        outline = np.round(points[list(ring)] * 16).astype(np.int32)
        cv2.fillPoly(image, [outline], (20, 20, 20), cv2.LINE_AA, 4)
    dark = (image[..., 0] < 110).sum()
    assert close_eyelids(image, points, points) is image
    shut = points.copy()
    for upper, lower in EYELID_PAIRS[0] + EYELID_PAIRS[1]:
        shut[upper] = shut[lower]
    closed = close_eyelids(image, points, follow_eyelids(points, shut))
    # what stays dark is the lash line, a row or two where the lids meet (the mesh warp left 80 %)
    assert (closed[..., 0] < 110).sum() < 0.35 * dark
    # half closed: about half the opening shows
    half = points.copy()
    for upper, lower in EYELID_PAIRS[0] + EYELID_PAIRS[1]:
        half[upper] = points[upper] + 0.5 * (points[lower] - points[upper])
    halved = (close_eyelids(image, points, follow_eyelids(points, half))[..., 0] < 110).sum()
    assert 0.4 * dark < halved < 0.75 * dark
    # away from the eyes (the brows' tops and up, the nose and down) nothing moves
    width = np.linalg.norm(points[EYE_CORNERS[0][1]] - points[EYE_CORNERS[0][0]])
    lids = [i for pair in EYELID_PAIRS[0] + EYELID_PAIRS[1] for i in pair]
    top = int(points[lids, 1].min() - 0.55 * width)
    np.testing.assert_array_equal(closed[:top], image[:top])
    np.testing.assert_array_equal(closed[int(points[1, 1]) :], image[int(points[1, 1]) :])


def test_the_skin_under_the_eyes_reads_dark_through_tinted_lenses_not_for_dark_eyes():
    points = 128 + 1.5 * (_mean_face() - 128)
    rng = np.random.default_rng(3)
    skin = np.clip(np.full((256, 256, 3), (200, 160, 140), float) + rng.normal(0, 4, (256, 256, 3)), 0, 255)
    bare = skin.astype(np.uint8)
    assert under_eye_shade(bare, points) == pytest.approx(1.0, abs=0.05)
    dark_eyed = bare.copy()  # black make-up or dark eyes: the openings dark, the skin below not
    for ring in EYE_OPENINGS:
        cv2.fillPoly(dark_eyed, [np.round(points[list(ring)]).astype(np.int32)], (30, 25, 25))
    assert under_eye_shade(dark_eyed, points) > 0.9
    tinted = dark_eyed.astype(float)
    for outer, inner in EYE_CORNERS:  # a lens over each eye, down onto the cheek's top
        centre = (points[outer] + points[inner]) / 2
        width = np.linalg.norm(points[inner] - points[outer])
        lens = np.zeros((256, 256), np.uint8)
        cv2.ellipse(
            lens, tuple(np.round(centre).astype(int)), (int(0.8 * width), int(0.6 * width)), 0, 0, 360, 1, -1
        )
        tinted[lens > 0] *= 0.45
    assert under_eye_shade(tinted.astype(np.uint8), points) <= UNDER_EYE_TINTED


def test_fit_lays_a_scaled_and_shifted_mesh_back_onto_the_original():
    original = _mesh()
    render = original.copy()
    render[:, :2] = (original[:, :2] - 64) * 0.8 + 60
    matrix = fit_render_to_original(render, original)
    expected = estimate_similarity(render[:, :2], original[:, :2])
    np.testing.assert_allclose(matrix, expected, atol=1e-6)
    assert abs(np.linalg.det(matrix[:, :2]) - 1 / 0.8**2) < 1e-6


def test_colour_transfer_moves_the_render_skin_towards_the_original():
    points = _mesh()
    original, render = _image(0, (180, 130, 110)), _image(1, (110, 80, 60))
    skin = np.zeros((SIZE, SIZE), bool)
    skin[55:85, 45:85] = True
    region = face_region_mask(points, SIZE, FusionSettings())
    out = transfer_colour(render, original, skin, skin, region, 60.0, FusionSettings())
    before = np.abs(render[skin].mean(0) - original[skin].mean(0)).sum()
    after = np.abs(out[skin].mean(0).astype(float) - original[skin].mean(0)).sum()
    assert after < before / 4


def test_colour_transfer_never_amplifies_the_spread_of_colour():
    """A render whose skin is flat in colour (a*, b*) but whose eye is bluish: matched to a blotchy
    original, lightness contrast may grow, but the eye must not turn bluer than it was."""
    size = 96
    rng = np.random.default_rng(0)
    render = np.full((size, size, 3), (200, 160, 140), np.uint8)
    render[30:40, 30:50] = (120, 130, 160)  # a bluish eye, outside the skin mask
    original = np.clip(rng.normal((190, 150, 130), (20, 25, 5), (size, size, 3)), 0, 255).astype(np.uint8)
    skin = np.ones((size, size), bool)
    skin[25:45, 25:55] = False
    region = np.zeros((size, size), np.float32)  # global transfer only
    # step 1's bound alone: the original's noise here is not shading, and `match_shading_colour`
    # would move the dark eye by its (bounded) slope on lightness
    settings = FusionSettings(shading_sigma=0.01, match_shading_colour=False)
    lab = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2LAB).astype(float)  # noqa: E731
    eye = (slice(30, 40), slice(30, 50))

    def eye_offset(out: np.ndarray) -> np.ndarray:  # the eye's a*, b* relative to the skin's
        return lab(out)[eye].mean((0, 1))[1:] - lab(out)[skin].mean(0)[1:]

    bounded = transfer_colour(render, original, skin, skin, region, 60.0, settings)
    unbounded = transfer_colour(
        render, original, skin, skin, region, 60.0, dataclasses.replace(settings, chroma_std_max=1.4)
    )
    before = eye_offset(render)
    assert np.abs(eye_offset(bounded)).max() <= np.abs(before).max() + 1
    assert np.abs(eye_offset(unbounded)).max() > np.abs(before).max() + 3  # what the bound prevents


def test_colour_transfer_keeps_a_light_renders_shadows_shadows_on_a_dark_photo():
    """A light render's eye socket, about 0.7 of its skin's lightness, laid onto a photo whose skin is
    much darker and more spread: matched by differences (mean and spread of L*) the socket went
    near black; by ratios (`lightness_as_ratios`) it stays a shadow of the fake's skin level."""
    size = 96
    rng = np.random.default_rng(0)
    lab_render = np.empty((size, size, 3), np.float32)
    lab_render[...] = (180, 145, 150)
    lab_render[..., 0] += rng.normal(0, 12, (size, size))
    lab_render[30:42, 25:70, 0] = 120  # the socket, outside the skin mask
    lab_original = np.empty((size, size, 3), np.float32)
    lab_original[...] = (95, 145, 150)
    lab_original[..., 0] += rng.normal(0, 22, (size, size))
    to_rgb = lambda lab: cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)  # noqa: E731
    render, original = to_rgb(lab_render), to_rgb(lab_original)
    skin = np.ones((size, size), bool)
    skin[25:47, 20:75] = False
    region = np.zeros((size, size), np.float32)  # the global step only
    settings = FusionSettings(shading_sigma=0.01, match_shading_colour=False)
    lightness = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2LAB)[..., 0].astype(float)  # noqa: E731

    def socket_over_skin(out: np.ndarray) -> float:  # as a ratio of L* + 16, as light makes it
        zero = 16 * 255 / 100
        return (lightness(out)[30:42, 25:70].mean() + zero) / (np.median(lightness(out)[skin]) + zero)

    before = socket_over_skin(render)
    ratios = transfer_colour(render, original, skin, skin, region, 60.0, settings)
    differences = transfer_colour(
        render, original, skin, skin, region, 60.0, dataclasses.replace(settings, lightness_as_ratios=False)
    )
    assert 0.6 < before < 0.8
    assert socket_over_skin(ratios) > before**1.5 > 0.45  # the spread's bound (1.4) at most deepens it so
    assert lightness(ratios)[30:42, 25:70].mean() > 35
    assert lightness(differences)[30:42, 25:70].mean() < 20  # what ratios prevent: the socket near black
    assert abs(np.median(lightness(ratios)[skin]) - np.median(lightness(original)[skin])) < 6


def test_colour_transfer_gives_the_renders_shadows_the_originals_warmth():
    """Real skin is warmer and more saturated where it is darker; a render's shadows often are
    grey. With `match_shading_colour` the fake's a* and b* follow its lightness as the original's
    do (each skin's mean colour kept), and hair far darker than the skin gets a bounded shift."""
    size = 96
    shade = np.linspace(0, 1, size)[None, :]  # the light falls off to the right
    lab_original = np.empty((size, size, 3), np.float32)
    lab_original[..., 0] = 200 - 50 * shade  # OpenCV's 8-bit Lab
    lab_original[..., 1] = 140 + 12 * shade  # redder ...
    lab_original[..., 2] = 145 + 15 * shade  # ... and yellower in the shadow
    original = cv2.cvtColor(lab_original.astype(np.uint8), cv2.COLOR_LAB2RGB)
    lab_render = np.empty_like(lab_original)
    lab_render[..., 0] = 190 - 60 * shade
    lab_render[..., 1:] = (142, 146)  # a grey shadow: the colour does not change
    lab_render[:10] = (20, 130, 132)  # dark hair along the top
    render = cv2.cvtColor(lab_render.astype(np.uint8), cv2.COLOR_LAB2RGB)
    skin = np.ones((size, size), bool)
    skin[:14] = False
    region = np.zeros((size, size), np.float32)  # global transfer only

    def slope(image: np.ndarray, channel: int) -> float:
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(float)[skin]
        return float(np.polyfit(lab[:, 0], lab[:, channel], 1)[0])

    warm = transfer_colour(render, original, skin, skin, region, 60.0, FusionSettings())
    grey = transfer_colour(
        render, original, skin, skin, region, 60.0, FusionSettings(match_shading_colour=False)
    )
    for channel in (1, 2):
        assert abs(slope(warm, channel) - slope(original, channel)) < 0.05
        assert abs(slope(grey, channel)) < 0.05
    mean = lambda image: cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(float)[skin].mean(0)  # noqa: E731
    np.testing.assert_allclose(mean(warm), mean(grey), atol=1.5)
    hair = lambda image: cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(float)[:10].mean((0, 1))  # noqa: E731
    assert np.abs(hair(warm)[1:] - hair(grey)[1:]).max() < 12  # unbounded: ~40 (170 L* below the skin)
    # An original whose darker skin is greyer (stubble, a colour cast) does not make the fake's
    # shadows grey: they keep the render's own relation (neutral here).
    lab_original[..., 1:] = 2 * lab_original[..., 1:].mean((0, 1)) - lab_original[..., 1:]
    cast = cv2.cvtColor(lab_original.astype(np.uint8), cv2.COLOR_LAB2RGB)
    assert slope(cast, 1) > 0.1 and slope(cast, 2) > 0.1
    neutral = transfer_colour(render, cast, skin, skin, region, 60.0, FusionSettings())
    for channel in (1, 2):
        assert abs(slope(neutral, channel)) < 0.05


def test_cheek_tone_reads_colour_photos_and_gives_none_without_colour_or_cheeks():
    points = _mean_face() / 256 + 0.5 / 256  # unit crop coordinates
    skin = np.full((256, 256, 3), (170, 120, 100), np.uint8)
    assert 0 < cheek_tone(skin, points) < 60
    assert cheek_tone(np.full((256, 256, 3), 128, np.uint8), points) is None  # black and white
    assert cheek_tone(skin, points + 2.0) is None  # the face is outside the crop


def _mean_face(size: int = 256) -> np.ndarray:
    """MediaPipe's mean face mesh (the committed shape basis) in crop pixels, ~120 px wide."""
    from importlib import resources

    from safetensors.numpy import load_file

    mean = load_file(str(resources.files("g2face") / "assets" / "mediapipe_shape_basis.safetensors"))["mean"]
    mesh = mean.reshape(NUM_MESH_POINTS, 3)[:, :2].astype(np.float64)
    return np.stack([size / 2 + 8 * mesh[:, 0], size / 2 - 8 * mesh[:, 1]], 1)


def test_skin_mask_keeps_bare_skin_only():
    points = _mean_face()
    image = np.full((256, 256, 3), (170, 120, 100), np.uint8)
    cheek = np.round(points[50]).astype(int)  # the subject's right cheek point
    image[cheek[1] - 3 : cheek[1] + 3, cheek[0] - 3 : cheek[0] + 3] = 255  # a specular highlight
    forehead = np.round(points[151]).astype(int)
    image[forehead[1] - 3 : forehead[1] + 3, forehead[0] - 3 : forehead[0] + 3] = 20  # a mole / stray hair
    skin = skin_mask(points, image)
    assert skin.sum() > 2000
    for name in ("eyes", "mouth", "brows"):
        for polygon in KEEP_REGIONS[name]:
            for i in polygon[:NUM_MESH_POINTS]:
                if i < NUM_MESH_POINTS:
                    x, y = np.round(points[i]).astype(int)
                    assert not skin[y, x], f"{name} landmark {i} counted as skin"
    assert not skin[cheek[1], cheek[0]] and not skin[forehead[1], forehead[0]]
    assert skin[cheek[1] + 8, cheek[0]]  # the cheek around the highlight is skin
    top = points[:, 1].min()
    assert not skin[: int(top) + 10].any()  # nothing at the hairline


def test_colour_transfer_follows_the_original_skin_locally_without_its_dark_features():
    size = 128
    ramp = np.linspace(90, 200, size)[None, :, None]  # light from the right
    original = np.clip(np.broadcast_to(ramp, (size, size, 3)) * np.array([1.0, 0.75, 0.6]), 0, 255)
    original = original.astype(np.uint8).copy()
    original[40:52, 30:50] = 10  # an eye: dark, not skin
    render = np.full((size, size, 3), (225, 190, 175), np.uint8)
    skin = np.zeros((size, size), bool)
    skin[20:110, 15:113] = True
    original_skin = skin.copy()
    original_skin[36:56, 26:54] = False
    region = np.zeros((size, size), np.float32)
    region[10:120, 10:118] = 1
    # the mechanism at a fine scale (the shipped 0.5 face widths follows only the broad light)
    out = transfer_colour(
        render, original, skin, original_skin, region, 100.0, FusionSettings(shading_sigma=0.12)
    )
    lab = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2LAB).astype(float)  # noqa: E731
    left, right = (slice(60, 100), slice(25, 45)), (slice(60, 100), slice(85, 105))
    for part in (left, right):  # each side of the face takes the original's colour there
        assert np.abs(lab(out)[part].mean((0, 1)) - lab(original)[part].mean((0, 1))).max() < 8
    beside_eye = (slice(40, 52), slice(54, 62))
    assert lab(out)[beside_eye][..., 0].mean() > lab(original)[beside_eye][..., 0].mean() - 8


def test_each_cheek_takes_the_originals_tone_unless_the_originals_is_hidden():
    from g2face.priors.skin_tone import CHEEK_POLYGONS, cheek_mask, trimmed_lab_mean

    points = _mean_face()
    size = 256
    original = np.full((size, size, 3), (170, 120, 100), np.uint8)
    cheeks = [cheek_mask(size, points / size, (polygon,)) for polygon in CHEEK_POLYGONS]
    original[cheeks[0]] = (140, 95, 80)  # photos' cheeks sit below the skin's mean
    original[cheeks[1]] = (150, 100, 85)
    render = np.full((size, size, 3), (175, 128, 108), np.uint8)  # renders' cheeks above it
    region = np.ones((size, size), np.float32)
    skin = np.ones((size, size), bool)
    out = match_cheek_tone(render, original, points, points, skin, region, 120.0)
    lab = lambda im, m: trimmed_lab_mean(cv2.cvtColor(im, cv2.COLOR_RGB2LAB)[m].astype(float))  # noqa: E731
    for cheek in cheeks:  # each read as the ITA reads a cheek: trimmed mean over the polygon
        expected, before, got = lab(original, cheek), lab(render, cheek), lab(out, cheek)
        assert np.abs(got - expected).max() < np.abs(before - expected).max() / 4
    forehead = np.round(points[151]).astype(int)
    assert np.abs(out[forehead[1], forehead[0]].astype(int) - render[forehead[1], forehead[0]]).max() <= 2
    # the original's right cheek covered (not skin: a hand, hair): that cheek keeps the render's tone
    covered = skin & ~cheeks[0]
    out = match_cheek_tone(render, original, points, points, covered, region, 120.0)
    centre = np.round(points[50]).astype(int)  # the subject's right cheek point
    assert np.abs(out[centre[1], centre[0]].astype(int) - render[centre[1], centre[0]]).max() <= 3
    assert not np.array_equal(out[cheeks[1]], render[cheeks[1]])
    # the original's right cheek outside its skin mask but coloured like its skin (a turned face's
    # far cheek lies near the outline, where `skin_mask` does not reach): read and matched
    near_outline = original.copy()
    near_outline[cheeks[0]] = (166, 117, 97)
    out = match_cheek_tone(render, near_outline, points, points, covered, region, 120.0)
    expected, before, got = lab(near_outline, cheeks[0]), lab(render, cheeks[0]), lab(out, cheeks[0])
    assert np.abs(got - expected).max() < np.abs(before - expected).max() / 4
    # the render's right cheek not bare (its own shadow or hair) while the original's is: still
    # moved to the original's tone there (left alone it kept the colour transfer's, which on wild
    # photos was 10-20 degrees of ITA off)
    shadowed = render.copy()
    # darker than the rest of its face: what `skin_mask`'s lightness trim leaves out of its skin
    shadowed[cheeks[0]] = (120, 82, 68)
    out = match_cheek_tone(shadowed, original, points, points, skin, region, 120.0)
    for cheek in cheeks:
        expected, before, got = lab(original, cheek), lab(shadowed, cheek), lab(out, cheek)
        assert np.abs(got - expected).max() < np.abs(before - expected).max() / 4
    # and outside the replaced region nothing moves
    out = match_cheek_tone(render, original, points, points, skin, np.zeros_like(region), 120.0)
    assert np.array_equal(out, render)


def _face_with_irises(size: int = 256) -> np.ndarray:
    """`_mean_face` with MediaPipe's ten iris points: each centred in its eye's opening, its rim a
    quarter of the eye's width out."""
    mesh = _mean_face(size)
    irises = []
    for ring in EYE_OPENINGS:
        eye = mesh[list(ring)]
        centre, radius = eye.mean(0), 0.25 * np.ptp(eye[:, 0])
        irises += [centre] + [centre + radius * np.array(d) for d in ((1, 0), (0, -1), (-1, 0), (0, 1))]
    return np.concatenate([mesh, np.array(irises)])


def _paint_irises(image: np.ndarray, points: np.ndarray, colour) -> np.ndarray:
    image = image.copy()
    for iris, _ in iris_masks(points, image.shape[0]):
        image[iris] = colour
    return image


def test_the_fakes_irises_take_the_originals_colour_darkened_never_lightened():
    points = _face_with_irises()
    skin = np.full((256, 256, 3), (200, 160, 140), np.uint8)
    assert all(iris.sum() >= 12 for iris, _ in iris_masks(points, 256))
    render = _paint_irises(skin, points, (90, 140, 190))  # blue eyes
    original = _paint_irises(skin, points, (70, 45, 25))  # dark brown eyes
    region = np.ones((256, 256), np.float32)
    out = match_iris_tone(render, original, points, points, region)
    lab = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2LAB).astype(float)  # noqa: E731
    irises = np.logical_or.reduce([iris for iris, _ in iris_masks(points, 256)])
    openings = np.logical_or.reduce([opening for _, opening in iris_masks(points, 256)])
    assert np.abs(lab(out)[irises].mean(0) - lab(original)[irises].mean(0)).max() < 6
    assert np.array_equal(out[~openings], render[~openings])  # lids and skin untouched
    # A lighter original iris gives its hue, not its lightness.
    lighter = match_iris_tone(original, render, points, points, region)
    # (within the RGB gamut's rounding: a dark blue that dark cannot be shown exactly)
    assert lab(lighter)[irises][:, 0].mean() <= lab(original)[irises][:, 0].mean() + 4
    assert lab(lighter)[irises][:, 2].mean() < lab(original)[irises][:, 2].mean() - 10  # bluer
    # A closed eye (upper lid on the lower) reads no iris: nothing moves.
    closed = points.copy()
    for ring in EYE_OPENINGS:
        closed[list(ring), 1] = points[list(ring), 1].max()
    assert not any(iris.any() for iris, _ in iris_masks(closed, 256))
    assert np.array_equal(match_iris_tone(render, original, points, closed, region), render)


def test_the_fakes_brows_are_at_least_as_much_darker_than_its_skin_as_the_originals():
    points = _mean_face()
    size = 256
    base = np.full((size, size, 3), (190, 150, 130), np.uint8)
    skin = skin_mask(points, base)

    def with_brows(level: int) -> np.ndarray:
        image = base.copy()
        for brow in brow_masks(points, size):
            ys, xs = np.nonzero(brow)
            image[ys[::2], xs[::2]] = level  # hairs on every other pixel, skin between them
        return image

    lightness = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2LAB)[..., 0].astype(float)  # noqa: E731
    brows = np.logical_or.reduce(brow_masks(points, size))
    region = np.ones((size, size), np.float32)
    pale, dark = with_brows(120), with_brows(60)
    darkened = match_brow_tone(pale, dark, points, points, skin, skin, region)
    lightened = match_brow_tone(dark, pale, points, points, skin, skin, region)
    assert lightness(darkened)[brows].mean() < lightness(pale)[brows].mean() - 8
    assert np.array_equal(lightened, dark)  # darkened, never lightened
    outside = ~cv2.dilate(brows.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert np.array_equal(darkened[outside], pale[outside])  # only the brows move
    # A face without a brow to read (none darker than the skin) keeps the render's.
    assert np.array_equal(match_brow_tone(dark, base, points, points, skin, skin, region), dark)


def test_the_fakes_face_shows_no_colour_the_originals_face_does_not():
    """`match_chroma_range`: a teal patch across a render's eye (eyeshadow, a shadow the colour
    transfer turned green) takes the nearest colour the original shows there, its skin's on the
    skin and its eyes' and mouth's in the eye, lightness kept; a fake inside those ranges (white
    eyes and red lips too, colours the skin never has) is left exactly as it is."""
    from g2face.models.fusion import eyes_and_mouth_mask, match_chroma_range

    points = _mean_face()
    size = 256
    rng = np.random.default_rng(0)
    noise = rng.integers(-6, 7, (size, size, 3))
    features = eyes_and_mouth_mask(points, size)
    eyes = np.logical_or.reduce(
        [
            cv2.fillPoly(
                np.zeros((size, size), np.uint8), [np.round(points[list(r), :2]).astype(np.int32)], 1
            )
            > 0
            for r in EYE_OPENINGS
        ]
    )
    assert (features & eyes).sum() > 50 and (features & ~eyes).sum() > 50  # eyes and mouth

    def face(skin, noise):
        image = np.clip(np.array(skin) + noise, 0, 255)
        image[features & eyes] = (232, 230, 228)  # white of the eye
        image[features & ~eyes] = (170, 60, 70)  # red lips
        return image.astype(np.uint8)

    original = face((200, 160, 140), noise)
    render = face((198, 159, 141), noise[::-1] // 2)
    region = np.ones((size, size), np.float32)
    assert np.array_equal(match_chroma_range(render, original, points, points, region), render)
    eye = points[list(EYE_OPENINGS[0]), :2]
    x0, y0 = np.floor(eye.min(0)).astype(int) - 6
    x1, y1 = np.ceil(eye.max(0)).astype(int) + 6
    patch = np.zeros((size, size), bool)
    patch[y0:y1, x0:x1] = True
    teal = render.copy()
    teal[patch] = (110, 150, 150)
    out = match_chroma_range(teal, original, points, points, region)
    lab = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2LAB).astype(float)  # noqa: E731
    for area in (~features, features):
        ab = lab(original)[area][:, 1:]
        low, high = ab.min(0) - 2, ab.max(0) + 2
        moved = lab(out)[patch & area][:, 1:]
        assert ((moved >= low) & (moved <= high)).all()
    assert np.abs(lab(out)[patch][:, 0] - lab(teal)[patch][:, 0]).mean() < 3  # lightness kept
    assert np.array_equal(out[~patch], teal[~patch])
    # outside the replaced region nothing moves
    assert np.array_equal(match_chroma_range(teal, original, points, points, np.zeros_like(region)), teal)


def test_render_lips_are_made_about_as_red_as_the_originals():
    from g2face.models.fusion import (
        LIP_RAISE_MAX,
        LIP_REDNESS_FLOOR,
        LIP_REDNESS_MARGIN,
        lips_mask,
        match_lip_tone,
    )
    from g2face.priors.skin_tone import trimmed_lab_mean

    points = _mean_face()
    size = 256
    lips = lips_mask(points, size)
    assert lips.sum() > 100
    mouth_centre = np.round(points[[13, 14]].mean(0)).astype(int)  # between the lips: the opening
    assert not lips[mouth_centre[1], mouth_centre[0]]
    skin = ~lips
    region = np.ones((size, size), np.float32)
    original = np.full((size, size, 3), (170, 120, 100), np.uint8)
    original[lips] = (165, 100, 95)  # lips barely redder than the skin (a man's)
    render = np.full((size, size, 3), (170, 120, 100), np.uint8)
    render[lips] = (200, 60, 80)  # bright red render lips
    lab = lambda im, m: trimmed_lab_mean(cv2.cvtColor(im, cv2.COLOR_RGB2LAB)[m].astype(float))  # noqa: E731
    redness = lambda im: lab(im, lips)[1] - lab(im, skin)[1]  # noqa: E731
    out = match_lip_tone(render, original, points, points, skin, skin, region, 120.0)
    allowed = max(redness(original), LIP_REDNESS_FLOOR) + LIP_REDNESS_MARGIN
    assert redness(render) > allowed + 10
    assert abs(redness(out) - allowed) < 2.5
    assert abs(lab(out, lips)[0] - lab(render, lips)[0]) < 3  # lightness stays the render's
    # outside the replaced region nothing moves
    out = match_lip_tone(render, original, points, points, skin, skin, np.zeros_like(region), 120.0)
    assert np.array_equal(out, render)
    # pale render lips under an original's dark red lipstick take its colour over the skin
    lipstick = original.copy()
    lipstick[lips] = (165, 70, 75)
    assert LIP_REDNESS_MARGIN + 5 < redness(lipstick) - redness(original) < LIP_RAISE_MAX[1]
    out = match_lip_tone(original, lipstick, points, points, skin, skin, region, 120.0)
    assert abs(redness(out) - redness(lipstick)) < 2.5
    assert abs(lab(out, lips)[0] - lab(lipstick, lips)[0]) < 3  # darker too
    # by no more than LIP_RAISE_MAX however red the original's lip ring reads (a red microphone)
    red_thing = original.copy()
    red_thing[lips] = (250, 0, 0)
    out = match_lip_tone(original, red_thing, points, points, skin, skin, region, 120.0)
    assert redness(out) - redness(original) < LIP_RAISE_MAX[1] + 1.5
    # lips as red as the original's, or within the margin of it, do not move
    assert np.array_equal(
        match_lip_tone(original, original, points, points, skin, skin, region, 120.0), original
    )


def test_lip_tone_leaves_the_skin_round_the_lips_and_their_dark_edge_alone():
    from g2face.models.fusion import lips_mask, match_lip_tone

    points = _mean_face()
    size = 256
    lips = lips_mask(points, size)
    inner = cv2.erode(lips.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    edge = lips & ~inner  # the lips' rim, drawn as dark as a mouth's shadow and no redder than skin
    skin = ~lips
    region = np.ones((size, size), np.float32)
    original = np.full((size, size, 3), (170, 120, 100), np.uint8)
    original[lips] = (165, 100, 95)
    render = np.full((size, size, 3), (170, 120, 100), np.uint8)
    render[inner] = (200, 60, 80)
    render[edge] = (85, 60, 50)
    out = match_lip_tone(render, original, points, points, skin, skin, region, 120.0)
    a = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2LAB)[..., 1].astype(float)  # noqa: E731
    assert a(out)[inner].mean() < a(render)[inner].mean() - 5  # the red lips are toned down
    # the rim keeps its colour (lowered by one amount it went grey-green), and so does the skin
    # beyond a couple of pixels from the lips
    assert np.abs(a(out)[edge] - a(render)[edge]).max() <= 1
    far = cv2.distanceTransform((~lips).astype(np.uint8), cv2.DIST_L2, 5) > 2.5
    assert np.array_equal(out[far], render[far])


@pytest.mark.parametrize("sigma", [3.0, 20.0, 60.0])
def test_a_wide_blur_at_reduced_resolution_matches_the_full_one(sigma):
    from g2face.models.fusion import _low_pass

    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (256, 256, 3)).astype(np.float32)
    image[60:200, 80:180] += 80  # a face-sized patch: the low frequencies the transfer uses
    full = cv2.GaussianBlur(image, (0, 0), sigma)
    fast = _low_pass(image, sigma)
    assert fast.shape == full.shape and fast.dtype == np.float32
    assert np.abs(fast - full).max() < 0.02 * (image.max() - image.min())


def test_fuse_face_returns_crop_mask_and_a_preview_that_keeps_the_outside():
    original, render = _image(0), _image(3, (90, 140, 200))
    fused = fuse_face(original, _mesh(), render, _mesh(seed=5, centre=(62, 72)), FusionSettings())
    assert fused.crop.shape == original.shape and fused.mask.shape == (SIZE, SIZE)
    outside = fused.mask == 0
    assert np.array_equal(fused.preview[outside], original[outside])


def test_a_black_and_white_or_toned_photo_gets_a_face_of_its_tone():
    render = _image(3, (90, 140, 200))
    grey = np.repeat(_image(0).mean(2, keepdims=True).astype(np.uint8), 3, axis=2)
    sepia = np.clip(grey * np.array([1.0, 0.85, 0.65]), 0, 255).astype(np.uint8)
    assert is_monochrome(grey) and is_monochrome(sepia) and not is_monochrome(render)
    for original in (grey, sepia):
        fused = fuse_face(original, _mesh(), render, _mesh(seed=5, centre=(62, 72)), FusionSettings())
        for image in (fused.crop, fused.preview):
            assert is_monochrome(image)
    fused = fuse_face(grey, _mesh(), render, _mesh(seed=5, centre=(62, 72)), FusionSettings())
    assert np.abs(np.diff(fused.crop.astype(int), axis=2)).max() <= 2  # grey stays grey
    # A colour photo keeps its colour.
    colour = fuse_face(_image(0), _mesh(), render, _mesh(seed=5, centre=(62, 72)), FusionSettings())
    assert not is_monochrome(colour.crop)


def _aligned(image: np.ndarray, scale: float, offset: tuple[float, float]) -> AlignedFace:
    matrix = np.array([[scale, 0, -offset[0] * scale], [0, scale, -offset[1] * scale]])
    det = FaceDetection((0, 0, 1, 1), ((0, 0),) * 5, 1.0)
    return AlignedFace(crop=np.zeros((SIZE, SIZE, 3), np.uint8), matrix=matrix, inverse=invert_affine(matrix),
                       detection=det)  # fmt: skip


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])
def test_blend_faces_changes_only_pixels_inside_the_footprint(scale):
    image = _image(7, (40, 90, 160))
    image = np.tile(image, (3, 3, 1))  # 384 x 384
    face = _aligned(image, scale, (100.0, 120.0))
    crop = np.full((SIZE, SIZE, 3), 250, np.uint8)
    mask = face_mask(SIZE)
    out, footprints = blend_faces(image, [crop], [face], [mask])
    (fp,) = footprints
    changed = np.any(out != image, axis=2)
    inside = np.zeros(changed.shape, bool)
    x0, y0, x1, y1 = fp.box
    inside[y0:y1, x0:x1] = fp.mask
    assert changed.any()
    assert not (changed & ~inside).any()  # nothing changed outside the footprint
    # The middle of the face is the crop's.
    cy, cx = (np.array([0.56, 0.5]) * SIZE / scale + np.array([120.0, 100.0])).astype(int)
    assert out[cy, cx].min() > 200


def test_candidate_seeds_are_stable_and_distinct():
    seeds = [candidate_seed(123, k) for k in range(8)]
    assert seeds[0] == 123 and len(set(seeds)) == 8
    assert seeds == [candidate_seed(123, k) for k in range(8)]
    assert all(0 <= s < 2**63 for s in seeds)


def test_candidate_scores_prefer_a_different_person_of_the_same_apparent_gender():
    settings = CandidateSettings()
    same_gender = CandidateScore(similarity=0.1, gender_gap=0.05, age_gap=3)
    other_gender = CandidateScore(similarity=0.0, gender_gap=0.9, age_gap=3, same_gender=False)
    # P(male) 0.6 vs 0.3: a gap under 0.5, but the other side of the line
    just_across = CandidateScore(similarity=0.0, gender_gap=0.3, age_gap=3, same_gender=False)
    assert not just_across.acceptable(settings)
    too_similar = CandidateScore(similarity=0.6, gender_gap=0.0, age_gap=0)
    assert same_gender.acceptable(settings)
    assert not other_gender.acceptable(settings) and not too_similar.acceptable(settings)
    assert same_gender.cost(settings) < other_gender.cost(settings)
    older = CandidateScore(similarity=0.1, gender_gap=0.05, age_gap=20)
    assert older.cost(settings) > same_gender.cost(settings)


def test_a_kept_candidate_names_what_it_misses_of_the_search_goals():
    """What the report asks a reviewer to check (`AnonymizedFaces.shortfalls`): nothing for an
    acceptable fake; the similarity over the bar; attributes only where they were read."""
    settings = CandidateSettings()
    read = {"male_probability": 0.9, "age": 40.0}
    assert CandidateScore(similarity=0.1, **read).shortfalls(settings) == ()
    assert CandidateScore(similarity=0.1, age_gap=settings.max_age_gap, **read).shortfalls(settings) == ()
    (similar,) = CandidateScore(similarity=0.37).shortfalls(settings)
    assert "0.37" in similar and f"{settings.max_similarity:.2f}" in similar
    missed = CandidateScore(
        similarity=0.1, same_gender=False, age_gap=14, adds_glasses=True, loses_facial_hair=True, **read
    ).shortfalls(settings)
    assert missed == (
        "apparent gender changed",
        "apparent age 14 years off",
        "glasses added",
        "facial hair lost",
    )
    # --attributes free: no estimates, so nothing of them is claimed
    assert CandidateScore(similarity=0.1, same_gender=False, age_gap=30).shortfalls(settings) == ()


def test_candidate_scores_from_the_estimator_keep_gender_by_side_and_age_by_gap():
    """`_scores` builds each candidate's score from the attribute estimator's output: a regression
    test for fields passed in the wrong order (the age gap once landed in `same_gender`)."""

    class Estimator:
        def __call__(self, crops):
            return Attributes(age=torch.tensor([30.0, 62.0]), male_probability=torch.tensor([0.3, 0.7]))

    anonymizer = SimpleNamespace(
        identity=lambda crops: torch.eye(2, 3), attributes=Estimator(), candidates=CandidateSettings()
    )
    faces = [np.zeros((8, 8, 3), np.uint8)] * 2
    young_other_side, old_same_side = FusionAnonymizer._scores(
        anonymizer, torch.ones(3), (0.6, 30.0, False), faces
    )
    assert not young_other_side.same_gender and young_other_side.age_gap == 0
    assert old_same_side.same_gender and old_same_side.age_gap == pytest.approx(32)
    settings = CandidateSettings()
    assert not young_other_side.acceptable(settings) and not old_same_side.acceptable(settings)


def test_a_candidate_is_surely_of_the_originals_gender_only_well_on_its_side():
    assert surely_same_gender(0.99, 0.9, 0.45) and surely_same_gender(0.02, 0.2, 0.45)
    assert not surely_same_gender(0.8, 0.99, 0.45)  # the right side, but not clearly
    assert not surely_same_gender(0.01, 0.99, 0.45)  # the other side
    assert surely_same_gender(0.7, 0.65, 0.45)  # as clear as the original itself is
    assert surely_same_gender(0.6, 0.6, 0.0)  # margin 0: the side alone


def test_a_second_judge_is_weighed_in_the_first_ones_units():
    sface_mean, sface_std = IDENTITY_JUDGES["sface"]
    dlib_mean, dlib_std = IDENTITY_JUDGES["dlib-resnet"]
    units = in_sface_units(torch.tensor([dlib_mean, dlib_mean + 3 * dlib_std]), "dlib-resnet")
    assert units.tolist() == pytest.approx([sface_mean, sface_mean + 3 * sface_std])
    # Ranked by SFace's cosine plus the second judge's excess over strangers; the bar stays SFace's.
    stranger = CandidateScore(0.25, second_similarity=sface_mean)
    look_alike = CandidateScore(0.2, second_similarity=sface_mean + 3 * sface_std)
    assert stranger.ranking_similarity == pytest.approx(0.25)
    assert look_alike.ranking_similarity == pytest.approx(0.2 + 3 * sface_std)
    assert CandidateScore(0.2).ranking_similarity == 0.2  # no second judge
    settings = CandidateSettings()
    assert choose_candidate([look_alike, stranger], settings) == 1
    over_the_bar = CandidateScore(0.35, second_similarity=sface_mean)
    assert choose_candidate([look_alike, over_the_bar], settings) == 0  # the bar is SFace's alone
    assert choose_candidate([CandidateScore(0.5, second_similarity=0.6), CandidateScore(0.55)], settings) == 1


def test_candidate_scores_weigh_the_second_judge_when_the_search_has_one():
    settings = CandidateSettings(second_judge="dlib-resnet")
    dlib_mean, dlib_std = IDENTITY_JUDGES["dlib-resnet"]
    anonymizer = SimpleNamespace(
        identity=lambda crops: torch.tensor([[0.2, 0.0], [0.2, 0.0]]),
        second_identity=lambda crops: torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        attributes=None,
        candidates=settings,
    )
    faces = [np.zeros((8, 8, 3), np.uint8)] * 2
    reference = torch.tensor([1.0, 0.0])
    alone = FusionAnonymizer._scores(anonymizer, reference, None, faces)
    assert [s.ranking_similarity for s in alone] == pytest.approx([0.2, 0.2])  # no second reference
    second_reference = torch.tensor([dlib_mean + 4 * dlib_std, dlib_mean])
    judged = FusionAnonymizer._scores(anonymizer, reference, None, faces, None, second_reference)
    # The same to SFace; the first looks like the original to the second judge, the second does not.
    assert [s.similarity for s in judged] == pytest.approx([0.2, 0.2])
    assert judged[0].ranking_similarity > 0.5 and judged[1].ranking_similarity == pytest.approx(0.2)
    with pytest.raises(ValueError, match="gender_margin"):
        CandidateSettings(gender_margin=0.5)
    with pytest.raises(ValueError, match="unknown second_judge"):
        CandidateSettings(second_judge="arcface")
    with pytest.raises(ValueError, match="no such recogniser"):
        FusionAnonymizer._check_second_judge(SimpleNamespace(candidates=settings, second_identity=None))


def _bridge_points() -> np.ndarray:
    points = np.zeros((478, 2), np.float32)
    points[133], points[362], points[168] = (100, 120), (156, 120), (128, 118)  # inner eye corners, bridge
    return points


def test_a_spectacle_bridge_is_seen_and_counts_only_where_the_original_has_no_glasses():
    plain = np.full((256, 256, 3), 170, np.uint8)
    spectacles = plain.copy()
    spectacles[112:116, 96:160] = 20  # a dark bar across the nose bridge
    points = _bridge_points()
    assert glasses_score(plain, points) == 0
    assert glasses_score(spectacles, points) >= GLASSES_EDGE > GLASSES_EDGE_ORIGINAL / 2
    wrinkle = plain.copy()
    wrinkle[112:113, 120:128] = 140  # a short faint crease
    assert glasses_score(wrinkle, points) < GLASSES_EDGE_ORIGINAL

    class Estimator:
        def __call__(self, crops):
            return Attributes(age=torch.tensor([40.0, 40.0]), male_probability=torch.tensor([0.7, 0.7]))

    anonymizer = SimpleNamespace(
        identity=lambda crops: torch.zeros(2, 3), attributes=Estimator(), candidates=CandidateSettings()
    )
    faces = [plain, spectacles]
    bare, glasses = FusionAnonymizer._scores(anonymizer, torch.ones(3), (0.7, 40.0, False), faces, points)
    assert not bare.adds_glasses and glasses.adds_glasses
    settings = CandidateSettings()
    assert bare.acceptable(settings) and not glasses.acceptable(settings)
    # The original wears glasses: a fake with glasses keeps them, one without is not rejected either
    # (it is chosen only when no acceptable fake wears glasses).
    bare, glasses = FusionAnonymizer._scores(anonymizer, torch.ones(3), (0.7, 40.0, True), faces, points)
    assert bare.acceptable(settings) and glasses.acceptable(settings)
    assert bare.loses_glasses and not glasses.loses_glasses and not glasses.adds_glasses
    # Unsure whether the original wears glasses (None): a fake may wear them or not.
    bare, glasses = FusionAnonymizer._scores(anonymizer, torch.ones(3), (0.7, 40.0, None), faces, points)
    assert not (bare.loses_glasses or bare.adds_glasses or glasses.loses_glasses or glasses.adds_glasses)


def test_a_small_face_s_glasses_are_read_as_at_lfw_size():
    """A small face's crop is upsampled (and a candidate's preview resampled to the photo's pixels),
    which softens a frame's edge: the reading is scaled back for the crop's source width, below
    `GLASSES_REFERENCE_WIDTH` only and by at most `GLASSES_SCALE_MAX`."""
    plain = np.full((256, 256, 3), 170, np.uint8)
    spectacles = plain.copy()
    spectacles[112:116, 96:160] = 20
    points = _bridge_points()
    native = glasses_score(spectacles, points)
    # as a 40-px-wide crop of the photo shows it, upsampled back to the crop's size
    small = cv2.resize(cv2.resize(spectacles, (40, 40), interpolation=cv2.INTER_AREA), (256, 256))
    softened = glasses_score(small, points)
    assert softened < 0.6 * native
    assert glasses_score(small, points, 40.0) == pytest.approx(softened * min(2.0, (160 / 40) ** 0.5))
    assert glasses_score(small, points, 80.0) == pytest.approx(softened * (160 / 80) ** 0.5)
    for width in (GLASSES_REFERENCE_WIDTH, 256.0, None):
        assert glasses_score(spectacles, points, width) == native
    assert glasses_score(plain, points, 40.0) == 0

    class Estimator:
        def __call__(self, crops):
            return Attributes(age=torch.tensor([40.0]), male_probability=torch.tensor([0.7]))

    anonymizer = SimpleNamespace(
        identity=lambda crops: torch.zeros(1, 3), attributes=Estimator(), candidates=CandidateSettings()
    )
    faint = np.clip(170 - (170 - spectacles.astype(np.float32)) * GLASSES_EDGE / native * 0.8, 0, 255)
    faint = faint.astype(np.uint8)  # a preview whose bridge reads 80 % of the edge
    reference = (0.7, 40.0, True)
    (at_crop,) = FusionAnonymizer._scores(anonymizer, torch.ones(3), reference, [faint], points)
    (at_photo,) = FusionAnonymizer._scores(
        anonymizer, torch.ones(3), reference, [faint], points, source_width=60.0
    )
    assert at_crop.loses_glasses and not at_photo.loses_glasses
    # glasses read on the renders themselves (dark glasses kept in front) are at the crop's size
    (on_render,) = FusionAnonymizer._scores(
        anonymizer, torch.ones(3), reference, [plain], points, glasses_views=[faint], source_width=60.0
    )
    assert on_render.loses_glasses


def test_a_beard_on_the_chin_is_seen_by_its_texture_and_a_fake_must_not_bring_one_to_a_bare_chin():
    points = _mean_face()
    rng = np.random.default_rng(0)
    # skin with a photo's even grain
    grain = np.clip(np.full((256, 256, 3), (200, 150, 125)) + rng.normal(0, 3, (256, 256, 3)), 0, 255)
    grain = grain.astype(np.uint8)
    x0, x1, y0, y1 = (int(round(v)) for v in chin_box(points))
    stubble = grain.copy()
    # short dark hairs on the chin, one pixel wide, the skin's colour between them
    hairs = rng.random((y1 - y0, x1 - x0)) < 0.3
    stubble[y0:y1, x0:x1][hairs] = (150, 110, 90)
    # a soft shadow under the lip, 15 % darker, is no beard
    shadow = np.zeros((256, 256), np.float32)
    shadow[y0 - 10 : y1 + 10, x0 - 10 : x1 + 10] = 1
    shadow = cv2.GaussianBlur(shadow, (0, 0), 6)[..., None]
    shaded = np.round(grain * (1 - 0.15 * shadow)).astype(np.uint8)
    assert chin_texture(stubble, points) >= CHIN_TEXTURE_EDGE
    assert chin_texture(shaded, points) < CHIN_TEXTURE_EDGE / 1.5
    assert chin_texture(grain, points) < CHIN_TEXTURE_EDGE / 1.5

    class Estimator:
        def __call__(self, crops):
            return Attributes(age=torch.tensor([40.0, 40.0]), male_probability=torch.tensor([0.7, 0.7]))

    anonymizer = SimpleNamespace(
        identity=lambda crops: torch.zeros(2, 3), attributes=Estimator(), candidates=CandidateSettings()
    )
    settings = CandidateSettings()
    # A bare chin (and an upper lip read as unsure): the stubbled fake adds facial hair.
    original = ApparentAttributes(0.7, 40.0, None, None, None, bare_chin=True)
    bare, bearded = FusionAnonymizer._scores(anonymizer, torch.ones(3), original, [grain, stubble], points)
    assert bearded.adds_facial_hair and not bearded.acceptable(settings)
    assert not bare.adds_facial_hair and bare.acceptable(settings)
    # A chin read as unsure (a beard, or a microphone in front of it): either fake.
    unsure = original._replace(bare_chin=False)
    bare, bearded = FusionAnonymizer._scores(anonymizer, torch.ones(3), unsure, [grain, stubble], points)
    assert not bearded.adds_facial_hair and not bare.adds_facial_hair


def test_a_moustache_is_seen_as_dark_lost_colour_above_the_lip_and_a_shadow_is_not():
    points = _mean_face()
    skin = np.full((256, 256, 3), (200, 150, 125), np.uint8)
    band = (
        slice(int(points[2, 1]), int(points[0, 1]) + 1),
        slice(int(points[61, 0]), int(points[291, 0]) + 1),
    )
    moustache, shadow = skin.copy(), skin.copy()
    moustache[band] = (60, 45, 35)  # dark brown hair between the nose and the upper lip
    shadow[band] = (170, 127, 106)  # the skin 15 % darker: a nose shadow keeps its colour
    assert facial_hair_score(skin, points) == 0
    assert facial_hair_score(moustache, points) >= FACIAL_HAIR_SURE_ORIGINAL
    assert facial_hair_score(shadow, points) < FACIAL_HAIR_BARE_ORIGINAL
    # Without colour only darkness counts, twice: a black-and-white moustache is still seen.
    grey = np.repeat(cv2.cvtColor(moustache, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    assert facial_hair_score(grey, points) >= FACIAL_HAIR_SURE_ORIGINAL
    # The original's three states; a face that looks female counts as without facial hair.
    assert original_facial_hair(FACIAL_HAIR_BARE_ORIGINAL - 1, 0.9) is False
    assert original_facial_hair(FACIAL_HAIR_BARE_ORIGINAL, 0.9) is None
    assert original_facial_hair(FACIAL_HAIR_SURE_ORIGINAL, 0.9) is True
    assert original_facial_hair(FACIAL_HAIR_SURE_ORIGINAL, 0.2) is False

    class Estimator:
        def __call__(self, crops):
            return Attributes(age=torch.tensor([40.0, 40.0]), male_probability=torch.tensor([0.7, 0.7]))

    anonymizer = SimpleNamespace(
        identity=lambda crops: torch.zeros(2, 3), attributes=Estimator(), candidates=CandidateSettings()
    )
    faces = [skin, moustache]
    settings = CandidateSettings()
    # A clean-shaven original: a fake with a moustache adds one and is not acceptable.
    bare, hairy = FusionAnonymizer._scores(
        anonymizer, torch.ones(3), (0.7, 40.0, False, False), faces, points
    )
    assert hairy.adds_facial_hair and hairy.adds_accessory and not hairy.acceptable(settings)
    assert not bare.adds_accessory and bare.acceptable(settings)
    # A moustached original: the bare fake loses it (still acceptable; the choice prefers the other).
    bare, hairy = FusionAnonymizer._scores(anonymizer, torch.ones(3), (0.7, 40.0, None, True), faces, points)
    assert bare.loses_facial_hair and bare.accessories_lost == 1 and bare.acceptable(settings)
    assert not hairy.loses_facial_hair and not hairy.adds_facial_hair and hairy.acceptable(settings)
    # A moustache grown over the original's upper lip counts below the render's own edge too: a fake
    # whose reading rises by FACIAL_HAIR_GAIN_EDGE over the original's has one.
    faint = facial_hair_score(shadow, points)
    assert faint < FACIAL_HAIR_EDGE
    for original_lip, grown in (
        (faint - FACIAL_HAIR_GAIN_EDGE, True),
        (faint - FACIAL_HAIR_GAIN_EDGE + 1, False),
    ):
        clean = ApparentAttributes(0.7, 40.0, False, False, upper_lip_score=original_lip)
        _, shaded = FusionAnonymizer._scores(anonymizer, torch.ones(3), clean, [skin, shadow], points)
        assert shaded.adds_facial_hair is grown
    # Unsure: either fake.
    bare, hairy = FusionAnonymizer._scores(anonymizer, torch.ones(3), (0.7, 40.0, None, None), faces, points)
    assert not (
        bare.accessories_lost or hairy.accessories_lost or bare.adds_accessory or hairy.adds_accessory
    )
    # Without a mesh neither accessory can be read, so none is claimed.
    (blind,) = FusionAnonymizer._scores(
        SimpleNamespace(
            identity=lambda crops: torch.zeros(1, 3),
            candidates=CandidateSettings(),
            attributes=lambda crops: SimpleNamespace(
                male_probability=torch.tensor([0.7]), age=torch.tensor([40.0])
            ),
        ),
        torch.ones(3),
        (0.7, 40.0, True, True),
        [moustache],
    )
    assert not blind.adds_accessory and not blind.accessories_lost


def test_a_lip_read_bare_over_a_bearded_chin_is_unsure():
    """A blond or red moustache is no darker than the cheeks, so the lip reads bare; where the chin
    reader finds a beard below it the lip is unsure (a fake may keep facial hair), not bare (every
    candidate with some forbidden). A bare chin, a face that looks female or a dark moustache read
    as before."""
    from g2face.models.readers import CHIN_BARE_PROBABILITY, CHIN_HAIR_LIKELY_PROBABILITY

    bare_lip = FACIAL_HAIR_BARE_ORIGINAL - 1
    assert original_facial_hair(bare_lip, 0.9, CHIN_HAIR_LIKELY_PROBABILITY) is None
    assert original_facial_hair(bare_lip, 0.9, CHIN_HAIR_LIKELY_PROBABILITY - 0.01) is False
    assert original_facial_hair(bare_lip, 0.9, CHIN_BARE_PROBABILITY / 2) is False
    assert original_facial_hair(bare_lip, 0.2, 0.99) is False
    assert original_facial_hair(FACIAL_HAIR_SURE_ORIGINAL, 0.9, 0.0) is True
    assert original_facial_hair(FACIAL_HAIR_BARE_ORIGINAL, 0.9, 0.0) is None


def test_the_choice_puts_anonymity_first_then_attributes_then_glasses():
    settings = CandidateSettings()  # similarity bar 0.3
    fit = dict(gender_gap=0.1, age_gap=2.0)
    wrong_gender = dict(gender_gap=0.6, age_gap=2.0, same_gender=False)
    # Among acceptable fakes the least similar, whatever their attribute gaps.
    scores = [CandidateScore(0.2, **fit), CandidateScore(0.1, gender_gap=0.3, age_gap=9.0)]
    assert choose_candidate(scores, settings) == 1
    # A fake of the wrong gender is passed over even when it is the least similar.
    scores = [CandidateScore(0.25, **fit), CandidateScore(0.0, **wrong_gender)]
    assert choose_candidate(scores, settings) == 0
    # None acceptable: the closest in attributes among those different enough ...
    near_gender = dict(gender_gap=0.4, age_gap=3.0, same_gender=False)
    scores = [CandidateScore(0.1, **wrong_gender), CandidateScore(0.28, **near_gender)]
    assert choose_candidate(scores, settings) == 1
    # ... of the original's apparent gender first, even where another is nearer in cost ...
    other_side = dict(gender_gap=0.45, age_gap=2.0, same_gender=False)
    scores = [CandidateScore(0.1, **other_side), CandidateScore(0.29, gender_gap=0.45, age_gap=12.0)]
    assert choose_candidate(scores, settings) == 1
    # ... and with none different enough, the least similar of the original's apparent gender
    # (of all, when none is).
    scores = [CandidateScore(0.5, **fit), CandidateScore(0.4, **wrong_gender)]
    assert choose_candidate(scores, settings) == 0
    scores = [CandidateScore(0.5, **wrong_gender), CandidateScore(0.4, **wrong_gender)]
    assert choose_candidate(scores, settings) == 1
    # A fake only unsurely of the original's gender is not acceptable, and comes after one that is
    # surely so at the other tiers too.
    unsure = dict(gender_gap=0.3, age_gap=2.0, sure_gender=False)
    assert not CandidateScore(0.1, **unsure).acceptable(settings)
    scores = [CandidateScore(0.1, **unsure), CandidateScore(0.25, **fit)]
    assert choose_candidate(scores, settings) == 1
    scores = [
        CandidateScore(0.1, **unsure),
        CandidateScore(0.2, **wrong_gender),
        CandidateScore(0.29, **near_gender),
    ]
    assert choose_candidate(scores, settings) == 0  # unsure but the original's side beats the other side
    scores = [CandidateScore(0.4, **unsure), CandidateScore(0.6, **fit)]
    assert choose_candidate(scores, settings) == 1
    # Added glasses are passed over at every tier, unless every fake wears them.
    scores = [CandidateScore(0.1, adds_glasses=True, **fit), CandidateScore(0.29, **fit)]
    assert choose_candidate(scores, settings) == 1
    scores = [CandidateScore(0.5, adds_glasses=True, **fit), CandidateScore(0.9, **fit)]
    assert choose_candidate(scores, settings) == 1
    scores = [CandidateScore(0.5, adds_glasses=True, **fit), CandidateScore(0.4, adds_glasses=True, **fit)]
    assert choose_candidate(scores, settings) == 1
    # ... and then the fake that brings fewer: a moustache alone before glasses and a moustache
    both = {"adds_glasses": True, "adds_facial_hair": True}
    scores = [CandidateScore(0.2, **both, **fit), CandidateScore(0.45, adds_facial_hair=True, **fit)]
    assert choose_candidate(scores, settings) == 1
    scores = [
        CandidateScore(0.2, **both, **wrong_gender),
        CandidateScore(0.45, adds_glasses=True, **wrong_gender),
    ]
    assert choose_candidate(scores, settings) == 1  # none surely of the original's gender: the same
    # The original's glasses: an acceptable fake that wears some beats a less similar bare one,
    # but never at the cost of acceptability.
    scores = [CandidateScore(0.05, loses_glasses=True, **fit), CandidateScore(0.25, **fit)]
    assert choose_candidate(scores, settings) == 1
    scores = [CandidateScore(0.05, loses_glasses=True, **fit), CandidateScore(0.35, **fit)]
    assert choose_candidate(scores, settings) == 0
    # Facial hair the same way: none added at any tier, the original's kept where it can be, and
    # the fake that loses fewer of the original's accessories first.
    scores = [CandidateScore(0.1, adds_facial_hair=True, **fit), CandidateScore(0.5, **fit)]
    assert choose_candidate(scores, settings) == 1
    scores = [CandidateScore(0.05, loses_facial_hair=True, **fit), CandidateScore(0.25, **fit)]
    assert choose_candidate(scores, settings) == 1
    # ... but the apparent gender comes first: when no fake without an added accessory is surely
    # of the original's gender, those that are join them, and such a one beats a woman for a man
    scores = [CandidateScore(0.1, **wrong_gender), CandidateScore(0.25, adds_facial_hair=True, **fit)]
    assert choose_candidate(scores, settings) == 1
    scores = [
        CandidateScore(0.1, **wrong_gender),
        CandidateScore(0.2, **unsure),
        CandidateScore(0.25, adds_glasses=True, **fit),
    ]
    assert choose_candidate(scores, settings) == 2
    scores = [CandidateScore(0.6, **wrong_gender), CandidateScore(0.5, adds_facial_hair=True, **fit)]
    assert choose_candidate(scores, settings) == 1  # none different enough: the least similar of the gender
    scores = [
        CandidateScore(0.1, **wrong_gender),
        CandidateScore(0.25, adds_facial_hair=True, **wrong_gender),
    ]
    assert choose_candidate(scores, settings) == 0  # an accessory for nothing is still passed over
    # ... and so does the apparent age: where every fake without an added accessory is far from the
    # original's (children for a young man), those about its age that bring one join them
    child = dict(gender_gap=0.05, age_gap=14.0)
    scores = [CandidateScore(0.38, **child), CandidateScore(0.29, adds_facial_hair=True, **fit)]
    assert choose_candidate(scores, settings) == 1
    scores = [CandidateScore(0.38, **child), CandidateScore(0.29, adds_facial_hair=True, **child)]
    assert choose_candidate(scores, settings) == 0  # one as far off in age is still passed over
    both = dict(loses_glasses=True, loses_facial_hair=True)
    scores = [CandidateScore(0.05, **both, **fit), CandidateScore(0.2, loses_glasses=True, **fit)]
    assert choose_candidate(scores, settings) == 1


def test_only_the_rendered_face_is_pasted_not_its_background_or_fringe():
    points = _mean_face()
    render = np.full((256, 256, 3), (40, 60, 90), np.uint8)  # dark background around the face
    hull = cv2.convexHull(np.round(points[:NUM_MESH_POINTS]).astype(np.int32))
    cv2.fillConvexPoly(render, hull, (200, 150, 125))  # skin
    top = int(points[:NUM_MESH_POINTS, 1].min())
    brow_top = int(min(points[i, 1] for polygon in KEEP_REGIONS["brows"] for i in polygon))
    fringe = (slice(top, brow_top - 6), slice(100, 140))
    render[fringe] = (70, 45, 30)  # a fringe of dark hair over the middle of the forehead
    settings = FusionSettings()
    face = render_face_mask(render, points, skin_mask(points, render), settings)
    inside = cv2.pointPolygonTest(hull, (128.0, 150.0), False) > 0
    assert inside and face[150, 128] > 0.99  # the middle of the face is pasted
    assert face[5, 5] == 0 and face[250, 128] == 0  # outside its mesh: its background
    assert face[fringe].mean() < 0.2  # its hair on the forehead is not
    cheek = np.round(points[50]).astype(int)
    assert face[cheek[1], cheek[0]] > 0.99
    off = render_face_mask(render, points, np.zeros((256, 256), bool), settings)
    assert off[fringe].mean() > face[fringe].mean() + 0.5  # without skin statistics: the hull only
    # A lock of hair hanging into the hull beside the eye is not face either; a beard at the jaw is.
    left = int(points[:NUM_MESH_POINTS, 0].min())
    eye_level, jaw = int(points[33, 1]), int(points[152, 1]) - 8
    lock = (slice(eye_level - 4, eye_level + 12), slice(left, left + 10))
    beard = (slice(jaw - 6, jaw), slice(118, 138))
    hairy = render.copy()
    hairy[lock] = hairy[beard] = (70, 45, 30)
    face = render_face_mask(hairy, points, skin_mask(points, hairy), settings)
    assert face[lock].mean() < 0.2
    assert face[beard].mean() > 0.9


def test_a_lock_over_a_brows_end_and_an_eyes_corner_is_hair_but_the_brow_and_eye_are_face(monkeypatch):
    """Hair that hangs into the hull at the side is followed past the brow's outer end and over the
    eye's outer corner (the rings round brows and eyes are otherwise never taken for hair, and the
    fake carried such a lock as a dark patch over the eye); the brow itself and the eye's opening
    stay face, and nothing changes on the other side."""
    points = _mean_face()
    render = np.full((256, 256, 3), (40, 60, 90), np.uint8)
    hull = cv2.convexHull(np.round(points[:NUM_MESH_POINTS]).astype(np.int32))
    cv2.fillConvexPoly(render, hull, (200, 150, 125))
    render = np.clip(render + np.random.default_rng(1).normal(0, 4, render.shape), 0, 255).astype(np.uint8)
    brows = _features_mask(points, 256, ("brows",)) > 0
    render[brows] = (60, 45, 35)
    for ring in EYE_OPENINGS:
        cv2.fillPoly(render, [np.round(points[list(ring)]).astype(np.int32)], (50, 40, 35))
    left = points[:NUM_MESH_POINTS, 0].min()
    start = (int(left) - 4, int(points[70, 1]) - 14)  # outside the hull, above the brow's end
    end = tuple(np.round(points[33] + (-3, 3)).astype(int))  # at the eye's outer corner
    lock = np.zeros((256, 256), np.uint8)
    cv2.line(lock, start, end, 1, 9)
    render[lock > 0] = (70, 45, 30)
    openings = fusion.eyes_and_mouth_mask(points, 256)
    inside = np.zeros((256, 256), np.uint8)
    cv2.fillConvexPoly(inside, hull, 1)
    rows, columns = np.indices((256, 256))
    by_the_eye = np.hypot(columns - points[33, 0], rows - points[33, 1]) < 25
    on_rings = (lock > 0) & ~brows & ~openings & (inside > 0) & by_the_eye
    assert on_rings.sum() > 40
    face = render_face_mask(render, points, skin_mask(points, render), FusionSettings())
    assert face[on_rings].mean() < 0.3
    brow_centre = np.round(points[list(KEEP_REGIONS["brows"][0])].mean(0)).astype(int)
    assert face[brow_centre[1], brow_centre[0]] > 0.9
    eye_centre = np.round(points[list(EYE_OPENINGS[0])].mean(0)).astype(int)
    assert face[eye_centre[1], eye_centre[0]] > 0.9
    other = np.round(points[list(KEEP_REGIONS["brows"][1])].mean(0)).astype(int)
    assert face[other[1] - 6 : other[1] + 6, other[0] - 6 : other[0] + 6].mean() > 0.9
    # not followed (reach 0), much of the lock stays face where it crosses the rings
    monkeypatch.setattr(fusion, "HAIR_REACH", 0.0)
    unfollowed = render_face_mask(render, points, skin_mask(points, render), FusionSettings())
    assert unfollowed[on_rings].mean() > face[on_rings].mean() + 0.2


def test_limit_highlights_keeps_the_fakes_skin_under_the_originals_lightest():
    """A render highlight brighter than any of the original's skin is eased under the original's
    ceiling with its colour kept; darker skin, the eyes' openings and what lies outside the region
    are untouched."""
    points = _mean_face()
    size = 256
    rng = np.random.default_rng(2)
    hull = cv2.convexHull(np.round(points[:NUM_MESH_POINTS]).astype(np.int32))
    inside = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(inside, hull, 1)
    original = np.full((size, size, 3), (90, 110, 140), np.uint8)
    original[inside > 0] = (215, 170, 140)
    original = np.clip(original + rng.normal(0, 3, original.shape), 0, 255).astype(np.uint8)
    fake = original.copy()
    nose = np.round(points[4]).astype(int)
    cv2.circle(fake, (int(nose[0]), int(nose[1])), 10, (250, 235, 225), -1)  # a render's shine
    eye = np.round(points[list(fusion.EYE_OPENINGS[0])]).astype(np.int32)
    cv2.fillPoly(fake, [eye], (250, 250, 250))  # the sclera is lighter than skin and stays
    region = inside.astype(np.float32)
    bare = fusion.bare_skin(original, skin_mask(points, original))
    out = fusion.limit_highlights(fake, original, bare, points, region)
    lab_in, lab_out = (cv2.cvtColor(x, cv2.COLOR_RGB2LAB).astype(float) for x in (fake, out))
    ceiling = np.quantile(cv2.cvtColor(original, cv2.COLOR_RGB2LAB)[..., 0][bare & (inside > 0)], 0.995)
    shine = np.zeros((size, size), bool)
    cv2.circle(shine.view(np.uint8), (int(nose[0]), int(nose[1])), 8, 1, -1)
    assert lab_in[shine, 0].mean() > ceiling + 10
    assert lab_out[shine, 0].max() <= ceiling + 1.5
    assert np.abs(lab_out[shine, 1:] - lab_in[shine, 1:]).mean() < 3  # its colour kept
    eye_mask = fusion.eyes_and_mouth_mask(points, size)
    assert np.array_equal(out[eye_mask], fake[eye_mask])
    assert np.array_equal(out[inside == 0], fake[inside == 0])
    plain = (inside > 0) & ~shine & ~eye_mask & (lab_in[..., 0] < np.quantile(lab_in[inside > 0, 0], 0.5))
    assert np.array_equal(out[plain], fake[plain])


def test_a_tilted_faces_eyes_are_face_not_fringe():
    """A head tilted 20° in the crop has one brow well above the other: the forehead is what lies
    above the line through both brows, so the higher side's eye (dark, like hair) stays face."""
    upright = _mean_face()
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = (upright - 128) @ rotation.T + 128
    render = np.full((256, 256, 3), (40, 60, 90), np.uint8)
    hull = cv2.convexHull(np.round(points[:NUM_MESH_POINTS]).astype(np.int32))
    cv2.fillConvexPoly(render, hull, (200, 150, 125))
    for polygon in KEEP_REGIONS["eyes"]:
        contour = cv2.convexHull(np.round(points[list(polygon[:16])]).astype(np.int32))
        cv2.fillConvexPoly(render, contour, (45, 35, 30))  # dark eyes (lashes, iris, shadow)
    face = render_face_mask(render, points, skin_mask(points, render), FusionSettings())
    for polygon in KEEP_REGIONS["eyes"]:
        x, y = np.round(points[list(polygon[:16])].mean(0)).astype(int)
        assert face[y, x] > 0.9


def test_a_highlight_on_a_renders_forehead_is_face_not_hair():
    """A bald or shiny forehead lighter than the cheeks, of the same hue, stays the render's face;
    a fringe of the same lightness step but another colour (blond) does not."""
    points = _mean_face()
    hull = cv2.convexHull(np.round(points[:NUM_MESH_POINTS]).astype(np.int32))
    render = np.full((256, 256, 3), (40, 60, 90), np.uint8)
    cv2.fillConvexPoly(render, hull, (200, 150, 125))
    render = np.clip(render + np.random.default_rng(0).normal(0, 4, render.shape), 0, 255).astype(np.uint8)
    top = int(points[:NUM_MESH_POINTS, 1].min())
    patch = (slice(top + 6, top + 20), slice(112, 144))
    shiny, blond = render.copy(), render.copy()
    shiny[patch] = (245, 205, 185)  # the skin's colour, much lighter
    blond[patch] = (235, 200, 90)  # lighter and yellow
    settings = FusionSettings()
    assert render_face_mask(shiny, points, skin_mask(points, shiny), settings)[patch].mean() > 0.9
    assert render_face_mask(blond, points, skin_mask(points, blond), settings)[patch].mean() < 0.2


def test_pull_push_fill_keeps_known_pixels_and_meets_them_without_a_step():
    image = np.zeros((64, 64, 3), np.float32)
    image[:, :24], image[:, 40:] = 50.0, 150.0
    known = np.zeros((64, 64), np.float32)
    known[:, :24] = known[:, 40:] = 1
    filled = pull_push_fill(image, known)
    assert np.array_equal(filled[:, :24], image[:, :24]) and np.array_equal(filled[:, 40:], image[:, 40:])
    gap = filled[32, 24:40, 0]
    assert gap.min() >= 50 and gap.max() <= 150
    assert abs(gap[0] - 50) < 15 and abs(gap[-1] - 150) < 15  # continuous at both edges
    assert np.all(np.diff(gap) >= -1e-3)  # from one side to the other
    assert np.isfinite(pull_push_fill(image, np.zeros_like(known))).all()  # nothing known: no NaN


def test_a_textured_fill_carries_the_originals_skin_grain_but_not_its_outline():
    """Where the render is not face, the fill takes the original's fine texture on its skin, and
    neither the original's outline against the background nor its hair."""
    size, width = 128, 80.0
    rng = np.random.default_rng(1)
    original = np.full((size, size, 3), (40, 50, 60), np.float32)  # dark background
    original[:, 30:] = (190, 140, 120)  # skin from x = 30: its outline is the step at 30
    original[:, 30:] += rng.normal(0, 6, (size, size - 30, 1))  # grain
    original = np.clip(original, 0, 255).astype(np.uint8)
    skin = np.zeros((size, size), bool)
    skin[:, 40:] = True
    coloured = np.full((size, size, 3), (180, 130, 110), np.uint8)
    face = np.zeros((size, size), np.float32)
    face[:, 70:] = 1  # the render's face; left of it, the fill
    flat = textured_fill(coloured, face, original, skin, width, strength=0)
    fill = textured_fill(coloured, face, original, skin, width, strength=1)
    assert np.abs(flat[:, :70] - (180, 130, 110)).max() < 1  # the face's colour, flat
    grain = (fill - flat)[:, 40:65, 0]
    assert grain.std() > 2  # the original's skin grain
    assert np.corrcoef(grain.ravel(), original[:, 40:65, 0].astype(float).ravel())[0, 1] > 0.5
    assert np.abs((fill - flat)[:, 10:22]).max() < 1  # none on its background
    assert np.abs((fill - flat)[:, 27:34]).mean() < 1.5 * np.abs(grain).mean()  # no outline
    with pytest.raises(ValueError, match="fill_texture"):
        FusionSettings(fill_texture=-1)


def test_a_whole_region_paste_fills_the_renders_hair_with_its_face_colour():
    """When the whole region is replaced, a render's lock of hair at the cheek is not pasted as a
    dark patch: it gets the colour of the render's face around it."""
    points = _mean_face()
    hull = cv2.convexHull(np.round(points[:NUM_MESH_POINTS]).astype(np.int32))
    original = np.full((256, 256, 3), (90, 120, 150), np.uint8)
    cv2.fillConvexPoly(original, hull, (190, 140, 120))
    render = np.full((256, 256, 3), (40, 60, 90), np.uint8)
    cv2.fillConvexPoly(render, hull, (200, 150, 125))
    left, eye_level = int(points[:NUM_MESH_POINTS, 0].min()), int(points[33, 1])
    lock = (slice(eye_level - 4, eye_level + 12), slice(left, left + 10))
    render[lock] = (30, 20, 15)
    whole = FusionSettings(render_only=False)
    fused = fuse_face(original, points, render, points, whole)
    skin = fused.crop[int(points[50, 1]), int(points[50, 0])].astype(float)
    patch = fused.crop[lock].reshape(-1, 3).astype(float).mean(0)
    assert np.abs(patch - skin).max() < 25  # the lock became skin, not a dark patch


@torch.no_grad()
def test_the_probe_ranks_the_keyed_pool_by_predicted_attributes_glasses_included():
    """With a probe that predicts glasses, dummies likely to render with glasses come first for an
    original who wears them and last for one who does not; gender and age still lead."""

    def identities(seeds, dtype):
        # One identity per seed: [male logit, age, glasses] read straight off by the probe.
        rows = [[5.0, 40.0, float(s % 2)] for s in seeds]
        return torch.tensor(rows, dtype=dtype)

    probe = torch.nn.Linear(3, 3)
    with torch.no_grad():
        probe.weight.copy_(torch.eye(3))
        probe.bias.zero_()
    anonymizer = SimpleNamespace(
        candidates=CandidateSettings(count=2, max_rounds=2),
        attribute_probe=probe,
        dummy_identities=identities,
    )
    for wears in (True, False):
        order = FusionAnonymizer._candidate_order(anonymizer, 1234, (0.99, 40.0, wears), torch.float32)
        predicted = identities([candidate_seed(1234, k) for k in order], torch.float32)[:, 2]
        assert len(order) == 4 and bool(predicted.eq(float(wears)).all())

    # A fourth row (facial hair) ranks the same way, on its own when glasses are unsure.
    def identities4(seeds, dtype):
        return torch.tensor([[5.0, 40.0, 0.0, float(s % 3 == 0)] for s in seeds], dtype=dtype)

    anonymizer.attribute_probe, anonymizer.dummy_identities = torch.nn.Linear(4, 4), identities4
    with torch.no_grad():
        anonymizer.attribute_probe.weight.copy_(torch.eye(4))
        anonymizer.attribute_probe.bias.zero_()
    order = FusionAnonymizer._candidate_order(anonymizer, 1234, (0.99, 40.0, None, True), torch.float32)
    predicted = identities4([candidate_seed(1234, k) for k in order], torch.float32)[:, 3]
    assert len(order) == 4 and bool(predicted.eq(1.0).all())
    # A clean-shaven original's pool is not ranked away from facial hair (that drew younger
    # dummies); the search passes over fakes that add some instead.
    shaven = FusionAnonymizer._candidate_order(anonymizer, 1234, (0.99, 40.0, None, False), torch.float32)
    unsure = FusionAnonymizer._candidate_order(anonymizer, 1234, (0.99, 40.0, None, None), torch.float32)
    assert shaven == unsure
    anonymizer.dummy_identities = identities
    # A probe without a glasses row (an older model file) ranks by gender and age only.
    anonymizer.attribute_probe = torch.nn.Linear(3, 2)
    order = FusionAnonymizer._candidate_order(anonymizer, 1234, (0.99, 40.0, True), torch.float32)
    assert len(order) == 4


@torch.no_grad()
def test_a_skin_tone_row_ranks_the_pool_by_the_renders_tone_only_when_weighted():
    """A fifth probe row (the raw render's tone as its dlib descriptor reads it) puts dummies of the
    original's skin tone first when `skin_tone_weight` > 0, steers them to it, and changes nothing
    at 0. The target is the tone read from the original's descriptor, not its photo's cheeks (which
    follow the photo's light)."""

    def identities(seeds, dtype):  # [male logit, age, glasses, facial hair, tone]
        return torch.tensor([[5.0, 40.0, 0.0, 0.0, 10.0 + 40.0 * (s % 2)] for s in seeds], dtype=dtype)

    probe = torch.nn.Linear(5, 5)
    with torch.no_grad():
        probe.weight.copy_(torch.eye(5))
        probe.bias.zero_()
    # a dark-skinned original in bright light: its cheeks read light, its descriptor dark
    dark = ApparentAttributes(0.99, 40.0, None, None, 55.0, descriptor_tone=12.0)
    anonymizer = SimpleNamespace(
        candidates=CandidateSettings(count=2, max_rounds=2, skin_tone_weight=0.01),
        attribute_probe=probe,
        dummy_identities=identities,
    )
    order = FusionAnonymizer._candidate_order(anonymizer, 1234, dark, torch.float32)
    tones = identities([candidate_seed(1234, k) for k in order], torch.float32)[:, 4]
    assert len(order) == 4 and bool(tones.eq(10.0).all())
    light = ApparentAttributes(0.99, 40.0, None, None, 5.0, descriptor_tone=55.0)
    light_order = FusionAnonymizer._candidate_order(anonymizer, 1234, light, torch.float32)
    assert bool(
        identities([candidate_seed(1234, k) for k in light_order], torch.float32)[:, 4].eq(50.0).all()
    )
    # no descriptor tone (no dlib judge): the cheeks' photo ITA does not rank the pool
    unread = ApparentAttributes(0.99, 40.0, None, None, 12.0)
    unweighted_order = FusionAnonymizer._candidate_order(anonymizer, 1234, dark[:4], torch.float32)
    assert FusionAnonymizer._candidate_order(anonymizer, 1234, unread, torch.float32) == unweighted_order
    anonymizer.candidates = CandidateSettings(count=2, max_rounds=2, steer=1.0, skin_tone_weight=0.01)
    steered = FusionAnonymizer.steer_dummies(anonymizer, identities([1, 2], torch.float32), dark)
    assert torch.allclose(steered[:, 4], torch.tensor([12.0, 12.0]), atol=1e-4)
    # with a tolerance, a dummy within it keeps its tone and one beyond is brought to the band's edge
    anonymizer.candidates = CandidateSettings(
        count=2, max_rounds=2, steer=1.0, skin_tone_weight=0.01, skin_tone_tolerance=5.0
    )
    banded = FusionAnonymizer.steer_dummies(anonymizer, identities([1, 2], torch.float32), dark)
    assert torch.allclose(banded[:, 4], torch.tensor([17.0, 10.0]), atol=1e-4)
    # weight 0: neither ranked nor steered by tone (as without the row)
    anonymizer.candidates = CandidateSettings(count=2, max_rounds=2, steer=1.0)
    unweighted = FusionAnonymizer._candidate_order(anonymizer, 1234, dark, torch.float32)
    assert unweighted == FusionAnonymizer._candidate_order(anonymizer, 1234, dark[:4], torch.float32)
    kept = FusionAnonymizer.steer_dummies(anonymizer, identities([1, 2], torch.float32), dark)
    assert torch.allclose(kept[:, 4], torch.tensor([50.0, 10.0]))


def test_an_unsure_originals_dummies_are_aimed_at_a_sure_reading_of_its_side():
    # Grace Hopper, read 0.38 male: her dummies are aimed at a surely female 0.02, not at 0.38
    # (which drew dummies whose renders read male); a sure original keeps its own reading.
    assert sure_gender_target(0.38, 0.48) == pytest.approx(0.02)
    assert sure_gender_target(0.62, 0.48) == pytest.approx(0.98)
    assert sure_gender_target(0.995, 0.48) == pytest.approx(0.995)
    assert sure_gender_target(0.001, 0.48) == pytest.approx(0.001)
    assert sure_gender_target(0.38, 0.0) == pytest.approx(0.38)
    targets = probe_targets(ApparentAttributes(0.38, 70.0, False), 2, gender_margin=0.48)
    assert targets[0] == pytest.approx(math.log(0.02 / 0.98))


@torch.no_grad()
def test_steering_moves_a_dummy_only_along_the_probe_rows_to_the_originals_attributes():
    torch.manual_seed(0)
    probe = torch.nn.Linear(16, 3)
    anonymizer = SimpleNamespace(attribute_probe=probe, candidates=CandidateSettings(steer=1.0))
    dummies = torch.randn(4, 16)
    reference = (0.9, 63.0, True)
    steered = FusionAnonymizer.steer_dummies(anonymizer, dummies, reference)
    # (An original read 0.9 male is aimed at a sure man: P 0.95 by the default gender_margin 0.45.)
    target = torch.tensor([math.log(0.95 / 0.05), 63.0, 1.0]).expand(4, -1)
    assert torch.allclose(probe(steered), target, atol=1e-3)
    # Nothing moves outside the span of the probe's rows: what tells two keyed dummies apart stays.
    basis, _ = torch.linalg.qr(probe.weight.T)  # [16, 3]
    outside = torch.eye(16) - basis @ basis.T
    assert torch.allclose((steered - dummies) @ outside, torch.zeros(4, 16), atol=1e-4)
    # Half the steer goes half the way; none, or no probe, leaves the dummies as drawn.
    anonymizer.candidates = CandidateSettings(steer=0.5)
    half = FusionAnonymizer.steer_dummies(anonymizer, dummies, reference)
    assert torch.allclose(probe(half), (probe(dummies) + target) / 2, atol=1e-3)
    # Unsure about the original's glasses: gender and age are steered, the glasses row is free.
    anonymizer.candidates = CandidateSettings(steer=1.0)
    unsure = FusionAnonymizer.steer_dummies(anonymizer, dummies, (0.9, 63.0, None))
    assert torch.allclose(probe(unsure)[:, :2], target[:, :2], atol=1e-3)
    assert not torch.allclose(probe(unsure)[:, 2], target[:, 2], atol=1e-2)
    # A probe with a facial-hair row: unsure glasses and a moustached original steer rows 0, 1, 3
    # (to 1); a clean-shaven original's dummies are not steered away from facial hair (that made
    # them younger), only gender and age (`probe_targets`).
    probe4 = torch.nn.Linear(16, 4)
    anonymizer.attribute_probe = probe4
    hair = FusionAnonymizer.steer_dummies(anonymizer, dummies, (0.9, 63.0, None, True))
    assert torch.allclose(probe4(hair)[:, [0, 1, 3]], target, atol=1e-3)
    basis4, _ = torch.linalg.qr(probe4.weight[[0, 1, 3]].T)
    outside4 = torch.eye(16) - basis4 @ basis4.T
    assert torch.allclose((hair - dummies) @ outside4, torch.zeros(4, 16), atol=1e-4)
    shaven = FusionAnonymizer.steer_dummies(anonymizer, dummies, (0.9, 63.0, None, False))
    basis2, _ = torch.linalg.qr(probe4.weight[:2].T)
    outside2 = torch.eye(16) - basis2 @ basis2.T
    assert torch.allclose(probe4(shaven)[:, :2], target[:, :2], atol=1e-3)
    assert torch.allclose((shaven - dummies) @ outside2, torch.zeros(4, 16), atol=1e-4)
    anonymizer.attribute_probe = probe
    anonymizer.candidates = CandidateSettings(steer=0.0)
    assert FusionAnonymizer.steer_dummies(anonymizer, dummies, reference) is dummies
    anonymizer.candidates, anonymizer.attribute_probe = CandidateSettings(steer=1.0), None
    assert FusionAnonymizer.steer_dummies(anonymizer, dummies, reference) is dummies


def test_the_age_stretch_aims_older_originals_older_and_younger_ones_younger():
    """Fused fakes read younger than their target the older the original (and older below the
    pivot), so the probe's target is stretched away from `AGE_PIVOT`; 0 aims at the age itself."""
    assert probe_age_target(63.0, 0.0) == 63.0 and probe_age_target(AGE_PIVOT, 0.6) == AGE_PIVOT
    assert probe_age_target(63.0, 0.6) == pytest.approx(AGE_PIVOT + 1.6 * (63.0 - AGE_PIVOT))
    assert probe_age_target(15.0, 0.6) < 15.0
    with pytest.raises(ValueError, match="age_stretch"):
        CandidateSettings(age_stretch=1.5)


@torch.no_grad()
def test_steering_and_ranking_aim_at_the_stretched_age():
    torch.manual_seed(0)
    probe = torch.nn.Linear(16, 2)
    stretch = CandidateSettings(steer=1.0, age_stretch=0.6)
    anonymizer = SimpleNamespace(attribute_probe=probe, candidates=stretch)
    steered = FusionAnonymizer.steer_dummies(anonymizer, torch.randn(4, 16), (0.9, 63.0))
    expected = torch.tensor(probe_age_target(63.0, 0.6)).expand(4)
    assert torch.allclose(probe(steered)[:, 1], expected, atol=1e-3)

    def identities(seeds, dtype):  # [male logit, age] read straight off by the probe
        return torch.tensor([[5.0, float(20 + s % 60)] for s in seeds], dtype=dtype)

    ranker = torch.nn.Linear(2, 2)
    ranker.weight.copy_(torch.eye(2))
    ranker.bias.zero_()
    anonymizer = SimpleNamespace(candidates=stretch, attribute_probe=ranker, dummy_identities=identities)
    order = FusionAnonymizer._candidate_order(anonymizer, 99, (0.99, 60.0), torch.float32)
    ages = identities([candidate_seed(99, k) for k in order], torch.float32)[:, 1]
    # Ranked around the stretched target (81 years), not the original's 60.
    assert float((ages - probe_age_target(60.0, 0.6)).abs().mean()) < float((ages - 60.0).abs().mean())


def _face_with_eyes() -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """A 256 crop of skin with two open eyes (white, a dark iris) and a mesh whose eye polygons
    ring them; the eye centres."""
    points = _mesh(centre=(128.0, 140.0), radius=(64.0, 80.0))
    centres = [(100, 120), (156, 120)]
    for (cx, cy), polygon in zip(centres, KEEP_REGIONS["eyes"], strict=True):
        angle = np.linspace(0, 2 * np.pi, len(polygon), endpoint=False)
        points[list(polygon), 0] = cx + 16 * np.cos(angle)
        points[list(polygon), 1] = cy + 9 * np.sin(angle)
    rng = np.random.default_rng(1)
    image = np.clip(np.full((256, 256, 3), (205, 165, 145), float) + rng.normal(0, 6, (256, 256, 3)), 0, 255)
    image = image.astype(np.uint8)
    for cx, cy in centres:
        cv2.ellipse(image, (cx, cy), (12, 5), 0, 0, 360, (235, 235, 230), -1)
        cv2.circle(image, (cx, cy), 4, (40, 30, 25), -1)
    return image, points, centres


def _with_lenses(image: np.ndarray, centres, which=(0, 1)) -> tuple[np.ndarray, np.ndarray]:
    """Dark lenses (with a bright reflection) drawn over the given eyes; and where they are."""
    out, lens = image.copy(), np.zeros(image.shape[:2], np.uint8)
    for k in which:
        cv2.ellipse(out, centres[k], (26, 18), 0, 0, 360, (25, 25, 30), -1)
        cv2.ellipse(lens, centres[k], (26, 18), 0, 0, 360, 1, -1)
    cx, cy = centres[which[0]]
    cv2.circle(out, (cx - 10, cy - 6), 3, (240, 240, 240), -1)  # a reflection is still lens
    return out, lens.astype(bool)


def test_dark_glasses_are_seen_over_both_eyes_and_not_in_open_eyes_or_a_one_sided_shadow():
    face, points, centres = _face_with_eyes()
    assert sunglasses_score(face, points) < 0.5  # open eyes: lids and whites are light
    sunglasses, lens = _with_lenses(face, centres)
    assert sunglasses_score(sunglasses, points) >= SUNGLASSES_EYES
    shadow, _ = _with_lenses(face, centres, which=(0,))
    assert sunglasses_score(shadow, points) < SUNGLASSES_EYES  # one eye only: a shadow, hair, a hand
    mask = sunglasses_mask(sunglasses, points)
    assert np.mean(mask[lens] >= 0.99) > 0.97  # the lenses, their reflection included
    assert mask[200, 128] == 0 and mask[150, 60] == 0  # mouth and cheek stay the fake's
    assert mask.max() == 1 and np.mean(mask > 0) < 0.1


def test_partly_dark_lenses_are_tinted_glasses_only_behind_a_sure_frame_bridge():
    """Lenses that leave part of each eye region light (`SUNGLASSES_EYES_TINTED` up to
    `SUNGLASSES_EYES`) are tinted glasses where the nose bridge reads a sure frame; the same eyes
    without one are dark-eyed skin or make-up, a frame alone over open eyes is clear glasses, and
    lenses dark through are dark glasses (kept whole, not tinted)."""
    face, points, centres = _face_with_eyes()
    points[168, :2] = (143, 200)  # the bridge band below the eyes: only the bar drawn there is in it
    partly = face.copy()
    for cx, cy in centres:
        cv2.ellipse(partly, (cx, cy - 6), (26, 12), 0, 0, 360, (25, 25, 30), -1)  # the lower lids show
    assert SUNGLASSES_EYES_TINTED <= sunglasses_score(partly, points) < SUNGLASSES_EYES

    def framed(image):
        out = image.copy()
        out[190:194, 110:176] = (25, 25, 30)
        return out

    assert glasses_score(framed(partly), points) >= GLASSES_SURE_ORIGINAL > glasses_score(partly, points)
    assert wears_tinted_glasses(framed(partly), points)
    assert not wears_tinted_glasses(partly, points)
    assert not wears_tinted_glasses(framed(face), points)
    assert not wears_tinted_glasses(framed(_with_lenses(face, centres)[0]), points)


@pytest.mark.parametrize(
    ("shade", "bridge", "glasses", "under_eye", "kind"),
    [
        (0.95, 0.0, None, 1.0, "dark"),
        (0.8, 200.0, None, 1.0, "tinted"),  # a sure frame bridge
        (0.6, 85.0, True, 0.3, "tinted"),  # aviators: thin bridge, reader sure, skin under the eyes dimmed
        (0.6, 85.0, None, 0.3, None),  # the reader unsure: dark eyes, make-up, shadowed sockets
        (0.6, 85.0, False, 0.3, None),
        (0.6, 85.0, True, 0.8, None),  # clear glasses over dark eyes: the skin under them is bare
        (0.4, 85.0, True, 0.3, None),  # eyes that read light enough through whatever lenses
    ],
)
def test_lenses_read_as_tinted_through_the_glasses_reader_where_the_bridge_reads_no_frame(
    monkeypatch, shade, bridge, glasses, under_eye, kind
):
    """Aviators and thin metal bridges leave `glasses_score` under `GLASSES_SURE_ORIGINAL`, and
    their wearers' fakes showed their own eyes through clear glasses: from
    `SUNGLASSES_EYES_SHADED` an original in glasses by the reader whose skin under the eyes is
    dimmed (`UNDER_EYE_TINTED_ORIGINAL`) wears tinted lenses (`lens_kind`)."""
    import g2face.models.fusion as fusion

    assert SUNGLASSES_EYES_SHADED <= 0.6 < SUNGLASSES_EYES_TINTED and 0.3 <= UNDER_EYE_TINTED_ORIGINAL < 0.8
    monkeypatch.setattr(fusion, "sunglasses_score", lambda image, points: shade)
    monkeypatch.setattr(fusion, "glasses_score", lambda image, points, width=None: bridge)
    monkeypatch.setattr(fusion, "under_eye_shade", lambda image, points: under_eye)
    image, points = np.zeros((8, 8, 3), np.uint8), np.zeros((478, 2))
    assert lens_kind(image, points, None, glasses) == kind
    assert wears_tinted_glasses(image, points, None, glasses) == (kind == "tinted")


def test_a_tinted_lens_stays_lens_shaped_where_the_frame_joins_it_to_the_brows():
    """Dark pixels touching a lens (a frame's top bar, brows, a fringe) widen the kept lenses' hull;
    the tint keeps to an ellipse around each eye (`LENS_SHAPE`)."""
    face, points, centres = _face_with_eyes()
    glasses, lens = _with_lenses(face, centres)
    glasses[96:104, 60:200] = (25, 25, 30)  # a dark band joining both lenses to the brows
    wide, tinted = sunglasses_mask(glasses, points), tinted_lens_mask(glasses, points)
    assert wide[98, 128] == 1 and tinted[98, 128] == 0  # the band between the brows
    assert tinted.max() == 1 and np.mean(tinted[lens] > 0.5) > 0.9  # the lenses themselves
    assert np.sum(tinted > 0) < np.sum(wide > 0)
    # open eyes (called only for tinted glasses): no more than their dark irises
    assert np.sum(tinted_lens_mask(face, points) > 0.5) < 0.2 * lens.sum()


def test_a_tint_dims_the_fakes_own_eyes_to_the_lens_colour_and_keeps_none_of_the_originals():
    """Inside the lens mask the fake takes the lens's median colour (linear light) but keeps its own
    detail; outside it nothing changes; a lens lighter than the fake never brightens it."""
    fake, points, centres = _face_with_eyes()
    original, lens = _with_lenses(np.full_like(fake, (190, 150, 130)), centres)
    original[lens] = (40, 60, 90)  # a blue tint
    mask = lens.astype(np.float32)
    tinted = tint_lenses(fake, original, mask)
    assert np.array_equal(tinted[~lens], fake[~lens])

    def linear_median(image):
        return np.median((image[lens].astype(np.float64) / 255) ** 2.2, 0)

    assert np.allclose(linear_median(tinted), linear_median(original), atol=0.004)
    # the fake's eye (white and iris) still shows through, darker; the original's flat lens does not
    cx, cy = centres[0]
    assert tinted[cy, cx - 8].mean() > tinted[cy, cx].mean() + 10
    assert tinted[cy, cx - 8].mean() < fake[cy, cx - 8].mean()
    # a lens lighter than the fake leaves it as it was
    pale = original.copy()
    pale[lens] = 255
    assert np.array_equal(tint_lenses(fake, pale, mask), fake)
    assert tint_lenses(fake, original, np.zeros_like(mask)) is fake


def _stand_in_scorer() -> SimpleNamespace:
    """What `FusionAnonymizer._scores` needs of its model: every candidate equally unlike the
    original (identity) and read as a 40-year-old man by the estimator."""

    class Estimator:
        def __call__(self, crops):
            return Attributes(
                age=torch.full((len(crops),), 40.0), male_probability=torch.full((len(crops),), 0.7)
            )

    return SimpleNamespace(
        identity=lambda crops: torch.zeros(len(crops), 3),
        attributes=Estimator(),
        candidates=CandidateSettings(),
    )


def test_a_fake_in_dark_glasses_adds_glasses_to_an_original_with_clear_ones_or_none(monkeypatch):
    """Dark lenses over both eyes of a candidate are an accessory the original lacks, whether it
    wears clear glasses or none (`dark_lenses_added`); the search asks for that unless the
    original's own dark glasses are kept in front of the fake, or keeping them is off."""
    import g2face.models.readers as readers

    # the drawn face's stand-in mesh puts no eye corners on its eyes: only the edge reads frames
    monkeypatch.setattr(readers, "glasses_reader", lambda: SimpleNamespace(probability=lambda features: 0.0))
    face, points, centres = _face_with_eyes()
    dark, _ = _with_lenses(face, centres)

    anonymizer = _stand_in_scorer()

    def adds(glasses, dark_lenses_added=True):
        found = FusionAnonymizer._scores(
            anonymizer,
            torch.ones(3),
            (0.7, 40.0, glasses),
            [face, dark],
            points,
            dark_lenses_added=dark_lenses_added,
        )
        return [s.adds_glasses for s in found]

    assert adds(True) == [False, True]  # clear glasses worn: dark ones are added
    assert adds(False) == [False, True]
    assert adds(True, dark_lenses_added=False) == [False, False]

    def asked(original, occluder=None, keep_sunglasses=True):
        seen = {}
        model = SimpleNamespace(
            fusion=FusionSettings(keep_sunglasses=keep_sunglasses),
            _scores=lambda *args, **kwargs: seen.update(kwargs) or [],
        )
        search = _FaceSearch.__new__(_FaceSearch)
        search.__dict__.update(
            model=model, embedding=None, reference=None, points=points, second_embedding=None,
            occluder=occluder, width=None, original=original,
        )  # fmt: skip
        search._score([])
        return seen["dark_lenses_added"]

    assert asked(face)  # light eyes: clear glasses or none
    assert not asked(face, occluder=np.ones((256, 256), np.float32))  # its dark glasses kept in front
    assert not asked(face, keep_sunglasses=False)
    # an original whose eyes read dark (dark or tinted lenses, kept or not) leaves the fake's free;
    # one dark eye (a shadow, a lock of hair) still shows the other light
    shadow, _ = _with_lenses(face, centres, which=(0,))
    assert sunglasses_score(dark, points) >= LIGHT_EYES_ORIGINAL and not asked(dark)
    assert sunglasses_score(shadow, points) < LIGHT_EYES_ORIGINAL and asked(shadow)


def test_what_is_kept_in_front_of_the_face_stays_the_originals_pixel_for_pixel():
    face, points, centres = _face_with_eyes()
    sunglasses, _ = _with_lenses(face, centres)
    keep = sunglasses_mask(sunglasses, points)
    render = _image(3, (90, 140, 200))
    render = cv2.resize(render, (256, 256))
    settings = FusionSettings()
    fused = fuse_face(sunglasses, points, render, points, settings, keep)
    kept = keep >= 1
    assert kept.sum() > 1000 and np.array_equal(fused.preview[kept], sunglasses[kept])
    assert np.all(fused.mask[kept] == 0)  # not part of the replaced region, so not pasted
    plain = fuse_face(sunglasses, points, render, points, settings)
    assert not np.array_equal(plain.preview[kept], sunglasses[kept])


def test_the_pose_correction_moves_the_low_and_middle_styles_onto_the_target_pose_minimally():
    from g2face.models.gie import POSE_LIMITS, PoseCorrection

    torch.manual_seed(0)
    correction = PoseCorrection(style_dim=16, n_styles=5)
    correction.directions.copy_(torch.randn(2, 16))
    correction.bias.copy_(torch.tensor([1.0, -2.0]))
    correction.mean.copy_(torch.randn(16))
    wplus = torch.randn(3, 8, 16)
    target = torch.tensor([[20.0, -5.0], [0.0, 0.0], [-28.0, 10.0]])
    moved = correction(wplus, target)
    torch.testing.assert_close(correction.predict(moved), target, atol=1e-4, rtol=0)
    # a profile is not turned beyond what the generator renders well
    beyond = correction.predict(correction(wplus, torch.tensor([[60.0, -40.0]] * 3)))
    torch.testing.assert_close(
        beyond, torch.tensor([list(POSE_LIMITS)] * 3) * torch.tensor([1.0, -1.0]), atol=1e-4, rtol=0
    )
    assert torch.equal(moved[:, 5:], wplus[:, 5:])  # the high styles (texture, colour) stay
    delta = moved[:, 0] - wplus[:, 0]
    assert torch.allclose(moved[:, :5] - wplus[:, :5], delta[:, None].expand(-1, 5, -1))
    # the smallest such change: it lies in the span of the two directions
    coefficients = torch.linalg.lstsq(correction.directions.T, delta.T).solution
    torch.testing.assert_close(correction.directions.T @ coefficients, delta.T, atol=1e-5, rtol=0)
    # a gain scales the step: the prediction moves `gain` times the error
    correction.gain.copy_(torch.tensor([3.0, 2.0]))
    before = correction.predict(wplus)
    torch.testing.assert_close(
        correction.predict(correction(wplus, target)), before + torch.tensor([3.0, 2.0]) * (target - before)
    )


def test_the_expression_correction_moves_the_low_and_middle_styles_to_the_target_smile():
    from g2face.models.fusion_anonymizer import smile_of
    from g2face.models.gie import SMILE_BLENDSHAPES, ExpressionCorrection, neutral_step
    from g2face.priors.mediapipe_geometry import BLENDSHAPE_NAMES

    torch.manual_seed(0)
    correction = ExpressionCorrection(style_dim=16, n_styles=5)
    direction, others = torch.randn(16), torch.randn(2, 16)  # smile; gender and age
    correction.direction.copy_(direction)
    # the step keeps what the other regressions read (gender, age) and adds one unit of smile
    step = neutral_step(direction.double(), others.double()).float()
    torch.testing.assert_close(others @ step, torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(direction @ step, torch.tensor(1.0), atol=1e-5, rtol=0)
    correction.step.copy_(step)
    correction.bias.fill_(0.4)
    correction.mean.copy_(torch.randn(16))
    wplus = torch.randn(3, 8, 16)
    target = torch.tensor([0.9, 0.0, 0.3])
    moved = correction(wplus, target)
    torch.testing.assert_close(correction.predict(moved), target, atol=1e-4, rtol=0)
    assert torch.equal(moved[:, 5:], wplus[:, 5:])  # the high styles (texture, colour) stay
    delta = moved[:, 0] - wplus[:, 0]
    assert torch.allclose(moved[:, :5] - wplus[:, :5], delta[:, None].expand(-1, 5, -1))
    torch.testing.assert_close(delta @ others.T, torch.zeros(3, 2), atol=1e-4, rtol=0)
    # no smile beyond the blendshapes' range
    torch.testing.assert_close(
        correction.predict(correction(wplus, torch.tensor([1.7, -0.5, 0.3]))),
        target.new_tensor([1.0, 0.0, 0.3]),
        atol=1e-4,
        rtol=0,
    )
    correction.gain.fill_(0.5)  # a gain scales the step
    before = correction.predict(wplus)
    torch.testing.assert_close(
        correction.predict(correction(wplus, target)), before + 0.5 * (target - before)
    )
    # the smile read from a geometry vector [shape ⊕ blendshapes ⊕ pose]
    blendshapes = torch.zeros(2, len(BLENDSHAPE_NAMES))
    blendshapes[:, SMILE_BLENDSHAPES[0]] = torch.tensor([0.2, 1.0])
    blendshapes[:, SMILE_BLENDSHAPES[1]] = torch.tensor([0.4, 0.6])
    vector = torch.cat([torch.randn(2, 7), blendshapes, torch.randn(2, 3)], 1)
    torch.testing.assert_close(smile_of(vector), torch.tensor([0.3, 0.8]))


def test_a_render_sharper_than_a_soft_original_is_blurred_to_its_detail_and_a_sharp_one_is_not():
    from g2face.models.fusion import SHARPNESS_TOLERANCE, as_photo_shows, high_frequency, match_sharpness

    rng = np.random.default_rng(0)
    texture = cv2.resize(
        rng.uniform(60, 200, (64, 64, 3)).astype(np.uint8), (256, 256), interpolation=cv2.INTER_CUBIC
    )
    region = np.zeros((256, 256), np.float32)
    region[64:192, 64:192] = 1.0
    soft = cv2.GaussianBlur(texture, (0, 0), 3.0)
    out = match_sharpness(texture.astype(np.float32), soft, region, 128.0)
    detail = high_frequency(np.clip(np.rint(out), 0, 255).astype(np.uint8), region, 128.0)
    assert detail <= SHARPNESS_TOLERANCE * high_frequency(soft, region, 128.0)
    assert detail < 0.6 * high_frequency(texture, region, 128.0)
    same = texture.astype(np.float32)
    assert match_sharpness(same, texture, region, 128.0) is same  # as sharp as the original: untouched
    # judged as the photo shows it: a crop upsampled from 64 px has no detail above that, and a
    # render's finer detail, lost on paste-back, is no reason to blur it
    small = as_photo_shows(texture, 64.0)
    assert high_frequency(texture, region, 128.0, 64.0) == pytest.approx(high_frequency(small, region, 128.0))
    assert match_sharpness(same, small, region, 128.0, 64.0) is same
    assert match_sharpness(same, small, region, 128.0) is not same


def test_the_preview_shows_the_fake_as_the_photo_will_after_pasting_back():
    """`FusedFace.preview` (what the search scores) is the crop resampled to its source width
    inside the replaced region, the original outside it; the crop itself stays full size."""
    from g2face.models.fusion import as_photo_shows

    original, render = _image(0), _image(3, (90, 140, 200))
    points, render_points = _mesh(), _mesh(seed=5, centre=(62, 72))
    settings = FusionSettings(match_sharpness=False)
    full = fuse_face(original, points, render, render_points, settings)
    small = fuse_face(original, points, render, render_points, settings, source_width=48.0)
    assert np.array_equal(full.crop, small.crop) and np.array_equal(full.mask, small.mask)
    alpha = small.mask[..., None]
    expected = np.rint(original * (1 - alpha) + as_photo_shows(small.crop, 48.0) * alpha)
    assert np.abs(small.preview.astype(int) - expected).max() <= 1
    outside = small.mask == 0
    assert np.array_equal(small.preview[outside], original[outside])
    assert not np.array_equal(small.preview, full.preview)


def test_a_lab_shift_converts_only_the_pixels_it_moves_and_as_a_whole_image_round_trip_would():
    """`_shift_lab` converts only a box around the pixels moved by half a level or more (for speed):
    the same bytes as converting the whole shifted image, and every other pixel untouched."""
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    shift = np.zeros_like(lab)
    shift[10:30, 5:25] = rng.normal(0, 3, (20, 20, 3))
    shift[40, 35, 2] = -0.7  # one pixel moved apart from the rest, by one channel only
    moved = np.abs(shift).max(-1) >= 0.5
    whole = image.copy()
    whole[moved] = cv2.cvtColor(np.clip(np.rint(lab + shift), 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)[
        moved
    ]
    out = _shift_lab(image, lab, shift)
    assert np.array_equal(out, whole) and not np.array_equal(out, image)
    assert np.array_equal(out[~moved], image[~moved])
    assert np.array_equal(_shift_lab(image, lab, np.zeros_like(lab) + 0.4), image)  # nothing moved


def test_a_turned_renders_lips_are_face_not_hair():
    """A head turned so far that the near corner of its mouth lies by the hull's edge: the upper lip
    (above the corners' line, far from the skin's colour) stays the render's face. Taken for a lock
    of hair it was filled, and with `render_only` the original's own lips showed there beside the
    render's (a second mouth on a turned face, wild/photos/group_t1.jpg)."""
    points = _mean_face().copy()
    far_side = points[:, 0] < 128
    points[far_side, 0] = 128 + (points[far_side, 0] - 128) * 0.15  # the far half foreshortened
    hull = cv2.convexHull(np.round(points[:NUM_MESH_POINTS]).astype(np.int32))
    render = np.full((256, 256, 3), (40, 60, 90), np.uint8)
    cv2.fillConvexPoly(render, hull, (200, 150, 125))
    render = np.clip(render + np.random.default_rng(0).normal(0, 4, render.shape), 0, 255).astype(np.uint8)
    lips = _features_mask(points, 256, ("mouth",)) > 0
    render[lips] = (150, 40, 50)
    face = render_face_mask(render, points, skin_mask(points, render), FusionSettings())
    assert face[lips].min() > 0.9


def _seam_scene(outside_colour=(225, 185, 165)):
    """A fake face (darker skin, an ellipse) shown inside an original whose skin around it is lit
    brighter; the original's left part is background (`outside_colour` elsewhere)."""
    size, centre, axes = 128, (64, 64), (34, 44)
    shown = np.zeros((size, size), np.uint8)
    cv2.ellipse(shown, centre, axes, 0, 0, 360, 1, -1)
    shown = cv2.GaussianBlur(shown.astype(np.float32), (0, 0), 1.5)
    rng = np.random.default_rng(3)
    fake = np.clip(
        np.full((size, size, 3), (200, 160, 140), np.float64) + rng.normal(0, 3, (size, size, 3)), 0, 255
    )
    original = np.clip(
        np.full((size, size, 3), outside_colour, np.float64) + rng.normal(0, 3, (size, size, 3)), 0, 255
    )
    original[:, :40] = (40, 70, 120)  # background at the face's left: no skin to meet
    fake, original = fake.astype(np.uint8), original.astype(np.uint8)
    inner = np.zeros((size, size), np.uint8)
    cv2.ellipse(inner, centre, (24, 32), 0, 0, 360, 1, -1)
    skin = inner.astype(bool)
    return fake, original, shown, skin, 2 * axes[0]


def test_the_colour_step_at_a_fakes_edge_is_read_where_skin_meets_skin_and_taken_out():
    fake, original, shown, skin, width = _seam_scene()
    fake_skin, original_skin = skin_coloured(fake, skin), skin_coloured(original, skin)
    before = edge_mismatch(fake, original, shown, fake_skin, original_skin, width)
    assert before.contrast() > 6  # the lit original's skin is ~9 L* above the fake's at the edge
    assert not before.read[:, :36].any() and before.read[:, 60:].any()  # background beside it: not a seam
    fixed = match_seam(fake, before, width)
    after = edge_mismatch(fixed, original, shown, skin_coloured(fixed, skin), original_skin, width)
    assert after.contrast() < 0.25 * before.contrast()
    centre = (slice(54, 74), slice(54, 74))
    assert np.abs(fixed[centre].astype(int) - fake[centre]).mean() < 3  # the interior keeps its colour
    # where the fake meets the original's background, it is left almost as it was
    left_edge = (slice(58, 70), slice(31, 36))
    right_edge = (slice(58, 70), slice(92, 97))
    moved = lambda box: np.abs(fixed[box].astype(int) - fake[box]).mean()  # noqa: E731
    assert moved(right_edge) > 3 * moved(left_edge)


def test_a_fake_that_already_meets_the_originals_skin_is_left_as_it_is():
    fake, original, shown, skin, width = _seam_scene(outside_colour=(200, 160, 140))
    mismatch = edge_mismatch(
        fake, original, shown, skin_coloured(fake, skin), skin_coloured(original, skin), width
    )
    assert mismatch.contrast() < 1.5
    assert np.abs(match_seam(fake, mismatch, width).astype(int) - fake).max() <= 3


def test_a_candidate_in_tinted_lenses_adds_glasses_only_where_its_frames_read_too(monkeypatch):
    """Between `SUNGLASSES_EYES_TINTED` and `SUNGLASSES_EYES` dark-eyed faces without glasses mix
    with tinted lenses: a candidate there counts as adding dark lenses to a light-eyed original
    only when its frames read as glasses too."""
    import g2face.models.fusion_anonymizer as fusion_anonymizer

    faces = [np.full((8, 8, 3), i, np.uint8) for i in range(7)]
    # light, tinted, tinted, dark; then fainter (below SUNGLASSES_EYES_TINTED): in frames with the
    # skin under the eyes dark (tinted lenses), in frames over light skin, unframed over dark skin
    shade = {0: 0.6, 1: 0.8, 2: 0.8, 3: 0.95, 4: 0.55, 5: 0.55, 6: 0.55}
    framed = {0: True, 1: True, 2: False, 3: False, 4: True, 5: True, 6: False}
    under = {0: 0.9, 1: 0.5, 2: 0.5, 3: 0.5, 4: 0.5, 5: 0.9, 6: 0.5}
    monkeypatch.setattr(fusion_anonymizer, "sunglasses_score", lambda face, points: shade[int(face[0, 0, 0])])
    monkeypatch.setattr(fusion_anonymizer, "under_eye_shade", lambda face, points: under[int(face[0, 0, 0])])
    monkeypatch.setattr(
        fusion_anonymizer, "candidate_glasses", lambda face, points, span=None: framed[int(face[0, 0, 0])]
    )
    monkeypatch.setattr(fusion_anonymizer, "facial_hair_score", lambda face, points: 0.0)
    monkeypatch.setattr(fusion_anonymizer, "chin_texture", lambda face, points: 0.0)

    anonymizer = _stand_in_scorer()
    scores = FusionAnonymizer._scores(
        anonymizer, torch.ones(3), (0.7, 40.0, True), faces, np.zeros((478, 2)), dark_lenses_added=True
    )
    assert [s.adds_glasses for s in scores] == [False, True, False, True, True, False, False]
    kept = FusionAnonymizer._scores(
        anonymizer, torch.ones(3), (0.7, 40.0, True), faces, np.zeros((478, 2)), dark_lenses_added=False
    )
    assert not any(s.adds_glasses for s in kept)


def test_a_candidate_in_mirrored_lenses_adds_glasses_where_the_skin_under_them_is_dimmed(monkeypatch):
    """Mirrored or grey lenses read light (`sunglasses_score`) yet hide the eyes: a framed candidate
    whose skin under the eyes reads at most `UNDER_EYE_TINTED` and `UNDER_EYE_DIMMED_BY` below the
    original's counts as adding lenses; not where the original's own sockets are as shadowed, and
    not without frames."""
    import g2face.models.fusion_anonymizer as fusion_anonymizer

    faces = [np.full((8, 8, 3), i, np.uint8) for i in range(4)]
    # clear frames; mirrored (framed, light, dimmed under); the same unframed; clear frames, a little
    # shadowed
    framed = {0: True, 1: True, 2: False, 3: True}
    under = {0: 0.95, 1: 0.5, 2: 0.5, 3: 0.85}
    monkeypatch.setattr(fusion_anonymizer, "sunglasses_score", lambda face, points: 0.1)
    monkeypatch.setattr(fusion_anonymizer, "under_eye_shade", lambda face, points: under[int(face[0, 0, 0])])
    monkeypatch.setattr(
        fusion_anonymizer, "candidate_glasses", lambda face, points, span=None: framed[int(face[0, 0, 0])]
    )
    monkeypatch.setattr(fusion_anonymizer, "facial_hair_score", lambda face, points: 0.0)
    monkeypatch.setattr(fusion_anonymizer, "chin_texture", lambda face, points: 0.0)
    assert 0.5 <= UNDER_EYE_TINTED < 0.95 - UNDER_EYE_DIMMED_BY and 0.75 - UNDER_EYE_DIMMED_BY < 0.6

    def adds(original_under_eye):
        scores = FusionAnonymizer._scores(
            _stand_in_scorer(),
            torch.ones(3),
            (0.7, 40.0, True),
            faces,
            np.zeros((478, 2)),
            dark_lenses_added=True,
            original_under_eye=original_under_eye,
        )
        return [s.adds_glasses for s in scores]

    assert adds(1.0) == [False, True, False, False]
    assert adds(0.6) == [False, False, False, False]  # the original's own sockets as shadowed
    assert adds(None) == [False, False, False, False]  # as before: light lenses pass


def test_fuse_face_takes_the_colour_step_out_of_the_edge_its_composite_shows():
    """An original lit brighter towards its outline than the render: with `match_seam` the fake
    meets the original's skin at the edge `FusedFace.shown` draws, and its middle is unchanged."""
    points = _mean_face()
    rng = np.random.default_rng(0)
    hull = cv2.convexHull(np.round(points[:NUM_MESH_POINTS]).astype(np.int32))
    inside = np.zeros((256, 256), np.uint8)
    cv2.fillConvexPoly(inside, hull, 1)
    lit = np.clip(1 - cv2.distanceTransform(inside, cv2.DIST_L2, 5) / 25, 0, 1)[..., None]
    original = np.array([190, 150, 130]) * (1 - lit) + np.array([240, 205, 185]) * lit
    original = np.clip(original + rng.normal(0, 2, (256, 256, 3)), 0, 255).astype(np.uint8)
    render = np.full((256, 256, 3), (40, 60, 90), np.float64)
    render[inside > 0] = (200, 160, 140)
    render = np.clip(render + rng.normal(0, 2, render.shape), 0, 255).astype(np.uint8)
    width = face_width(points)

    def fused(on):
        done = fuse_face(original, points, render, points, FusionSettings(match_seam=on))
        step = edge_mismatch(
            done.crop,
            original,
            done.shown,
            skin_coloured(done.crop, skin_mask(points, done.crop)),
            skin_coloured(original, skin_mask(points, original)),
            width,
        )
        return done, step.contrast()

    (plain, before), (seamless, after) = fused(False), fused(True)
    assert plain.shown.shape == (256, 256) and plain.shown.max() == 1 and plain.shown[5, 5] == 0
    assert before > 6 and after < 0.4 * before
    middle = (slice(120, 136), slice(120, 136))
    assert np.abs(seamless.crop[middle].astype(int) - plain.crop[middle]).max() <= 2


def test_the_pushs_eye_reading_sees_lenses_darkened_eye_by_eye():
    """`_push_away`'s differentiable stand-in for `sunglasses_score` (`_eye_darkness`): per eye,
    how much darker its region is than the upper cheeks, so a push step that tints the lenses is
    seen, and one eye's darkening is not averaged away by the other."""
    from g2face.models.fusion_anonymizer import _eye_darkness, _eye_regions, _upper_lip_and_cheeks

    face, points, centres = _face_with_eyes()
    _, cheeks = _upper_lip_and_cheeks(points, 256, "cpu")
    eyes = _eye_regions(points, 256, "cpu")

    def darkness(image: np.ndarray) -> torch.Tensor:
        return _eye_darkness(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1, eyes, cheeks)

    assert eyes.shape == (2, 256, 256) and eyes.sum() > 0 and cheeks.any()
    bare, tinted = darkness(face), darkness(_with_lenses(face, centres)[0])
    assert (tinted > bare + 0.3).all()
    one = darkness(_with_lenses(face, centres, which=(1,))[0])
    assert abs(float(one[0] - bare[0])) < 1e-6 and float(one[1]) > float(bare[1]) + 0.3
