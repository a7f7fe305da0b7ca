"""Parity of the MediaPipe ports with the reference runtimes on real faces.

* network to network: the ported landmark network against LiteRT (`ai-edge-litert`) running
  face_landmarks_detector.tflite on the same input tensors;
* blendshapes: the ported blendshape network fed MediaPipe FaceLandmarker's own landmarks against
  the blendshapes FaceLandmarker reports;
* end to end (slow): FaceLandmarker's landmarks against the port run on the region of interest
  MediaPipe used, rebuilt from its face detector (boxes come back rounded to whole pixels, so the
  region is refined by a small search, with LiteRT, before the port is compared).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from g2face import hub
from g2face.priors.mediapipe_geometry import BLENDSHAPE_LANDMARKS, MediaPipeFaceModel

pytestmark = pytest.mark.parity
mp = pytest.importorskip("mediapipe", reason="parity needs the mediapipe tasks runtime")
litert = pytest.importorskip("ai_edge_litert.interpreter", reason="parity needs ai-edge-litert (LiteRT)")
cv2 = pytest.importorskip("cv2")
from mediapipe.tasks.python import BaseOptions, vision  # noqa: E402

TOLERANCE = 1e-3  # normalised image coordinates, and blendshape scores
PHOTOS = ("obama.jpg", "grace_hopper.jpg", "astronaut.png")

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="module")
def task_path():
    if not hub.is_cached("face-landmarker"):
        pytest.skip("face-landmarker asset not cached (g2face weights fetch face-landmarker)")
    return hub.asset_path("face-landmarker")


@pytest.fixture(scope="module")
def model(task_path) -> MediaPipeFaceModel:
    return MediaPipeFaceModel()


@pytest.fixture(scope="module")
def reference(task_path):
    """FaceLandmarker results per photo: (rgb, landmarks [478, 3], blendshapes [52])."""
    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(task_path)), output_face_blendshapes=True, num_faces=1
    )
    results = {}
    with vision.FaceLandmarker.create_from_options(options) as landmarker:
        for name in PHOTOS:
            rgb = np.asarray(Image.open(FIXTURES / name).convert("RGB"))
            r = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb)))
            landmarks = np.array([[p.x, p.y, p.z] for p in r.face_landmarks[0]])
            results[name] = (rgb, landmarks, np.array([c.score for c in r.face_blendshapes[0]]))
    return results


@pytest.fixture(scope="module")
def litert_landmarks(task_path):
    interpreter = litert.Interpreter(
        model_content=zipfile.ZipFile(task_path).read("face_landmarks_detector.tflite")
    )
    interpreter.allocate_tensors()

    def run(tensor: np.ndarray) -> tuple[np.ndarray, float]:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor[None].astype(np.float32))
        interpreter.invoke()
        out = {o["name"]: interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details()}
        return out["Identity"].reshape(478, 3), float(out["Identity_1"].ravel()[0])

    return run


def roi_crop(rgb: np.ndarray, cx: float, cy: float, side: float, angle: float) -> np.ndarray:
    """MediaPipe's square ROI (pixel centre, side, rotation) resampled to the 256 px network input."""
    c, s = np.cos(angle), np.sin(angle)
    to_image = np.array([[c, -s], [s, c]]) * side / 256
    matrix = np.hstack([to_image, (np.array([cx, cy]) - to_image @ [128.0, 128.0])[:, None]])
    return cv2.warpAffine(rgb.astype(np.float32), cv2.invertAffineTransform(matrix), (256, 256),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT) / 255  # fmt: skip


def to_image(pixels: np.ndarray, cx, cy, side, angle, width, height) -> np.ndarray:
    """Network-output landmarks (256 px) -> normalised image coordinates, as MediaPipe projects them."""
    u = pixels[:, :2] / 256 - 0.5
    c, s = np.cos(angle), np.sin(angle)
    x = (c * u[:, 0] - s * u[:, 1]) * side + cx
    y = (s * u[:, 0] + c * u[:, 1]) * side + cy
    return np.stack([x / width, y / height, pixels[:, 2] / 256 * side / width], axis=1)


def tracking_roi(landmarks: np.ndarray, width: int, height: int):
    """The ROI MediaPipe derives from landmarks: box centre, eye-line angle, long side x1.5 (pixels)."""
    x, y = landmarks[:, 0] * width, landmarks[:, 1] * height
    angle = np.arctan2(y[263] - y[33], x[263] - x[33])
    return (x.min() + x.max()) / 2, (y.min() + y.max()) / 2, 1.5 * max(np.ptp(x), np.ptp(y)), angle


def test_landmark_network_matches_litert(model, reference, litert_landmarks):
    for name, (rgb, landmarks, _) in reference.items():
        tensor = roi_crop(rgb, *tracking_roi(landmarks, rgb.shape[1], rgb.shape[0]))
        expected, presence = litert_landmarks(tensor)
        with torch.no_grad():
            got, logit = model.mesh(torch.from_numpy(tensor).permute(2, 0, 1)[None])
        assert np.abs(got[0].numpy() - expected).max() / 256 < TOLERANCE, name
        assert abs(float(logit) - presence) < 1e-3 and presence > 0, name


def test_blendshape_network_matches_face_landmarker(model, reference):
    for name, (rgb, landmarks, blendshapes) in reference.items():
        # MediaPipe feeds the blendshape model image-pixel coordinates
        points = landmarks[list(BLENDSHAPE_LANDMARKS), :2] * [rgb.shape[1], rgb.shape[0]]
        with torch.no_grad():
            got = model.blendshapes(torch.from_numpy(points).float()[None])[0].numpy()
        assert np.abs(got - blendshapes).max() < TOLERANCE, name


@pytest.mark.slow
def test_face_landmarker_end_to_end(model, reference, litert_landmarks, task_path):
    from scipy.optimize import minimize

    detector_model = zipfile.ZipFile(task_path).read("face_detector.tflite")
    options = vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_buffer=detector_model))
    rgb, landmarks, _ = reference["obama.jpg"]
    height, width = rgb.shape[:2]
    with vision.FaceDetector.create_from_options(options) as detector:
        found = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb)))
    box, eyes = found.detections[0].bounding_box, found.detections[0].keypoints[:2]
    # face_detector_graph.cc: the detection box x1.5, turned so the eyes are level
    angle = np.arctan2((eyes[1].y - eyes[0].y) * height, (eyes[1].x - eyes[0].x) * width)
    roi = np.array([box.origin_x + box.width / 2, box.origin_y + box.height / 2, 1.5 * box.width, angle])

    def predict(params, run):
        candidate = roi + params * [1, 1, 1, 0.01]
        return to_image(run(roi_crop(rgb, *candidate)), *candidate, width, height)

    def loss(params):
        return np.abs(predict(params, lambda t: litert_landmarks(t)[0])[:, :2] - landmarks[:, :2]).mean()

    search = np.zeros(4)
    for step in (1.0, 0.3):  # restart: the resampled objective is bumpy at sub-pixel scale
        simplex = np.vstack([search, search + step * np.eye(4)])
        options = {"xatol": 1e-4, "fatol": 1e-10, "maxiter": 400, "initial_simplex": simplex}
        search = minimize(loss, search, method="Nelder-Mead", options=options).x
    assert np.abs(search[:3]).max() < 2.0  # within rounding of the detector's whole-pixel box

    def port(tensor):
        with torch.no_grad():
            return model.mesh(torch.from_numpy(tensor).permute(2, 0, 1)[None])[0][0].numpy()

    error = np.abs(predict(search, port) - landmarks).max(0)
    print("end-to-end max error (x, y, z):", error, "ROI correction:", search)
    assert error[:2].max() < TOLERANCE, error
    assert error[2] < TOLERANCE, error
