"""CenterFace detector: agrees with YuNet on portraits and a group photo, finds nothing in a blank
image, maps shrunk-image coordinates back, and OpenCV DNN runs the network as onnxruntime does."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from g2face import hub
from g2face.detection import CenterFaceDetector, FaceDetector, YuNetDetector
from g2face.detection.base import iou
from g2face.detection.centerface import network_input
from g2face.io import read_image

PORTRAITS = ["astronaut.png", "biden.jpg", "grace_hopper.jpg", "obama.jpg"]


@pytest.fixture(scope="module")
def detector() -> CenterFaceDetector:
    return CenterFaceDetector()


@pytest.fixture(scope="module")
def yunet() -> YuNetDetector:
    return YuNetDetector()


@pytest.mark.parametrize("name", PORTRAITS)
def test_one_face_per_portrait_agreeing_with_yunet(detector, yunet, fixtures_dir, name):
    image = read_image(fixtures_dir / name).rgb
    faces, reference = detector.detect(image), yunet.detect(image)
    assert len(faces) == 1 and len(reference) == 1
    face, ref = faces[0], reference[0]
    assert face.score > 0.5 and iou(face.box, ref.box) > 0.5
    # same landmark order as YuNet; the two networks place points a few % of the face apart
    error = np.linalg.norm(face.points - ref.points, axis=1) / np.sqrt(ref.width * ref.height)
    assert error.mean() < 0.06 and error.max() < 0.1


def test_all_six_faces_in_the_group_photo(detector, yunet, shared_data):
    path = shared_data / "wild" / "photos" / "group_t1.jpg"
    if not path.exists():
        pytest.skip(f"{path} not found")
    image = read_image(path).rgb
    faces = detector.detect(image)
    assert len(faces) == 6
    for ref in yunet.detect(image):
        assert max(iou(f.box, ref.box) for f in faces) > 0.5


def test_no_face_in_blank_images(detector):
    assert detector.detect(np.full((240, 320, 3), 128, np.uint8)) == []
    assert detector.detect(np.zeros((50, 70, 3), np.uint8)) == []


def test_shrunk_images_map_back_to_full_resolution(detector, fixtures_dir):
    """A 1024 px image is shrunk to 640 px for the network: its face is found where the same face is
    found at 512 px, scaled ×2 (to within a few px of network noise)."""
    image = read_image(fixtures_dir / "astronaut.png").rgb
    large = cv2.resize(image, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    (small_face,), (large_face,) = detector.detect(image), detector.detect(large)
    assert np.abs(np.array(large_face.box) / 2 - small_face.box).max() < 4
    assert np.abs(large_face.points / 2 - small_face.points).max() < 4


def test_input_is_padded_to_multiples_of_32_and_protocol(detector):
    blob, factors = network_input(np.full((100, 1000, 3), 7, np.uint8), 640)
    assert blob.shape == (1, 3, 64, 640) and factors == (0.64, 0.64)
    assert (blob[0, :, :64, :640] == 7).all() and (blob[0, :, 64:] == 0).all()
    assert isinstance(detector, FaceDetector)
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.detect(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="multiple of 32"):
        CenterFaceDetector(working_size=100)


@pytest.mark.parity
def test_opencv_outputs_match_onnxruntime(detector, fixtures_dir):
    onnx = pytest.importorskip("onnx", reason="freeing the model's input size needs onnx")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime (the reference runtime) is not installed")
    model = onnx.load(hub.asset_path("centerface"))
    # the graph declares a fixed 10×3×32×32 input; OpenCV ignores it, onnxruntime needs it freed
    free = ("batch", None, "height", "width")
    for value in (model.graph.input[0], *model.graph.output):
        for dim, name in zip(value.type.tensor_type.shape.dim, free, strict=True):
            if name:
                dim.dim_param = name
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.log_severity_level = 1, 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    blob, _ = network_input(read_image(fixtures_dir / "grace_hopper.jpg").rgb, 640)
    expected = session.run(None, {model.graph.input[0].name: blob})
    for got, want in zip(detector.forward(blob), expected, strict=True):
        assert got.shape == want.shape and np.abs(got - want).max() < 1e-4
