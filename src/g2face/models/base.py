"""What every face anonymizer of g2face provides, whichever way it renders (DESIGN.md §5–6).

Two realisations exist: the learned G2Face network (`G2FaceModel`: DPIM fuses inside the
generator, the payload travels inside the network) and the geometric-fusion default
(`FusionAnonymizer`: GIE renders, the mesh lays the face onto the original, carriers of the
pipeline carry the payload). The pipeline, the evaluation and the CLI only use this interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from torch import Tensor

from g2face.payload import EncodedPayload, PayloadCodec, PayloadError, Secret


@dataclass(frozen=True)
class Fallback:
    """A face the anonymizer gave a classic filter (`method`: blur, pixelate, box) instead of a
    fake, and why (e.g. turned further than its generator renders)."""

    method: str
    reason: str


@dataclass(frozen=True, eq=False)
class AnonymizedFaces:
    images: Tensor  # [B, 3, S, S] in [-1, 1]
    bits: Tensor  # [B, n_bits] the encoded payload of each face (codec frame), {0, 1}
    salts: tuple[bytes, ...]  # per face, in clear inside the payload
    dummy_seeds: tuple[int, ...]  # the seed of each face's rendered dummy identity
    masks: np.ndarray | None = None
    """float32 [B, S, S] in [0, 1]: where each crop replaces the original (None: the default face
    ellipse of `g2face.align.face_mask`)."""
    similarities: tuple[float | None, ...] | None = None
    """Identity cosine of each anonymized face to its original (the anonymizer's own recognizer);
    None for a face given a classic filter (`fallbacks`)."""
    attributes: tuple[dict | None, ...] | None = None
    """Per face, when the anonymizer estimated them: the apparent gender and age of the original
    and of the face put in its place, glasses, facial hair and cheek skin tone, `{"estimator",
    "original": {"male_probability", "age", "glasses", "facial_hair", "sunglasses_kept",
    "sunglasses_tinted", "skin_tone_ita"}, "anonymized": {"male_probability", "age",
    "glasses_added", "glasses_lost", "facial_hair_added", "facial_hair_lost", "skin_tone_ita"}}`
    (the original's `glasses` and `facial_hair` are None when unsure,
    `models.readers.original_glasses`, `original_facial_hair`; a skin tone None for a
    colourless photo; `sunglasses_kept`: the original's dark glasses stay in front of the fake,
    `sunglasses_tinted`: its partly dark lenses tint the fake's eyes)."""
    whole_region: tuple[bool, ...] | None = None
    """Per face, for a geometric-fusion anonymizer: whether the fake replaced the whole face region
    (its anonymity fallback, `FusionSettings.render_only` False) rather than only the render's own
    face. A video track that needed it once keeps it (`video.clips.VideoAnonymizer`)."""
    fallbacks: tuple[Fallback | None, ...] | None = None
    """Per face: the classic filter given instead of a fake, and why; None where a fake was
    rendered (`FusionSettings.max_yaw`)."""
    shortfalls: tuple[tuple[str, ...], ...] | None = None
    """Per face, what the fake kept misses of the anonymizer's own goals, in words for a reviewer
    (more like the original than its identity bar allows, apparent gender or age changed, glasses
    or facial hair added or lost): the search keeps the best it found when no candidate meets them
    all. Empty where it met them; None from an anonymizer without such goals."""


@dataclass(frozen=True, eq=False)
class RecoveredFaces:
    images: Tensor  # [B, 3, S, S] in [-1, 1]; unrelated faces where not verified
    verified: tuple[bool, ...]  # the secret was right and the payload intact
    errors: tuple[PayloadError | None, ...]  # a face without a readable payload: why
    bit_errors_corrected: tuple[int | None, ...]
    embeddings: Tensor  # [B, D] the decoded identities
    masks: np.ndarray | None = None  # as in AnonymizedFaces


def encode_identities(
    codec: PayloadCodec,
    embeddings: np.ndarray,
    secret: Secret,
    *,
    seeds: list[int] | None,
    salts: list[bytes] | None,
    face_offset: int,
) -> tuple[list[EncodedPayload], list[int]]:
    """Each face's encrypted identity (a fresh random salt per face unless `salts` are given, so
    no two payloads share a keystream) and its dummy seed: the keyed one from (key, salt, face
    index) unless `seeds` fix them."""
    n = len(embeddings)
    if salts is not None and len(salts) != n or seeds is not None and len(seeds) != n:
        raise ValueError("give one salt and one seed per face")
    encoded = [
        codec.encode(e, secret, salt=None if salts is None else salts[i], face_index=face_offset + i)
        for i, e in enumerate(embeddings)
    ]
    return encoded, [e.dummy_seed for e in encoded] if seeds is None else list(seeds)


@runtime_checkable
class FaceAnonymizer(Protocol):
    """Aligned crops [B, 3, S, S] in [-1, 1] → anonymized crops, and back."""

    image_size: int
    payload_in_crops: bool
    """True when `anonymize` itself hides the payload in the crops it returns (learned E_p path);
    False when the caller must carry `AnonymizedFaces.bits` (in-pixel carrier, container)."""

    def anonymize(
        self,
        crops: Tensor,
        secret: Secret,
        *,
        seeds: list[int] | None = None,
        salts: list[bytes] | None = None,
        face_offset: int = 0,
        search: bool = True,
        source_widths: Sequence[float | None] | None = None,
        profiles: Sequence[bool] | None = None,
    ) -> AnonymizedFaces:
        """`search=False`: render each face's dummy seed as given, without choosing among keyed
        candidates (a video track re-renders the dummy chosen on its first frame that way).
        `AnonymizedFaces.dummy_seeds` are the seeds actually rendered. `source_widths`: how many
        photo pixels each crop spans (`align.crop_source_width`), for a model that judges its
        fakes as they will look once pasted back (`nn.crops.at_source_resolution`); others ignore it.
        `profiles`: faces the detector sees in profile (`align.seen_in_profile`), which a model
        that cannot render them treats as turned too far whatever its own pose estimate says;
        others ignore it."""
        ...

    def render_identities(
        self,
        crops: Tensor,
        identities: Tensor,
        refine_steps: int = 0,
        source_widths: Sequence[float | None] | None = None,
    ) -> tuple[Tensor, np.ndarray | None]:
        """Anonymized crops and the original identities [B, D] (decoded from a payload) → the
        faces rendered back with those identities, and their masks (None: the default ellipse).
        `refine_steps`: optional optimisation towards the identity (anonymizers that cannot refine
        ignore it); `source_widths` as for `anonymize`, for a refinement that judges its render as
        the photo will show it."""
        ...
