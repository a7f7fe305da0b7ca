"""The classic anonymizers — blur, pixelate, a solid box — as crop filters, and as
`FaceAnonymizer`s whose recovery carriers are the same as the default's ("reversible blur").

They change the whole aligned crop; the pipeline pastes it back through the default face ellipse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from g2face.models.base import AnonymizedFaces, encode_identities
from g2face.payload import Secret

FACE_FRACTION = 0.5
"""Width of the face relative to the crop side in the FFHQ framing (the eye centres are a quarter
of the crop apart, and a face is about twice as wide as that); baselines size their effect by it."""


class GaussianBlur:
    """Gaussian blur with σ a fraction of the face width (default: a tenth)."""

    name = "blur"

    def __init__(self, sigma_fraction: float = 0.1):
        self.sigma_fraction = sigma_fraction

    def anonymize(self, crops: Tensor, seeds: Sequence[int] = ()) -> Tensor:
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

    def anonymize(self, crops: Tensor, seeds: Sequence[int] = ()) -> Tensor:
        grid = max(1, round(self.blocks_per_face / FACE_FRACTION))
        return F.interpolate(F.adaptive_avg_pool2d(crops, grid), size=crops.shape[-2:], mode="nearest")


class SolidBox:
    """The face replaced by one colour (RGB in [0, 1]; default black)."""

    name = "box"

    def __init__(self, colour: tuple[float, float, float] = (0.0, 0.0, 0.0)):
        self.colour = colour

    def anonymize(self, crops: Tensor, seeds: Sequence[int] = ()) -> Tensor:
        fill = torch.tensor(self.colour, dtype=crops.dtype, device=crops.device) * 2 - 1
        return fill.view(1, 3, 1, 1).expand_as(crops).clone()


CLASSIC_FILTERS = {"blur": GaussianBlur, "pixelate": Pixelate, "box": SolidBox}


def stronger_filter(name: str, level: int):
    """Classic filter `name` at strength `level` (0: its default; each level doubles a blur's σ or
    halves the pixelation's blocks across the face; a box is as strong as it gets)."""
    if name == "blur":
        return GaussianBlur(0.1 * 2**level)
    if name == "pixelate":
        return Pixelate(max(1, 8 // 2**level))
    return CLASSIC_FILTERS[name]()


class ClassicAnonymizer:
    """A classic filter that still carries the encrypted identity: the payload comes from
    `identity_source` (the default model: its recognizer, codec and recovery renderer), so the
    exact-recovery container and the in-pixel payload work for blurred faces too."""

    payload_in_crops = False

    def __init__(self, method: str, identity_source):
        if method not in CLASSIC_FILTERS:
            raise ValueError(f"unknown method {method!r}; known: {', '.join(CLASSIC_FILTERS)}")
        self.method = method
        self.filter = CLASSIC_FILTERS[method]()
        self.source = identity_source
        self.codec = identity_source.codec

    @property
    def image_size(self) -> int:
        return self.source.image_size

    @torch.no_grad()
    def anonymize(
        self,
        crops: Tensor,
        secret: Secret,
        *,
        seeds: list[int] | None = None,
        salts: list[bytes] | None = None,
        face_offset: int = 0,
        search: bool = True,  # no candidates to choose among
        source_widths: Sequence[float | None] | None = None,  # nothing judged
        profiles: Sequence[bool] | None = None,  # a filter: every pose is the same to it
    ) -> AnonymizedFaces:
        embeddings = self.source.identity(crops).float().cpu().numpy()
        encoded, seeds = encode_identities(
            self.codec, embeddings, secret, seeds=seeds, salts=salts, face_offset=face_offset
        )
        bits = torch.from_numpy(np.stack([e.bits for e in encoded])).to(crops.device, crops.dtype)
        images = self.filter.anonymize(crops, seeds)
        return AnonymizedFaces(images, bits, tuple(e.salt for e in encoded), tuple(seeds))

    def render_identities(
        self,
        crops: Tensor,
        identities: Tensor,
        refine_steps: int = 0,
        source_widths: Sequence[float | None] | None = None,
    ) -> tuple[Tensor, np.ndarray | None]:
        return self.source.render_identities(crops, identities, refine_steps, source_widths)
