"""G2FacePipeline and `g2face anonymize/recover` on real photos with the tiny random model.

The tiny model's extractor is untrained, so full round trips swap in a perfect payload channel:
these tests check detection → model → paste-back → files → CLI plumbing, not model quality.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from g2face.align import face_mask
from g2face.cli import cli
from g2face.io import read_image
from g2face.models.checkpoints import save_g2face
from g2face.models.zoo import build_model, tiny_config
from g2face.payload import KdfPolicyError, PayloadNotFoundError, Secret
from g2face.pipeline.g2face import G2FacePipeline


@pytest.fixture(scope="module")
def pipeline() -> G2FacePipeline:
    return G2FacePipeline(build_model(tiny_config()))


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    path = tmp_path_factory.mktemp("key") / "key"
    Secret.generate_key_file(path)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory, pipeline):
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_g2face(pipeline.model.net, path)
    return path


def _photo(fixtures_dir) -> np.ndarray:
    return read_image(fixtures_dir / "grace_hopper.jpg").rgb


def test_anonymize_changes_only_the_face(pipeline, key, fixtures_dir):
    image = _photo(fixtures_dir)
    out = pipeline.anonymize(image, Secret.from_key_file(key))
    assert len(out.faces) == 1 and out.image.shape == image.shape
    changed = np.any(out.image != image, axis=2)
    assert changed.any()
    box = out.faces[0].detection.box
    ys, xs = np.nonzero(changed)
    # every changed pixel lies near the detected face (the mask covers about the face box)
    w, h = box[2] - box[0], box[3] - box[1]
    assert xs.min() > box[0] - w and xs.max() < box[2] + w
    assert ys.min() > box[1] - h and ys.max() < box[3] + h


def test_seed_makes_anonymization_reproducible(pipeline, key, fixtures_dir):
    image, secret = _photo(fixtures_dir), Secret.from_key_file(key)
    a = pipeline.anonymize(image, secret, seed=3)
    b = pipeline.anonymize(image, secret, seed=3)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.faces[0].dummy_seed == 3


def test_recover_through_a_perfect_channel(pipeline, key, fixtures_dir, monkeypatch):
    image, secret = _photo(fixtures_dir), Secret.from_key_file(key)
    carried = {}
    original_anonymize = pipeline.model.anonymize

    def remember(*args, **kwargs):
        out = original_anonymize(*args, **kwargs)
        carried["bits"] = out.bits
        return out

    monkeypatch.setattr(pipeline.model, "anonymize", remember)
    anon = pipeline.anonymize(image, secret)
    monkeypatch.setattr(pipeline.model, "read_payload_logits", lambda crops: (carried["bits"] * 2 - 1) * 8)
    detections = [f.detection for f in anon.faces]
    rec = pipeline.recover(anon.image, secret, detections=detections)
    assert rec.verified and rec.faces[0].error is None
    wrong = pipeline.recover(anon.image, Secret(bytes(32), "key"), detections=detections)
    assert not wrong.verified and wrong.faces[0].error is None
    # a password for a key file's payload: refused with a message saying what to give instead
    other_kind = pipeline.recover(anon.image, Secret.from_password("not it"), detections=detections)
    assert isinstance(other_kind.faces[0].error, KdfPolicyError) and not other_kind.verified


def test_image_without_payload_is_left_alone(pipeline, key, fixtures_dir):
    image = _photo(fixtures_dir)
    rec = pipeline.recover(image, Secret.from_key_file(key))
    assert isinstance(rec.faces[0].error, PayloadNotFoundError)
    assert not rec.verified
    np.testing.assert_array_equal(rec.image, image)


def test_cli_anonymize_writes_png_without_metadata(tmp_path, key, weights, fixtures_dir):
    src = tmp_path / "in.jpg"
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    Image.open(fixtures_dir / "grace_hopper.jpg").save(src, exif=exif)
    assert Image.open(src).getexif()
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["anonymize", str(src), "-o", str(out), "--model", str(weights), "--key-file", str(key)]
    )
    assert result.exit_code == 0, result.output
    written = out / "in.png"
    assert "1 face anonymized" in result.output and written.is_file()
    assert not Image.open(written).getexif()


def test_cli_recover_refuses_an_image_without_payload(tmp_path, key, weights, fixtures_dir):
    out = tmp_path / "rec.png"
    result = CliRunner().invoke(
        cli,
        ["recover", str(fixtures_dir / "obama.jpg"), "-o", str(out), "--model", str(weights)]
        + ["--key-file", str(key)],
    )
    assert result.exit_code == 1
    assert "no g2face payload" in result.output and not out.exists()


def test_cli_recover_refines_identity_level_recovery_by_default(tmp_path, key, weights, monkeypatch):
    """Without a container the identity is rendered back; the CLI spends 20 refinement steps on it
    unless told `--refine 0` (the pipeline's own default stays 0)."""
    import g2face.pipeline.g2face as pipeline_module

    seen = []

    def recover_files(*args, refine, **kwargs):
        seen.append(refine)
        return pipeline_module.BatchReport(())

    monkeypatch.setattr(pipeline_module, "recover_files", recover_files)
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    for extra in ([], ["--refine", "0"]):
        CliRunner().invoke(
            cli, ["recover", str(image), "-o", str(tmp_path / "out"), "--model", str(weights),
                  "--key-file", str(key), *extra],
        )  # fmt: skip
    assert seen == [20, 0]


def test_cli_unknown_model_is_a_clear_error(tmp_path, key, fixtures_dir):
    result = CliRunner().invoke(
        cli,
        ["anonymize", str(fixtures_dir / "obama.jpg"), "-o", str(tmp_path / "o.png"), "--model", "nope"]
        + ["--key-file", str(key)],
    )
    assert result.exit_code == 1 and "no model named 'nope'" in result.output


def test_cli_without_a_secret_fails_clearly(tmp_path, weights, fixtures_dir, monkeypatch):
    monkeypatch.delenv("G2FACE_PASSWORD", raising=False)
    result = CliRunner().invoke(
        cli,
        [
            "anonymize",
            str(fixtures_dir / "obama.jpg"),
            "-o",
            str(tmp_path / "o.png"),
            "--model",
            str(weights),
        ],
    )
    assert result.exit_code == 2 and "no password given" in result.output


def test_tiny_model_output_is_finite(pipeline):
    x = torch.zeros(1, 3, pipeline.model.image_size, pipeline.model.image_size)
    assert torch.isfinite(pipeline.model.net.extract(x)).all()
    assert face_mask(pipeline.model.image_size).max() == pytest.approx(1.0)


def test_cli_refuses_inputs_that_would_write_the_same_output(tmp_path, key, weights, fixtures_dir):
    import shutil

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(fixtures_dir / "obama.jpg", tmp_path / folder / "x.jpg")
    out = tmp_path / "out"
    args = ["anonymize", str(tmp_path / "a" / "x.jpg"), str(tmp_path / "b" / "x.jpg"), "-o", str(out)]
    result = CliRunner().invoke(cli, args + ["--model", str(weights), "--key-file", str(key)])
    assert result.exit_code == 2 and "would both be written to" in result.output
    assert "common folder" in result.output
    assert not out.exists()
    # one folder holding x.jpg and x.png: the outputs take one suffix, so both become out/x.png
    shutil.copy(fixtures_dir / "obama.jpg", tmp_path / "a" / "x.png")
    args = ["anonymize", str(tmp_path / "a"), "-o", str(out)]
    result = CliRunner().invoke(cli, args + ["--model", str(weights), "--key-file", str(key)])
    assert result.exit_code == 2 and "rename one of them" in result.output
    assert not out.exists()
    # an image given a video's name: refused, not a folder named out.mp4 holding a PNG
    video = tmp_path / "out.mp4"
    args = ["anonymize", str(tmp_path / "b" / "x.jpg"), "-o", str(video)]
    result = CliRunner().invoke(cli, args + ["--model", str(weights), "--key-file", str(key)])
    assert result.exit_code == 2 and "names a video but the inputs are images" in result.output
    assert not video.exists()


def test_a_password_is_stretched_once_per_image_not_per_face(pipeline, fixtures_dir, monkeypatch):
    """Every face payload and the container of one image share its image salt, so scrypt runs once
    (it costs ~0.4 s); each payload still decodes with the password alone."""
    from g2face.payload import kdf

    stretched = []
    real = kdf.KdfParams.derive
    monkeypatch.setattr(kdf.KdfParams, "derive", lambda self, m, s: stretched.append(s) or real(self, m, s))
    image = _photo(fixtures_dir)
    twice = np.concatenate([image, image[:, ::-1]], axis=1)  # two faces
    out = pipeline.anonymize(twice, "correct horse battery")
    assert len(out.faces) == 2 and out.container is not None
    assert len(stretched) == 1 and len(stretched[0]) == kdf.IMAGE_SALT_BYTES
    back = pipeline.recover(out.image, "correct horse battery", container=out.container)
    assert back.verified and np.array_equal(back.image, twice)
