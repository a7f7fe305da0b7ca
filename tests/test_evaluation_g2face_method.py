"""The G2Face model behind the evaluation's method interface (tiny random model)."""

from __future__ import annotations

import math

import torch

from g2face.evaluation.methods import build_method, is_reversible
from g2face.models.checkpoints import save_g2face
from g2face.models.zoo import build_model, tiny_config


def test_g2face_method_anonymizes_and_reports_recovery(tmp_path):
    weights = tmp_path / "tiny.safetensors"
    save_g2face(build_model(tiny_config()).net, weights)
    method = build_method("g2face", model=str(weights), password="pw")
    assert is_reversible(method) and method.name == "g2face"
    crops = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    a, b = method.anonymize(crops, [1, 2]), method.anonymize(crops, [3, 4])
    assert a.shape == crops.shape
    assert (a - b).abs().mean() > 1e-4  # the seeds choose the dummy identities
    rec = method.recover(a, "pw")
    # an untrained extractor reads no payload: nothing verifies and the raw bit errors are unknown
    assert rec.crops.shape == crops.shape and not rec.verified.any()
    assert all(math.isnan(e) for e in rec.bit_errors.tolist())
