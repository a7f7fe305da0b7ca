"""Each loss term against a hand-computed answer."""

from __future__ import annotations

import math

import pytest
import torch

from g2face.losses.terms import (
    GeometryWeights,
    anonymity_loss,
    discriminator_adversarial_loss,
    diversity_loss,
    generator_adversarial_loss,
    geometry_loss,
    identity_distance,
    payload_loss,
    r1_penalty,
    reconstruction_loss,
)
from g2face.priors.base import Geometry

E = torch.eye(3)


def test_diversity_counts_only_positive_pairs():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([math.cos(1.0), math.sin(1.0)])
    # pairs: (a, b) cos 1 rad, (a, -a) −1 -> 0, (b, -a) negative -> 0
    ids = torch.stack([a, b, -a])
    assert diversity_loss(ids).item() == pytest.approx(math.cos(1.0) / 3, abs=1e-6)
    assert diversity_loss(E).item() == 0
    assert diversity_loss(E[:1]).item() == 0


def test_anonymity_is_a_hinge_on_cosine():
    assert anonymity_loss(E[:2], torch.stack([E[0], -E[1]])).item() == pytest.approx(0.5)
    assert anonymity_loss(E, -E).item() == 0


def test_identity_distance():
    assert identity_distance(E, E).item() == pytest.approx(0, abs=1e-6)
    assert identity_distance(E[:2], torch.stack([-E[0], E[2]])).item() == pytest.approx(1.5)


def _geometry(shift: float) -> Geometry:
    return Geometry(
        shape=torch.zeros(2, 4) + shift,
        expression=torch.zeros(2, 3) + 2 * shift,
        pose=torch.zeros(2, 3) + 3 * shift,
        landmarks=torch.zeros(2, 5, 3) + shift,
    )


def test_geometry_terms_and_weights():
    a, b = _geometry(0), _geometry(1)
    assert geometry_loss(a, a).item() == 0
    assert geometry_loss(a, b).item() == pytest.approx(500 * 3 + 1 + 4 + math.radians(3) ** 2)
    only = {k: 0.0 for k in ("landmarks", "shape", "expression", "pose")}
    assert geometry_loss(a, b, GeometryWeights(**{**only, "landmarks": 1})).item() == pytest.approx(3)
    assert geometry_loss(a, b, GeometryWeights(**{**only, "shape": 1})).item() == pytest.approx(1)
    assert geometry_loss(a, b, GeometryWeights(**{**only, "expression": 1})).item() == pytest.approx(4)
    assert geometry_loss(a, b, GeometryWeights(**{**only, "pose": 2})).item() == pytest.approx(
        2 * math.radians(3) ** 2
    )


def test_reconstruction_l1_plus_perceptual():
    x, y = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)

    def perceptual(a, b):
        return torch.tensor([1.0, 3.0])

    assert reconstruction_loss(y, x).item() == pytest.approx(0.5)
    assert reconstruction_loss(y, x, perceptual, l1_weight=2, perceptual_weight=0.5).item() == pytest.approx(
        2.0
    )


def test_adversarial_losses():
    zero = torch.zeros(4)
    assert generator_adversarial_loss(zero).item() == pytest.approx(math.log(2))
    assert discriminator_adversarial_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert generator_adversarial_loss(torch.full((3,), 20.0)).item() < 1e-8
    assert discriminator_adversarial_loss(torch.full((3,), 20.0), torch.full((3,), -20.0)).item() < 1e-8


def test_r1_of_a_linear_discriminator_is_its_squared_weight_norm():
    w = torch.randn(3, 4, 4)
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    logits = (x * w).flatten(1).sum(1)
    assert r1_penalty(logits, x).item() == pytest.approx(w.pow(2).sum().item(), rel=1e-5)


def test_payload_bce():
    bits = torch.tensor([[1, 0, 1, 0]])
    assert payload_loss(torch.zeros(1, 4), bits).item() == pytest.approx(math.log(2))
    confident = torch.tensor([[30.0, -30.0, 30.0, -30.0]])
    assert payload_loss(confident, bits).item() < 1e-10
    assert payload_loss(-confident, bits).item() == pytest.approx(30, rel=1e-6)
