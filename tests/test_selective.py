"""Selective anonymization (issue 16): kept face regions in the fusion mask, exempt / only people by
identity, the small-face fallback, and the per-face report and contact sheet. The tiny random model
and injected embeddings keep these fast; no model assets are needed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from g2face.cli import cli
from g2face.cli.anonymize import KEEP_CHOICES, SMALL_FACE_CHOICES
from g2face.io import expand_inputs, read_image
from g2face.models.checkpoints import save_g2face
from g2face.models.fusion import (
    KEEP_REGIONS,
    NUM_MESH_POINTS,
    FusionSettings,
    face_region_mask,
    fuse_face,
    keep_region_mask,
)
from g2face.models.zoo import build_model, tiny_config
from g2face.payload import Secret
from g2face.pipeline.g2face import G2FacePipeline, anonymize_files
from g2face.pipeline.review import ACTION_COLOURS, review_sheet
from g2face.pipeline.selection import SFACE_THRESHOLD, SMALL_FACE_METHODS, FaceSelector

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SIZE = 128
PASSWORD = {"G2FACE_PASSWORD": "correct horse battery staple"}
# Where the synthetic mesh puts each region's landmarks (x, y) in a 128 crop.
REGION_SPOTS = {
    "eyes": ((46, 56), (82, 56)),
    "brows": ((46, 44), (82, 44)),
    "nose": ((64, 74),),
    "mouth": ((64, 94),),
}


def _mesh(seed: int = 0) -> np.ndarray:
    """478 points: the face fills an ellipse; each keep-region's landmarks sit in a small disc."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi, NUM_MESH_POINTS + 10)
    r = np.sqrt(rng.uniform(0, 1, NUM_MESH_POINTS + 10))
    r[:36] = 1.0
    points = np.stack([64 + 40 * r * np.cos(angle), 70 + 50 * r * np.sin(angle), np.zeros_like(r)], 1)
    for name, polygons in KEEP_REGIONS.items():
        for polygon, (x, y) in zip(polygons, REGION_SPOTS[name], strict=True):
            a = rng.uniform(0, 2 * np.pi, len(polygon))
            points[list(polygon), 0] = x + 5 * np.cos(a)
            points[list(polygon), 1] = y + 3 * np.sin(a)
    return points


def test_the_cli_choices_match_the_library_names():
    assert set(KEEP_CHOICES) == set(KEEP_REGIONS)
    assert set(SMALL_FACE_CHOICES) == set(SMALL_FACE_METHODS)


def test_keep_names_are_validated():
    with pytest.raises(ValueError, match="unknown face region.*ears"):
        FusionSettings(keep=("eyes", "ears"))


def test_kept_regions_are_cut_out_of_the_replaced_region_with_a_soft_edge():
    points = _mesh()
    full = face_region_mask(points, SIZE, FusionSettings())
    eyes = face_region_mask(points, SIZE, FusionSettings(keep=("eyes",)))
    assert full[56, 46] == 1 and full[94, 64] == 1
    assert eyes[56, 46] == 0 and eyes[56, 82] == 0  # both eyes kept
    assert eyes[94, 64] == 1 and eyes[74, 64] > 0.9  # mouth and nose still replaced
    keep = keep_region_mask(points, SIZE, FusionSettings(keep=("eyes",)))
    assert keep[56, 46] == 1 and keep[94, 64] == 0
    soft = (keep > 0.02) & (keep < 0.98)
    assert soft.any() and soft.sum() < (keep >= 0.98).sum() * 2  # feathered, not a second face
    both = face_region_mask(points, SIZE, FusionSettings(keep=("nose", "mouth")))
    assert both[74, 64] == 0 and both[94, 64] == 0 and both[56, 46] == 1


def test_a_mesh_without_iris_points_still_keeps_the_eyes():
    mask = keep_region_mask(_mesh()[:NUM_MESH_POINTS], SIZE, FusionSettings(keep=("eyes",)))
    assert mask[56, 46] == 1


def test_fused_face_shows_the_original_in_kept_regions():
    points = _mesh()
    rng = np.random.default_rng(1)
    original = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    render = np.full((SIZE, SIZE, 3), 128, np.uint8)
    fused = fuse_face(original, points, render, points.copy(), FusionSettings(keep=("mouth",)))
    np.testing.assert_array_equal(fused.preview[92:97, 60:69], original[92:97, 60:69])
    assert not np.array_equal(fused.preview[54:59, 42:51], original[54:59, 42:51])


# ----------------------------------------------------------------------------- identity selection


def _selector(scores: list[float], mode: str) -> FaceSelector:
    """A selector whose embedder gives the i-th face cosine `scores[i]` to the one reference."""
    reference = np.array([[1.0, 0.0]], np.float32)

    def embed(image, detections):
        s = np.array(scores[: len(detections)])
        return np.stack([s, np.sqrt(1 - s**2)], 1)

    return FaceSelector(reference, mode, embed)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("exempt", [True, False, False, False]), ("only", [False, False, False, True])],
)
def test_exempt_and_only_decisions_and_ambiguous_faces_are_anonymized(mode, expected):
    scores = [0.9, SFACE_THRESHOLD + 0.03, SFACE_THRESHOLD - 0.03, 0.05]
    matches = _selector(scores, mode).decide(np.zeros((8, 8, 3), np.uint8), [None] * 4)
    assert [m.exempt for m in matches] == expected
    assert [m.ambiguous for m in matches] == [False, True, True, False]
    assert [m.score for m in matches] == pytest.approx(scores)


@pytest.fixture(scope="module")
def pipeline() -> G2FacePipeline:
    return G2FacePipeline(build_model(tiny_config()))


@pytest.fixture(scope="module")
def two_faces() -> np.ndarray:
    """Grace Hopper left, Obama right, same height."""
    left = Image.open(FIXTURES / "grace_hopper.jpg").convert("RGB")
    right = Image.open(FIXTURES / "obama.jpg").convert("RGB")
    right = right.resize((round(right.width * left.height / right.height), left.height))
    return np.concatenate([np.asarray(left), np.asarray(right)], 1)


def _left_first(pipeline, image):
    return sorted(pipeline.detector.detect(image), key=lambda d: d.box[0])


def _box_changed(before, after, box) -> bool:
    x0, y0, x1, y1 = (int(v) for v in box)
    return bool(np.any(before[y0:y1, x0:x1] != after[y0:y1, x0:x1]))


@pytest.mark.parametrize("mode", ["exempt", "only"])
def test_exempt_person_is_left_untouched_and_everyone_else_anonymized(pipeline, two_faces, mode):
    detections = _left_first(pipeline, two_faces)
    assert len(detections) == 2
    selector = _selector([0.8, 0.1], mode)  # the left face is the reference person
    out = pipeline.anonymize(two_faces, "pw", detections=detections, selector=selector)
    actions = [d.action for d in out.decisions]
    kept = 0 if mode == "exempt" else 1
    assert actions[kept] == "exempt" and actions[1 - kept] == "anonymized"
    assert not _box_changed(two_faces, out.image, detections[kept].box)
    assert _box_changed(two_faces, out.image, detections[1 - kept].box)
    assert len(out.faces) == 1 and out.faces[0].detection is detections[1 - kept]
    assert out.decisions[kept].face is None and out.decisions[kept].method is None
    back = pipeline.recover(out.image, "pw", container=out.container)
    np.testing.assert_array_equal(back.image, two_faces)  # the container holds the changed face


def test_small_faces_get_the_fallback_filter_and_are_reported(pipeline, two_faces):
    detections = _left_first(pipeline, two_faces)
    narrow = min(d.width for d in detections)
    out = pipeline.anonymize(
        two_faces, "pw", detections=detections, min_face=narrow + 1, small_faces="pixelate"
    )
    small = [d for d in out.decisions if d.action == "small-face fallback"]
    assert len(small) == 1 and small[0].method == "pixelate" and small[0].detection.width == narrow
    assert all(_box_changed(two_faces, out.image, d.box) for d in detections)  # no face left as it was
    back = pipeline.recover(out.image, "pw", container=out.container)
    np.testing.assert_array_equal(back.image, two_faces)


def test_every_face_of_a_downscaled_crowd_is_handled_by_the_fallback(pipeline):
    """Faces far below the generator's size: a 3×3 grid of downscaled portraits."""
    photo = Image.open(FIXTURES / "obama.jpg").convert("RGB")
    tile = np.asarray(photo.resize((photo.width // 4, photo.height // 4), Image.BILINEAR))
    crowd = np.concatenate([np.concatenate([tile] * 3, 1)] * 3, 0)
    detections = pipeline.detector.detect(crowd)
    assert len(detections) == 9
    out = pipeline.anonymize(crowd, "pw", detections=detections, min_face=200)
    assert [d.action for d in out.decisions] == ["small-face fallback"] * 9
    assert all(_box_changed(crowd, out.image, d.box) for d in detections)


def test_report_and_contact_sheet_list_every_face_with_its_action(pipeline, two_faces, tmp_path):
    src = tmp_path / "in" / "pair.png"
    src.parent.mkdir()
    Image.fromarray(two_faces).save(src)
    detections = _left_first(pipeline, two_faces)
    narrow = min(d.width for d in detections)
    selector = _selector([0.1, 0.1], "exempt")
    report = anonymize_files(
        pipeline,
        expand_inputs([str(src)]),
        tmp_path / "out",
        Secret.from_password("pw"),
        selector=selector,
        min_face=narrow + 1,
        review=tmp_path / "review",
    )
    (outcome,) = report.outcomes
    assert outcome.ok, outcome.error
    faces = outcome.result.details["faces"]
    assert sorted(f["action"] for f in faces) == ["anonymized", "small-face fallback"]
    for face in faces:
        assert {"box", "score", "action", "method", "match_score", "dummy_seed", "carriers"} <= set(face)
        assert face["match_score"] == pytest.approx(0.1, abs=1e-4)
        assert "container" in face["carriers"]
    assert json.dumps(outcome.result.details)  # serialisable as is
    sheet_path = tmp_path / "review" / "pair.review.png"
    assert outcome.result.details["review"] == str(sheet_path)
    sheet = read_image(sheet_path).rgb
    assert sheet.shape[0] > two_faces.shape[0] and sheet.shape[1] == two_faces.shape[1]
    # Each face's box is drawn in its action's colour.
    for d, face in zip(
        sorted(detections, key=lambda d: d.box[0]), sorted(faces, key=lambda f: f["box"][0]), strict=True
    ):
        x0, y0, x1, y1 = (int(round(v)) for v in d.box)
        edge = sheet[(y0 + y1) // 2, max(0, x0 - 1) : x0 + 2]
        assert any(np.abs(px.astype(int) - ACTION_COLOURS[face["action"]]).max() < 40 for px in edge)


def test_a_face_to_review_is_named_in_the_report_the_summary_line_and_the_sheet():
    """A fake that misses some of the anonymizer's goals (the best the search found) is listed
    for a person to check: in the JSON report, the CLI's line for the file and the review sheet."""
    from types import SimpleNamespace

    from g2face.cli.anonymize import _describe_anonymized
    from g2face.pipeline.g2face import AnonymizedFace, FaceDecision, decision_json
    from g2face.pipeline.review import _label
    from g2face.types import FaceDetection, Footprint

    detection = FaceDetection((10.0, 10.0, 50.0, 60.0), ((20.0, 30.0),) * 5, 0.9)
    footprint = Footprint(0, 0, np.zeros((2, 2), bool))
    checks = ("identity similarity 0.37 above the bar of 0.30", "glasses added")
    faces = [
        AnonymizedFace(detection, 1, footprint, True, 0.12),
        AnonymizedFace(detection, 2, footprint, True, 0.37, shortfalls=checks),
    ]
    decisions = [FaceDecision(detection, "anonymized", "g2face", None, face) for face in faces]
    entries = [decision_json(d, True) for d in decisions]
    assert "review" not in entries[0] and entries[1]["review"] == list(checks)
    assert json.dumps(entries)
    line = _describe_anonymized(SimpleNamespace(input="in.jpg", output="out.jpg", details={"faces": entries}))
    assert line == (
        "in.jpg: 2 faces anonymized (to review: #1 identity similarity 0.37 above the bar of 0.30; "
        "glasses added) -> out.jpg"
    )
    assert "check" not in _label(0, decisions[0]) and "check: " + "; ".join(checks) in _label(1, decisions[1])
    # the run's last line counts them over every file
    from g2face.cli.anonymize import _faces_to_review

    done = SimpleNamespace(ok=True, result=SimpleNamespace(details={"faces": entries}))
    failed = SimpleNamespace(ok=False, result=None)
    assert _faces_to_review(SimpleNamespace(outcomes=[done, failed, done])).startswith("; 2 faces to review")
    assert _faces_to_review(SimpleNamespace(outcomes=[failed])) == ""
    # on the sheet: its box in the review colour, and the legend wrapped to a narrow image's width
    from g2face.pipeline.review import TO_REVIEW_COLOUR

    sheet = review_sheet(np.zeros((80, 120, 3), np.uint8), decisions[1:])
    assert (sheet[10, 9:12] == TO_REVIEW_COLOUR).all(axis=1).any()
    legend = sheet[80:]
    assert legend.shape[0] > 4 * 14  # the label took several lines
    assert (legend[:, -2:] == 255).all()  # none ran off the right edge


def test_contact_sheet_of_an_image_without_faces():
    sheet = review_sheet(np.zeros((40, 60, 3), np.uint8), [])
    assert sheet.shape[0] > 40 and sheet.shape[1] == 60


# ----------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def weights(tmp_path_factory, pipeline):
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_g2face(pipeline.model.net, path)
    return path


def test_cli_min_face_report_and_review(tmp_path, weights, fixtures_dir):
    out, report, review = tmp_path / "out", tmp_path / "report.json", tmp_path / "review"
    result = CliRunner().invoke(
        cli,
        ["anonymize", str(fixtures_dir / "grace_hopper.jpg"), "-o", str(out), "--model", str(weights)]
        + ["--min-face", "100000", "--small-faces", "box"]
        + ["--report", str(report), "--review", str(review)],
        env=PASSWORD,
    )
    assert result.exit_code == 0, result.output
    assert "1 small-face fallback" in result.output
    (entry,) = json.loads(report.read_text())["inputs"]
    (face,) = entry["faces"]
    assert face["action"] == "small-face fallback" and face["method"] == "box"
    assert (review / "grace_hopper.review.png").is_file()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--keep", "eyes", "--method", "blur"], "--keep needs --method g2face"),
        (["--keep", "eyes,ears"], "unknown region ears"),
        (["--keep", "mouth"], "--keep needs a geometric-fusion model"),
        (["--exempt", "a.jpg", "--only", "b.jpg"], "not both"),
    ],
)
def test_cli_refuses_bad_selective_options(tmp_path, weights, fixtures_dir, options, message):
    result = CliRunner().invoke(
        cli,
        ["anonymize", str(fixtures_dir / "obama.jpg"), "-o", str(tmp_path / "o.png"), "--model", str(weights)]
        + options,
        env=PASSWORD,
    )
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "o.png").exists()
