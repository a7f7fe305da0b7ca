"""`g2face.data`: preparing a crop cache (with an injected detector, or pre-aligned) and reading it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from g2face.align import template_points
from g2face.cli.data import data as data_cli
from g2face.data import AlignedFaceDataset, prepare_dataset, read_manifest
from g2face.types import FaceDetection


def _photo_folder(tmp_path, fixtures_dir):
    """Two per-person folders (LFW style) and one unreadable file."""
    src = tmp_path / "src"
    for person, name in (("hopper", "grace_hopper.jpg"), ("astro", "astronaut.png")):
        (src / person).mkdir(parents=True)
        shutil.copy(fixtures_dir / name, src / person / name)
    (src / "astro" / "broken.jpg").write_bytes(b"not an image")
    return src


def _fake_detector(image: np.ndarray) -> list[FaceDetection]:
    """One 'face' whose landmarks are the 256 px template scaled into the image's central square,
    and one tiny face that the size filter must drop."""
    h, w = image.shape[:2]
    side = min(h, w)
    points = template_points(256) * side / 256 + [(w - side) / 2, (h - side) / 2]
    big = FaceDetection((0, 0, side, side), tuple(map(tuple, points)), 0.9)
    tiny = FaceDetection((0, 0, 10, 10), tuple(map(tuple, points / 50)), 0.95)
    return [tiny, big]


def test_prepare_with_detector_aligns_labels_and_resumes(tmp_path, fixtures_dir):
    src, dst = _photo_folder(tmp_path, fixtures_dir), tmp_path / "dst"
    report = prepare_dataset(src, dst, detector=_fake_detector, size=64, progress=False)
    assert (report.sources, report.crops, report.unreadable, report.without_face) == (3, 2, 1, 0)
    records = read_manifest(dst)
    assert sorted(r.identity for r in records) == ["astro", "hopper"]
    # the fake detector put the face exactly on the template: the landmarks land on it in the crop
    for r in records:
        assert np.abs(np.array(r.landmarks) - template_points(64)).max() < 0.05
        assert Image.open(dst / r.crop).size == (64, 64)
    again = prepare_dataset(src, dst, detector=_fake_detector, size=64, progress=False)
    assert (again.skipped, again.crops) == (2, 0) and len(read_manifest(dst)) == 2
    with pytest.raises(ValueError):
        prepare_dataset(src, dst, size=128, progress=False)


def test_prepared_dataset_is_a_torch_dataset(tmp_path, fixtures_dir):
    src = _photo_folder(tmp_path, fixtures_dir)
    prepare_dataset(src, tmp_path / "dst", size=64, progress=False)
    dataset = AlignedFaceDataset(tmp_path / "dst", size=32, hflip=True)
    assert len(dataset) == 2
    crop = dataset[0]
    assert crop.shape == (3, 32, 32) and crop.dtype == torch.float32
    assert crop.min() >= -1 and crop.max() <= 1
    header = json.loads((tmp_path / "dst" / "dataset.json").read_text())
    assert header["aligned"] and header["size"] == 64


def test_identity_labels_from_csv(tmp_path, fixtures_dir):
    src = tmp_path / "celeba"
    (src / "images").mkdir(parents=True)
    shutil.copy(fixtures_dir / "obama.jpg", src / "images" / "000001.jpg")
    (src / "identities.csv").write_text("file,identity\nimages/000001.jpg,42\n")
    prepare_dataset(src, tmp_path / "dst", size=32, progress=False)
    assert read_manifest(tmp_path / "dst")[0].identity == "42"


def test_cli_prepare_aligned(tmp_path, fixtures_dir):
    src = _photo_folder(tmp_path, fixtures_dir)
    result = CliRunner().invoke(
        data_cli, ["prepare", str(src), str(tmp_path / "out"), "--aligned", "--size", "32"]
    )
    # the one unreadable source is listed in one line and makes the exit status 1
    assert result.exit_code == 1, result.output
    assert "2 crops from 3 images" in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.jpg: cannot decode" in errors[0]


@pytest.mark.data
@pytest.mark.slow
def test_prepare_celeba_sample_with_yunet(shared_data, tmp_path):
    pytest.importorskip("cv2")
    from g2face.detection import YuNetDetector

    report = prepare_dataset(
        shared_data / "celeba", tmp_path / "celeba", detector=YuNetDetector().detect, limit=8, progress=False
    )
    assert report.crops >= 6, report
