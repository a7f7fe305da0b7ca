"""Anonymization methods under evaluation: one small interface for every method, and the baselines.

A method maps aligned face crops ([B, 3, S, S] in [-1, 1], G2Face/FFHQ framing) to anonymized
crops; the evaluation pastes them back through the pipeline's soft face mask, so a method may
change the whole crop. Reversible methods can also recover the original with the password.

Adding a method is one class with a `name` and `anonymize` (plus `password` and `recover` when it
is reversible) and one entry in `METHODS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from g2face.payload import Secret

FACE_FRACTION = 0.5
"""Width of the face relative to the crop side in the FFHQ framing (the eye centres are a quarter
of the crop apart, and a face is about twice as wide as that); baselines size their effect by it."""


@runtime_checkable
class Anonymizer(Protocol):
    name: str

    def anonymize(self, crops: Tensor, seeds: Sequence[int]) -> Tensor | tuple[Tensor, np.ndarray]:
        """Anonymize a batch; `seeds` (one per face) make stochastic methods reproducible per face,
        independently of how faces are batched. A method may also return per-face masks
        float32 [B, S, S] saying where its crops replace the original (default: the face ellipse)."""
        ...


@dataclass(frozen=True)
class Recovered:
    crops: Tensor
    verified: Tensor
    """[B] bool: the payload authenticated under the password given."""
    bit_errors: Tensor | None = None
    """[B] share of payload bits read wrongly before error correction (None if the method cannot tell)."""


@runtime_checkable
class ReversibleAnonymizer(Anonymizer, Protocol):
    password: str
    """The password `anonymize` protects faces with."""

    def recover(self, crops: Tensor, password: str) -> Recovered: ...


def is_reversible(method: Anonymizer) -> bool:
    return isinstance(method, ReversibleAnonymizer)


class NoAnonymization:
    """The ceiling: faces go through the pipeline unchanged."""

    name = "none"

    def anonymize(self, crops: Tensor, seeds: Sequence[int]) -> Tensor:
        return crops.clone()


class GaussianBlur:
    """Gaussian blur with σ a fraction of the face width (default: a tenth)."""

    name = "blur"

    def __init__(self, sigma_fraction: float = 0.1):
        self.sigma_fraction = sigma_fraction

    def anonymize(self, crops: Tensor, seeds: Sequence[int]) -> Tensor:
        sigma = self.sigma_fraction * FACE_FRACTION * crops.shape[-1]
        radius = min(math.ceil(3 * sigma), crops.shape[-1] - 1)  # reflect padding needs radius < size
        x = torch.arange(-radius, radius + 1, dtype=crops.dtype, device=crops.device)
        kernel = torch.exp(-0.5 * (x / sigma) ** 2)
        kernel = (kernel / kernel.sum()).expand(crops.shape[1], 1, -1)
        out = F.pad(crops, (radius, radius, radius, radius), mode="reflect")
        out = F.conv2d(out, kernel.unsqueeze(2), groups=crops.shape[1])  # horizontal pass
        return F.conv2d(out, kernel.unsqueeze(3), groups=crops.shape[1])  # vertical pass


class Pixelate:
    """Mosaic of square blocks, `blocks_per_face` of them across the face (default 8)."""

    name = "pixelate"

    def __init__(self, blocks_per_face: int = 8):
        self.blocks_per_face = blocks_per_face

    def anonymize(self, crops: Tensor, seeds: Sequence[int]) -> Tensor:
        grid = max(1, round(self.blocks_per_face / FACE_FRACTION))
        return F.interpolate(F.adaptive_avg_pool2d(crops, grid), size=crops.shape[-2:], mode="nearest")


class SolidBox:
    """The face replaced by one colour (RGB in [0, 1]; default black)."""

    name = "box"

    def __init__(self, colour: tuple[float, float, float] = (0.0, 0.0, 0.0)):
        self.colour = colour

    def anonymize(self, crops: Tensor, seeds: Sequence[int]) -> Tensor:
        fill = torch.tensor(self.colour, dtype=crops.dtype, device=crops.device) * 2 - 1
        return fill.view(1, 3, 1, 1).expand_as(crops).clone()


class G2FaceMethod:
    """A trained G2Face model (a packaged name or a weights file from `g2face train`), protecting
    every face with one evaluation password."""

    def __init__(
        self,
        model: str = "g2face-lite",
        password: str = "g2face-evaluation",
        device: str = "cpu",
        name: str = "g2face",
    ):
        from g2face.models.zoo import load_model

        self.name, self.password = name, password
        self.model = load_model(model, device=device)
        self._secrets: dict[str, Secret] = {}

    def _secret(self, password: str) -> Secret:
        # One Secret per password keeps its per-salt key cache (scrypt runs once per payload salt).
        return self._secrets.setdefault(password, Secret.from_password(password))

    def anonymize(self, crops: Tensor, seeds: Sequence[int]) -> Tensor | tuple[Tensor, np.ndarray]:
        out = self.model.anonymize(crops, self._secret(self.password), seeds=list(seeds))
        return out.images if out.masks is None else (out.images, out.masks)

    def recover(self, crops: Tensor, password: str) -> Recovered:
        out = self.model.recover(crops, self._secret(password))
        n_bits = self.model.codec.n_bits
        # Raw bit errors are known exactly where the code corrected them; NaN where it could not.
        errors = [float("nan") if c is None else c / n_bits for c in out.bit_errors_corrected]
        return Recovered(out.images, torch.tensor(out.verified), torch.tensor(errors))


METHODS: dict[str, Callable[..., Anonymizer]] = {
    "none": NoAnonymization,
    "blur": GaussianBlur,
    "pixelate": Pixelate,
    "box": SolidBox,
    "g2face": G2FaceMethod,
}
"""Method name -> factory taking the method's options as keyword arguments."""

BASELINES = ("none", "blur", "pixelate", "box")


def build_method(name: str, **options) -> Anonymizer:
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[name](**options)
