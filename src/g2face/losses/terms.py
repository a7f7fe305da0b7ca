"""G2Face loss terms (DESIGN.md §1), each a small function of tensors the training step already has.

Identity embeddings are L2-normalised [B, D] (the `IdentityEncoder` contract); images are
[B, 3, H, W] in [-1, 1]. Every function returns a scalar averaged over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from g2face.priors.base import Geometry, PerceptualDistance


def _cosine(a: Tensor, b: Tensor) -> Tensor:
    return F.cosine_similarity(a, b, dim=1)


def diversity_loss(dummy_ids: Tensor) -> Tensor:
    """Mean positive cosine over distinct pairs of a batch of dummy identities: pushes f_dummy to
    spread its identities apart (0 once no two are positively correlated)."""
    n = len(dummy_ids)
    if n < 2:
        return dummy_ids.sum() * 0
    unit = F.normalize(dummy_ids, dim=1)
    cos = unit @ unit.T
    pairs = torch.triu(torch.ones(n, n, dtype=torch.bool, device=cos.device), diagonal=1)
    return cos[pairs].clamp(min=0).mean()


def anonymity_loss(original_id: Tensor, anonymized_id: Tensor) -> Tensor:
    """max(0, cos(e_id, E_fr(Y))): the anonymized face must not resemble the original identity."""
    return _cosine(original_id, anonymized_id).clamp(min=0).mean()


def identity_distance(target_id: Tensor, produced_id: Tensor) -> Tensor:
    """1 − cos(target, E_fr(image)): towards the dummy identity (on Y) or the original (on X̂)."""
    return (1 - _cosine(target_id, produced_id)).mean()


@dataclass(frozen=True)
class GeometryWeights:
    """Weights of the geometry terms. Landmarks are compared as mean squared distances in unit crop
    coordinates (the `Geometry` convention), so 500 ≈ the paper's 0.01 per squared pixel at 224 px;
    shape and expression as mean squared coefficient differences, pose as squared radians."""

    landmarks: float = 500.0
    shape: float = 1.0
    expression: float = 1.0
    pose: float = 1.0


def geometry_loss(target: Geometry, produced: Geometry, weights: GeometryWeights | None = None) -> Tensor:
    """Keeps the face shape, expression, head pose and landmarks of `target` in `produced`."""
    w = weights or GeometryWeights()
    landmarks = (produced.landmarks - target.landmarks).pow(2).sum(-1).mean()
    pose = torch.deg2rad(produced.pose - target.pose).pow(2).mean()
    return (
        w.landmarks * landmarks
        + w.shape * F.mse_loss(produced.shape, target.shape)
        + w.expression * F.mse_loss(produced.expression, target.expression)
        + w.pose * pose
    )


def reconstruction_loss(
    produced: Tensor,
    target: Tensor,
    perceptual: PerceptualDistance | None = None,
    l1_weight: float = 1.0,
    perceptual_weight: float = 1.0,
) -> Tensor:
    """L1 + perceptual distance between two image batches (the perceptual term only if given)."""
    loss = l1_weight * F.l1_loss(produced, target)
    if perceptual is not None and perceptual_weight:
        loss = loss + perceptual_weight * perceptual(produced, target).mean()
    return loss


def generator_adversarial_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating GAN loss for the generator: softplus(−D(fake))."""
    return F.softplus(-fake_logits).mean()


def discriminator_adversarial_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Logistic loss for the discriminator: softplus(−D(real)) + softplus(D(fake))."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def r1_penalty(real_logits: Tensor, real_images: Tensor) -> Tensor:
    """‖∇ₓD(x)‖² on real images, summed over pixels, averaged over the batch (Mescheder 2018).
    `real_images` must require grad and `real_logits` be computed from them. Training scales it by
    γ/2 and, when applied lazily every k steps, by k (StyleGAN2)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def payload_loss(logits: Tensor, bits: Tensor) -> Tensor:
    """Binary cross-entropy of E_p's logits [B, n_bits] against the payload bits {0, 1}."""
    return F.binary_cross_entropy_with_logits(logits, bits.to(logits.dtype))


@dataclass(frozen=True)
class LossWeights:
    """Loss weights; the defaults are the paper's reference weights (DESIGN.md §1)."""

    diversity: float = 1.0
    anonymity: float = 1.0
    dummy_identity: float = 1.0
    recovery_identity: float = 1.0
    geometry: float = 1.0
    geometry_terms: GeometryWeights = GeometryWeights()
    l1: float = 1.0
    perceptual: float = 1.0
    adversarial: float = 1.0
    payload: float = 10.0
    r1_gamma: float = 5.0
    r1_every: int = 16
