"""Where training faces come from: a prepared crop dataset, or the generative prior itself.

Batches are a pure function of (seed, step, rank), so a resumed run sees exactly the batches the
uninterrupted run would have seen, and each rank of a torchrun job sees its own share.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from g2face.data import AlignedFaceDataset
from g2face.priors.base import GenerativePrior


def sample_w(generator: GenerativePrior, n: int, seed: int) -> Tensor:
    """n seeded latents w [n, style_dim]: through the prior's mapping network when it has one,
    else N(0, I) (random stand-in generators, whose W space is that by construction)."""
    if hasattr(generator, "sample_z") and hasattr(generator, "map"):
        return generator.map(generator.sample_z(n, seed))
    device = next(generator.parameters()).device
    return torch.randn(n, generator.style_dim, generator=torch.Generator().manual_seed(seed)).to(device)


def broadcast_w(generator: GenerativePrior, w: Tensor) -> Tensor:
    return w[:, None, :].expand(-1, generator.n_styles, -1)


class DatasetFaces:
    """Epoch-wise shuffled crops from a prepared dataset (drop-last, one slice per rank)."""

    def __init__(self, folder: Path, size: int, seed: int) -> None:
        self.dataset = AlignedFaceDataset(folder, size=size)
        self.seed = seed

    def batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> Tensor:
        n = len(self.dataset)
        global_batch = batch_size * world_size
        per_epoch = max(1, n // global_batch)
        epoch, index = divmod(step, per_epoch)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        start = index * global_batch + rank * batch_size
        picks = order.repeat(-(-(start + batch_size) // n))[start : start + batch_size]
        return torch.stack([self.dataset[int(i)] for i in picks])


class GeneratedFaces:
    """Faces rendered by the (frozen) generative prior at the model's size: training data when no
    dataset is given, and always realistic for a pretrained prior."""

    def __init__(self, generator: GenerativePrior, size: int, seed: int) -> None:
        self.generator = generator
        self.size = size
        self.seed = seed

    @torch.no_grad()
    def batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> Tensor:
        seed = (self.seed * 1_000_003 + step) * world_size + rank
        images = self.generator(broadcast_w(self.generator, sample_w(self.generator, batch_size, seed)))
        if images.shape[-1] != self.size:
            images = F.interpolate(images, size=(self.size, self.size), mode="bilinear", antialias=True)
        return images.clamp(-1, 1).cpu()
