"""Anonymization methods under evaluation: one small interface for every method, and the baselines.

A method maps aligned face crops ([B, 3, S, S] in [-1, 1], G2Face/FFHQ framing) to anonymized
crops; the evaluation pastes them back through the pipeline's soft face mask, so a method may
change the whole crop. Reversible methods can also recover the original with the password.

Adding a method is one class with a `name` and `anonymize` (plus `password` and `recover` when it
is reversible) and one entry in `METHODS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from g2face.models.classic import GaussianBlur, Pixelate, SolidBox
from g2face.payload import Secret


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
    """Whether the method recovers faces from crops alone (the geometric-fusion default recovers
    from whole images through its carriers instead: see `recovers_from_images`)."""
    return isinstance(method, ReversibleAnonymizer) and getattr(method, "recovers_from_crops", True)


def recovers_from_images(method: Anonymizer) -> bool:
    """Whether the method recovers through a whole-image pipeline's carriers (exact container,
    in-pixel payload): the recovery protocol then measures those (g2face.evaluation.carriers)."""
    return (
        isinstance(method, ReversibleAnonymizer) and not is_reversible(method) and hasattr(method, "pipeline")
    )


class NoAnonymization:
    """The ceiling: faces go through the pipeline unchanged."""

    name = "none"

    def anonymize(self, crops: Tensor, seeds: Sequence[int]) -> Tensor:
        return crops.clone()


class G2FaceMethod:
    """A trained G2Face model (a packaged name or a weights file from `g2face train`), protecting
    every face with one evaluation password."""

    def __init__(
        self,
        model: str = "g2face-lite",
        password: str = "g2face-evaluation",
        device: str = "cpu",
        name: str = "g2face",
        options: dict | None = None,
    ):
        """`options`: `load_model` keyword arguments, e.g. `{"fusion": {"warp_strength": 0.2}}` for
        an A/B run of one model file's settings (give each variant its own `name`)."""
        from g2face.models.zoo import load_model

        self.name, self.password, self.device = name, password, device
        self.model = load_model(model, device=device, **(options or {}))
        self.recovers_from_crops = self.model.payload_in_crops
        self._secrets: dict[str, Secret] = {}

    def _secret(self, password: str) -> Secret:
        # One Secret per password keeps its per-salt key cache (scrypt runs once per payload salt).
        return self._secrets.setdefault(password, Secret.from_password(password))

    def anonymize(self, crops: Tensor, seeds: Sequence[int]) -> Tensor | tuple[Tensor, np.ndarray]:
        out = self.model.anonymize(crops, self._secret(self.password), seeds=list(seeds))
        return out.images if out.masks is None else (out.images, out.masks)

    def pipeline(self, detector):
        """The whole-image pipeline around this model, with both recovery carriers on."""
        from g2face.pipeline.g2face import G2FacePipeline

        return G2FacePipeline(self.model, detector, device=self.device)

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


def build_method(method: str, /, **options) -> Anonymizer:
    """The named method with its options (positional-only, so a method's own `name` option, which
    labels an A/B variant in the results, can be passed too)."""
    if method not in METHODS:
        raise KeyError(f"unknown method {method!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[method](**options)
