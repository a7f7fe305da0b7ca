"""End-to-end evaluation on a tiny synthetic LFW/CelebA with fake networks: every protocol runs,
resumes from its caches and writes the run folder."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from g2face.align import template_points
from g2face.evaluation import methods as mt
from g2face.evaluation.faces import DISTORTIONS, FaceFinder
from g2face.evaluation.protocols import name_seed, read_celeba_split, read_lfw_pairs
from g2face.evaluation.runner import EvalConfig, Toolkit, run_evaluation
from g2face.priors.base import Geometry
from g2face.types import FaceDetection

SIZE, CROP = 96, 64
PEOPLE = ["Ann_A", "Bob_B", "Cid_C", "Dee_D"]


class CentreDetector:
    """One face, framed so the aligned crop is the central 64 px of the photo; none where the
    photo's centre is flat."""

    name = "centre"

    def detect(self, image):
        h, w = image.shape[0] // 2, image.shape[1] // 2
        if image[h - 8 : h + 8, w - 8 : w + 8].std() < 1:
            return []
        offset = (image.shape[1] - CROP) / 2, (image.shape[0] - CROP) / 2
        points = template_points(CROP) + offset
        box = (offset[0] + 8, offset[1] + 8, offset[0] + CROP - 8, offset[1] + CROP - 8)
        return [FaceDetection(box, tuple(map(tuple, points)), 0.9)]


class ColourRecognizer:
    """'Identity' = the 4×4 colour layout of the crop."""

    name, embedding_dim = "colour", 48

    def __call__(self, crops):
        return F.normalize(F.adaptive_avg_pool2d(crops, 4).flatten(1) + 1e-3, dim=1)


class MeanGeometry:
    name, shape_dim, expression_dim = "mean", 1, 3

    def __call__(self, crops):
        b = len(crops)
        grid = torch.stack(torch.meshgrid(torch.arange(20.0), torch.arange(15.0), indexing="ij"), -1)
        landmarks = (grid.reshape(1, 300, 2) / 20 + crops.mean((1, 2, 3)).view(b, 1, 1) * 0.01).expand(
            b, -1, -1
        )
        return Geometry(
            torch.zeros(b, 1),
            crops.mean((2, 3)),
            torch.zeros(b, 3),
            torch.cat([landmarks, torch.zeros(b, 300, 1)], 2),
        )


class Darken:
    """A toy reversible method: a constant darkening (which survives the soft paste-back exactly),
    undone only by the right password."""

    name, password = "darken", "pw"

    def anonymize(self, crops, seeds):
        return crops - 0.2

    def recover(self, crops, password):
        ok = password == self.password
        return mt.Recovered(
            crops + 0.2 if ok else crops, torch.full((len(crops),), ok), torch.zeros(len(crops))
        )


def _photo(person: int, shot: int) -> np.ndarray:
    rng = np.random.default_rng(100 * person + shot)
    colours = np.random.default_rng(person).integers(60, 225, size=(4, 4, 3))
    image = cv2.resize(colours.astype(np.uint8), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST)
    return np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def tiny_data(tmp_path):
    root = tmp_path / "data"
    lines = ["2\t2"]
    for fold in range(2):
        a, b = PEOPLE[2 * fold], PEOPLE[2 * fold + 1]
        lines += [f"{a}\t1\t2", f"{b}\t1\t2", f"{a}\t1\t{b}\t1", f"{b}\t2\t{a}\t2"]
    (root / "lfw").mkdir(parents=True)
    (root / "lfw" / "pairs.txt").write_text("\n".join(lines) + "\n")
    for p, name in enumerate(PEOPLE):
        (root / "lfw" / "lfw-deepfunneled" / name).mkdir(parents=True)
        for shot in (1, 2):
            cv2.imwrite(str(root / f"lfw/lfw-deepfunneled/{name}/{name}_{shot:04d}.jpg"), _photo(p, shot))
    (root / "celeba" / "images").mkdir(parents=True)
    rows = ["file,identity"]
    for i in range(9):
        cv2.imwrite(str(root / f"celeba/images/{i:06d}.jpg"), _photo(i % 3, 10 + i))
        rows.append(f"images/{i:06d}.jpg,{i % 3}")
    cv2.imwrite(str(root / "celeba/images/000009.jpg"), np.full((SIZE, SIZE, 3), 128, np.uint8))  # no face
    rows.append("images/000009.jpg,1")
    (root / "celeba" / "identities.csv").write_text("\n".join(rows) + "\n")
    return root


def test_readers(tiny_data):
    pairs = read_lfw_pairs(tiny_data)
    assert len(pairs) == 8 and pairs.same.sum() == 4 and list(pairs.fold) == [0] * 4 + [1] * 4
    assert pairs.first[2] == "lfw/lfw-deepfunneled/Ann_A/Ann_A_0001.jpg"
    assert pairs.second[2] == "lfw/lfw-deepfunneled/Bob_B/Bob_B_0001.jpg"
    limited = read_lfw_pairs(tiny_data, limit=4)
    assert len(limited) == 4 and list(limited.same) == [True, False, True, False]
    genuine = pairs.genuine()
    assert len(genuine) == 4 and all(a.split("/")[2] == b.split("/")[2] for a, b in genuine)
    assert pairs.genuine(2) == [genuine[0], genuine[2]]  # spread over the list: both folds
    assert name_seed("a.jpg/A") == name_seed("a.jpg/A") != name_seed("a.jpg/B")
    assert 0 <= name_seed("a.jpg") < 2**63
    split = read_celeba_split(tiny_data)
    assert split.gallery == (
        "celeba/images/000000.jpg",
        "celeba/images/000001.jpg",
        "celeba/images/000002.jpg",
    )
    assert len(split.probes) == 7 and set(split.probe_ids) == {0, 1, 2}
    assert len(read_celeba_split(tiny_data, limit=2).probes) == 2


def test_distortions_keep_the_face_where_they_say():
    image = _photo(0, 1)
    for name, distort in DISTORTIONS.items():
        out, matrix = distort(image)
        assert out.dtype == np.uint8 and out.shape[2] == 3, name
        if name == "png":
            assert np.array_equal(out, image)
    cropped, matrix = DISTORTIONS["crop5"](image)
    dx = -int(matrix[0, 2])
    assert cropped.shape[1] == SIZE - 2 * dx and np.array_equal(cropped[0, 0], image[dx, dx])


def test_full_run_writes_the_folder_and_resumes(tiny_data, tmp_path):
    toolkit = Toolkit(
        finder=FaceFinder(CentreDetector(), crop_size=CROP),
        recognizers=[ColourRecognizer()],
        geometry=MeanGeometry(),
        detectors=[CentreDetector()],
    )
    methods = [mt.build_method(n) for n in mt.BASELINES] + [Darken()]
    config = EvalConfig(
        data=tiny_data,
        out=tmp_path / "run",
        batch_size=3,
        white_box=("colour",),
        realism_recognizer="colour",
        kid_subsets=3,
    )
    results = run_evaluation(config, toolkit, methods)
    for name in ("metrics.json", "report.md", "roc_colour.png", "grid.png"):
        assert (config.out / name).is_file(), name
    get = {(m.protocol, m.method, m.name): m for m in results.metrics}
    assert get["lfw_reid", "none", "cos_to_source"].value > 0.999
    assert get["lfw_reid", "box", "cos_to_source"].value < 0.99
    assert get["lfw_reid", "none", "tar@far=0.01"].white_box
    assert get["celeba_rank1", "none", "rank1"].n == 7 - 1  # the face-less probe is left out
    assert get["utility", "none", "detected.centre"].value == 1.0
    assert get["utility", "box", "detected.centre"].value < 1.0  # a flat box hides the face
    assert get["utility", "none", "landmark_nme"].value < 1e-3
    assert get["diversity", "blur", "cos_two_seeds"].value == pytest.approx(1.0)  # deterministic
    assert get["recovered/png", "darken", "verified_rate"].value == 1.0
    assert get["recovered/png", "darken", "psnr"].value > 35
    assert get["recovered/jpeg75", "darken", "psnr"].value < get["recovered/png", "darken", "psnr"].value
    assert get["recovered/crop5", "darken", "found_rate"].value == 1.0
    assert get["wrong_password", "darken", "false_verify_rate"].value == 0.0
    assert get["wrong_password", "darken", "psnr"].value < get["recovered/png", "darken", "psnr"].value - 10
    assert ("speed", "blur", "model_ms_per_face") in get
    saved = json.loads((config.out / "metrics.json").read_text())
    assert (
        len(saved["metrics"]) == len(results.metrics)
        and {"protocol", "n", "recognizer"} <= saved["metrics"][0].keys()
    )
    assert "| none |" in (config.out / "report.md").read_text()

    # Resuming computes nothing: the recognizer is never called again.
    class Exploding(ColourRecognizer):
        def __call__(self, crops):
            raise AssertionError("recomputed a cached feature")

    toolkit.recognizers = [Exploding()]
    config_again = EvalConfig(**{**config.__dict__, "protocols": ("lfw", "celeba", "diversity")})
    again = run_evaluation(config_again, toolkit, methods)
    assert {(m.protocol, m.method, m.name): m.value for m in again.metrics if m.protocol == "lfw_reid"} == {
        k: m.value for k, m in get.items() if k[0] == "lfw_reid"
    }
