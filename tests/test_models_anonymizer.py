"""G2FaceModel plumbing on the tiny configuration: payload in, payload out, determinism, secrets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from g2face.models.anonymizer import G2FaceModel
from g2face.models.config import TINY
from g2face.models.g2face import G2FaceNet
from g2face.payload import PayloadCodec, PayloadNotFoundError, Secret
from g2face.priors.tiny import TinyGeometryEncoder, TinyIdentityEncoder


@pytest.fixture(scope="module")
def model() -> G2FaceModel:
    codec = PayloadCodec(embedding_dim=16)
    torch.manual_seed(0)
    net = G2FaceNet(dataclasses.replace(TINY, n_bits=codec.n_bits)).eval()
    return G2FaceModel(net, TinyIdentityEncoder(16), TinyGeometryEncoder(), codec)


@pytest.fixture(scope="module")
def secret(tmp_path_factory) -> Secret:
    # A key file uses the cheap HKDF path, which keeps these tests fast.
    return Secret.generate_key_file(tmp_path_factory.mktemp("k") / "key")


def _crops(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


class _PerfectChannel:
    """Replaces E_p with a reader that returns the embedded bits: isolates codec + model plumbing
    from extractor quality (an untrained extractor reads noise)."""

    def __init__(self, model: G2FaceModel, bits: torch.Tensor):
        self.model, self.bits = model, bits

    def __enter__(self):
        self.original = self.model.read_payload_logits
        self.model.read_payload_logits = lambda crops: (self.bits * 2 - 1) * 8.0
        return self

    def __exit__(self, *exc):
        self.model.read_payload_logits = self.original


def test_anonymize_shapes_and_payload(model, secret):
    x = _crops(3)
    out = model.anonymize(x, secret)
    assert out.images.shape == x.shape and out.images.dtype == x.dtype
    assert out.images.abs().max() <= 1
    assert out.bits.shape == (3, model.codec.n_bits)
    assert len(set(out.salts)) == 3, "every face gets its own salt (no keystream reuse)"


def test_anonymize_is_reproducible_from_secret_and_salt(model, secret):
    x = _crops(2)
    a = model.anonymize(x, secret)
    b = model.anonymize(x, secret, salts=list(a.salts))
    torch.testing.assert_close(a.images, b.images)
    assert a.dummy_seeds == b.dummy_seeds
    c = model.anonymize(x, secret)  # fresh salts -> other dummy identities
    assert c.dummy_seeds != a.dummy_seeds
    assert not torch.allclose(a.images, c.images)


def test_explicit_seed_controls_the_dummy_identity(model, secret):
    x = _crops(1)
    a = model.anonymize(x, secret, seeds=[1])
    b = model.anonymize(x, secret, seeds=[1])
    c = model.anonymize(x, secret, seeds=[2])
    torch.testing.assert_close(a.images, b.images)
    assert (a.images - c.images).abs().mean() > 1e-4


def test_recover_round_trip_through_a_perfect_channel(model, secret):
    x = _crops(2)
    anon = model.anonymize(x, secret)
    with _PerfectChannel(model, anon.bits):
        rec = model.recover(anon.images, secret)
    assert rec.verified == (True, True) and rec.errors == (None, None)
    original = model.identity(x)
    cos = torch.nn.functional.cosine_similarity(rec.embeddings, original, dim=1)
    assert cos.min() > 0.99


def test_wrong_secret_is_unverified_and_unrelated(model, secret, tmp_path):
    x = _crops(2)
    anon = model.anonymize(x, secret)
    wrong = Secret.generate_key_file(tmp_path / "other")
    with _PerfectChannel(model, anon.bits):
        rec = model.recover(anon.images, wrong)
    assert rec.verified == (False, False)
    cos = torch.nn.functional.cosine_similarity(rec.embeddings, model.identity(x), dim=1)
    assert cos.abs().max() < 0.9


def test_image_without_payload_reports_an_error(model, secret):
    rec = model.recover(_crops(1, seed=5), secret)
    assert rec.verified == (False,)
    assert isinstance(rec.errors[0], PayloadNotFoundError)


def test_mismatched_parts_are_refused():
    codec = PayloadCodec(embedding_dim=16)
    net = G2FaceNet(TINY)  # 96 bits, not the codec's
    with pytest.raises(ValueError, match="bits"):
        G2FaceModel(net, TinyIdentityEncoder(16), TinyGeometryEncoder(), codec)
    assert np.isfinite(codec.n_bits)
