"""Identity priors: crop geometry, SFace (module, parity, encoder) and the evaluation-only FaceNet."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from g2face import hub
from g2face.align import estimate_similarity, template_points
from g2face.priors.base import IdentityEncoder
from g2face.priors.crops import ARCFACE_TEMPLATE_112, ffhq_to_arcface, warp_affine

torch.set_num_threads(1)
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="module")
def sface():
    from g2face.priors.sface import SFaceEncoder

    return SFaceEncoder()


@pytest.fixture(scope="module")
def faces():
    """Each public-domain fixture photo (BGR) with YuNet's most confident face row."""
    out = {}
    for name in ("obama.jpg", "biden.jpg", "grace_hopper.jpg"):
        img = cv2.imread(str(FIXTURES / name))
        h, w = img.shape[:2]
        detector = cv2.FaceDetectorYN.create(str(hub.asset_path("yunet")), "", (w, h), 0.6)
        _, rows = detector.detect(img)
        out[name] = (img, rows[np.argmax(rows[:, -1])])
    return out


def rgb_tensor(bgr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1)[None].float()


def g2face_crop(img: np.ndarray, face: np.ndarray) -> torch.Tensor:
    m = estimate_similarity(face[4:14].reshape(5, 2), template_points(256))
    return rgb_tensor(cv2.warpAffine(img, m, (256, 256), flags=cv2.INTER_LINEAR)) / 127.5 - 1


# ---------------------------------------------------------------- crop geometry


def test_similarity_matrix_recovers_a_known_similarity():
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -3.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = ARCFACE_TEMPLATE_112 @ rot.T + shift
    expected = np.hstack([rot, shift[:, None]])
    np.testing.assert_allclose(estimate_similarity(ARCFACE_TEMPLATE_112, dst), expected, atol=1e-9)


def test_warp_affine_matches_opencv():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (80, 96, 3)).astype(np.float32), (7, 7), 2)
    m = estimate_similarity(template_points(96)[:, ::-1] * 0.8, ARCFACE_TEMPLATE_112 * 0.5)
    ours = warp_affine(torch.from_numpy(img).permute(2, 0, 1)[None], m, 56)[0].permute(1, 2, 0).numpy()
    ref = cv2.warpAffine(img, m, (56, 56), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    inner = (slice(4, -4), slice(4, -4))  # borders differ by OpenCV's edge handling only
    assert np.abs(ours[inner] - ref[inner]).max() < 0.5  # OpenCV interpolates in 1/32 px fixed point


def test_fixed_crop_takes_ffhq_template_to_arcface_template():
    # Dots at the FFHQ template land where the least-squares similarity puts them, near the ArcFace
    # template (the two 5-point shapes are not exactly similar).
    img = torch.zeros(1, 5, 256, 256)
    for k, (x, y) in enumerate(template_points(256)):
        yy, xx = torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij")
        img[0, k] = torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 3.0**2))
    out = ffhq_to_arcface(256, 112)(img)[0]
    yy, xx = torch.meshgrid(torch.arange(112.0), torch.arange(112.0), indexing="ij")
    centroids = np.array([[(xx * o).sum() / o.sum(), (yy * o).sum() / o.sum()] for o in out])
    m = estimate_similarity(template_points(256), ARCFACE_TEMPLATE_112)
    np.testing.assert_allclose(centroids, template_points(256) @ m[:, :2].T + m[:, 2], atol=0.3)
    assert np.abs(centroids - ARCFACE_TEMPLATE_112).max() < 2.5


# ---------------------------------------------------------------- SFace


def test_sface_encoder_contract(sface):
    assert isinstance(sface, IdentityEncoder) and sface.name == "sface" and not sface.training
    assert not any(p.requires_grad for p in sface.parameters())
    crops = (torch.rand(2, 3, 256, 256) * 2 - 1).requires_grad_()
    emb = sface(crops)
    assert emb.shape == (2, 128)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    emb[:, 0].sum().backward()
    assert crops.grad is not None and crops.grad.abs().sum() > 0
    torch.testing.assert_close(sface(crops[1:].detach()), emb[1:].detach(), atol=1e-5, rtol=0)  # batching


def test_sface_same_person_beats_different_people(sface, faces):
    crops = torch.cat([g2face_crop(*faces[n]) for n in ("obama.jpg", "biden.jpg", "grace_hopper.jpg")])
    emb = sface(torch.cat([crops, crops[:1].flip(-1)]))  # a mirrored face is the same identity
    sims = emb @ emb.T
    assert sims[0, 3] > 0.6
    assert sims[0, 1] < 0.35 and sims[0, 2] < 0.35 and sims[1, 2] < 0.35


@pytest.mark.parity
def test_sface_parity_with_opencv_on_real_faces(sface, faces):
    pytest.importorskip("onnx", reason="folding the quantised SFace reference needs onnx")
    from g2face.priors.sface import sface_reference_onnx_path

    recognizer = cv2.FaceRecognizerSF.create(str(sface_reference_onnx_path()), "")
    for img, face in faces.values():
        aligned = recognizer.alignCrop(img, face)
        ref = recognizer.feature(aligned).ravel()
        ours = sface.embed_aligned(rgb_tensor(aligned))[0].numpy()
        assert ours @ ref / np.linalg.norm(ref) >= 0.9999
        # The standard path from 5 landmarks resamples like alignCrop (up to OpenCV's fixed point).
        photo = sface.embed_photo(rgb_tensor(img), face[None, 4:14].reshape(1, 5, 2))[0].numpy()
        assert photo @ ref / np.linalg.norm(ref) >= 0.999


@pytest.mark.parity
def test_sface_parity_with_onnxruntime():
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the reference runtime")
    pytest.importorskip("onnx", reason="folding the quantised SFace reference needs onnx")
    from g2face.priors.sface import load_sface_net, sface_reference_onnx_path

    x = np.random.default_rng(1).uniform(0, 255, (1, 3, 112, 112)).astype(np.float32)
    ref = ort.InferenceSession(str(sface_reference_onnx_path())).run(None, {"data": x})[0]
    ours = load_sface_net()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-4)


@pytest.mark.data
@pytest.mark.parity
def test_sface_parity_on_lfw_crops(sface, shared_data):
    pytest.importorskip("onnx", reason="folding the quantised SFace reference needs onnx")
    from g2face.priors.sface import sface_reference_onnx_path

    images = sorted((shared_data / "lfw" / "lfw-deepfunneled").glob("A*/*_0001.jpg"))[:6]
    if not images:
        pytest.skip("no LFW images under shared data")
    recognizer = cv2.FaceRecognizerSF.create(str(sface_reference_onnx_path()), "")
    detector = cv2.FaceDetectorYN.create(str(hub.asset_path("yunet")), "", (250, 250), 0.5)
    for path in images:
        img = cv2.imread(str(path))
        _, rows = detector.detect(img)
        aligned = recognizer.alignCrop(img, rows[0])
        ref = recognizer.feature(aligned).ravel()
        ours = sface.embed_aligned(rgb_tensor(aligned))[0].numpy()
        assert ours @ ref / np.linalg.norm(ref) >= 0.9999, path.name


# ---------------------------------------------------------------- FaceNet (evaluation only)


@pytest.fixture(scope="module")
def facenet():
    from g2face.priors.facenet import FaceNetEncoder

    return FaceNetEncoder()


def test_facenet_refuses_to_be_trained_against(facenet):
    crops = (torch.rand(1, 3, 256, 256) * 2 - 1).requires_grad_()
    with pytest.raises(RuntimeError, match="never train"):
        facenet(crops)
    emb = facenet(crops.detach())
    assert emb.shape == (1, 512) and not emb.requires_grad
    assert isinstance(facenet, IdentityEncoder) and not facenet.training


def test_facenet_trunk_matches_recorded_opencv_output(facenet):
    """Pooled features of a fixed pattern, recorded from OpenCV 4.10's TensorFlow importer (the last
    OpenCV that reads the graph; OpenCV 5 dropped the importer)."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 160), torch.linspace(-1, 1, 160), indexing="ij")
    x = torch.stack([torch.sin(3 * xx + yy), torch.cos(2 * yy - xx), xx * yy])[None]
    with torch.no_grad():
        features = facenet.net.features(x)[0]
    idx = [0, 1, 100, 500, 1000, 1500, 1791]
    recorded = [-0.2511355, -0.15458508, -0.11056706, -0.07324962, 0.09431282, -0.1902349, -0.3075139]
    np.testing.assert_allclose(features[idx].numpy(), recorded, atol=1e-4)
    assert abs(features.norm().item() - 7.935583) < 1e-3


def test_facenet_same_person_beats_different_people(facenet, faces):
    crops = torch.cat([g2face_crop(*faces[n]) for n in ("obama.jpg", "biden.jpg", "grace_hopper.jpg")])
    emb = facenet(torch.cat([crops, crops[:1].flip(-1)]))
    sims = emb @ emb.T
    assert sims[0, 3] > max(sims[0, 1], sims[0, 2], sims[1, 2]) + 0.2


def test_owned_tensor_copies_a_read_only_array_without_a_warning():
    """The converters read weights as read-only views into the model files; `owned_tensor` gives
    each its own writable copy, so no "not writable" warning reaches a user's first run."""
    import warnings

    from g2face.priors.base import owned_tensor

    source = np.frombuffer(np.arange(6, dtype=np.float64).tobytes(), np.float64).reshape(2, 3).T
    assert not source.flags.writeable and not source.flags.c_contiguous
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = owned_tensor(source, np.float32)
    assert tensor.dtype == torch.float32 and tensor.is_contiguous()
    assert torch.equal(tensor, torch.tensor([[0, 3], [1, 4], [2, 5]], dtype=torch.float32))
    tensor[0, 0] = 7  # its own memory: the source is untouched
    assert source[0, 0] == 0
