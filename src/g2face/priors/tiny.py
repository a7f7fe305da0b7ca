"""Tiny randomly initialised priors with the real interfaces, for fast tests of everything built
on top of them (the `tiny` configuration). Seeded, so two instances are identical."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from g2face.priors.base import Geometry, freeze


def _trunk(out_dim: int, seed: int) -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.AdaptiveAvgPool2d(16),
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(16 * 4 * 4, out_dim),
        )


class TinyIdentityEncoder(nn.Module):
    name = "tiny-identity"

    def __init__(self, embedding_dim: int = 16, seed: int = 0):
        super().__init__()
        self.embedding_dim = embedding_dim
        self.net = _trunk(embedding_dim, seed)
        freeze(self)

    def forward(self, crops: Tensor) -> Tensor:
        return F.normalize(self.net(crops), dim=1)


class TinyGeometryEncoder(nn.Module):
    name = "tiny-geometry"
    n_landmarks = 5

    def __init__(self, shape_dim: int = 4, expression_dim: int = 5, seed: int = 1):
        super().__init__()
        self.shape_dim, self.expression_dim = shape_dim, expression_dim
        self.net = _trunk(shape_dim + expression_dim + 3 + self.n_landmarks * 3, seed)
        freeze(self)

    def forward(self, crops: Tensor) -> Geometry:
        out = self.net(crops)
        shape, expression, pose, landmarks = out.split(
            [self.shape_dim, self.expression_dim, 3, self.n_landmarks * 3], dim=1
        )
        landmarks = torch.sigmoid(landmarks).view(-1, self.n_landmarks, 3)
        return Geometry(
            shape=shape, expression=torch.sigmoid(expression), pose=30 * torch.tanh(pose), landmarks=landmarks
        )


class TinyPerceptual(nn.Module):
    """Squared distance of unit-normalised random conv features: LPIPS-like in form only."""

    name = "tiny-perceptual (random features)"

    def __init__(self, seed: int = 2):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.features = nn.Sequential(
                nn.Conv2d(3, 8, 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 8, 3, 2, 1)
            )
        freeze(self)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        fa, fb = (F.normalize(self.features(x), dim=1) for x in (a, b))
        return (fa - fb).pow(2).sum(1).mean((1, 2))
