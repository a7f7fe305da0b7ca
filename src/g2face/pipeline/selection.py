"""Which faces of an image are anonymized: reference people exempted (`--exempt`) or the only ones
anonymized (`--only`), and faces too small for the generator handed to a classic filter.

Identity match: SFace cosine between a face's aligned crop and each reference person's main face
(embedded once), compared with `SFACE_THRESHOLD`. A score within `margin` of the threshold is
ambiguous and always resolves to anonymizing: a face is left exposed only when it clearly is an
exempt person (`exempt`) or clearly is not a listed one (`only`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from g2face.align import align_face
from g2face.io import expand_inputs, read_image
from g2face.types import FaceDetection, InputError

SFACE_THRESHOLD = 0.405
"""SFace cosine at FAR 1e-4 per comparison, measured on this embedding path (256 crops) over
124,750 impostor pairs of 500 LFW people (docs/selective.md); OpenCV publishes 0.363 for its own
alignment. With R reference people a stranger is compared R times: the margin covers that."""
AMBIGUITY_MARGIN = 0.05
SMALL_FACE_METHODS = ("blur", "pixelate", "box")

Embedder = Callable[[np.ndarray, Sequence[FaceDetection]], np.ndarray]
"""(RGB uint8 image, faces) -> L2-normalised identity embeddings [N, D]."""

SelectionMode = Literal["exempt", "only"]


class ReferenceError(InputError):
    """A reference photo cannot be used (unreadable, or no face in it)."""


def sface_embedder(device: str = "cpu") -> Embedder:
    """SFace embeddings of faces aligned to 256-pixel crops (the anonymizer's framing)."""
    import torch

    from g2face.nn.crops import crops_to_tensor
    from g2face.priors.sface import SFaceEncoder

    encoder = SFaceEncoder(device=device)

    def embed(image: np.ndarray, detections: Sequence[FaceDetection]) -> np.ndarray:
        if not detections:
            return np.zeros((0, encoder.embedding_dim), np.float32)
        crops = [align_face(image, d, 256).crop for d in detections]
        with torch.inference_mode():
            found = encoder(crops_to_tensor(crops, device=torch.device(device)))
        return found.float().cpu().numpy()

    return embed


@dataclass(frozen=True)
class FaceMatch:
    score: float  # highest identity cosine to a reference person
    exempt: bool  # left untouched
    ambiguous: bool  # within the margin of the threshold (then never exempt)


class FaceSelector:
    """Decides per face whether it is exempt from anonymization, from reference embeddings."""

    def __init__(
        self,
        references: np.ndarray,
        mode: SelectionMode,
        embed: Embedder,
        *,
        threshold: float = SFACE_THRESHOLD,
        margin: float = AMBIGUITY_MARGIN,
    ):
        references = np.asarray(references, np.float32)
        if references.ndim != 2 or len(references) == 0:
            raise ValueError("give at least one reference embedding")
        if mode not in ("exempt", "only"):
            raise ValueError(f"mode must be 'exempt' or 'only', got {mode!r}")
        if margin < 0:
            raise ValueError("margin must be >= 0")
        self.references, self.mode, self.embed = references, mode, embed
        self.threshold, self.margin = threshold, margin

    @classmethod
    def from_photos(
        cls,
        photos: Sequence[str | Path],
        mode: SelectionMode,
        detector,
        embed: Embedder,
        **kwargs,
    ) -> FaceSelector:
        """Reference people from photos (files, folders or globs): the largest face of each."""
        inputs = expand_inputs([str(p) for p in photos])
        if inputs.problems:
            raise ReferenceError(f"reference photo: {inputs.problems[0].message}")
        if not inputs.files:
            raise ReferenceError(f"no reference photo found in {', '.join(map(str, photos))}")
        references = []
        for item in inputs.files:
            image = read_image(item.path).rgb
            faces = detector.detect(image)
            if not faces:
                raise ReferenceError(f"{item.path}: no face found in this reference photo")
            main = max(faces, key=lambda f: f.width * f.height)
            references.append(embed(image, [main])[0])
        return cls(np.stack(references), mode, embed, **kwargs)

    def decide(self, image: np.ndarray, detections: Sequence[FaceDetection]) -> list[FaceMatch]:
        if not detections:
            return []
        scores = (self.embed(image, detections) @ self.references.T).max(axis=1)
        matches = []
        for score in scores.tolist():
            ambiguous = abs(score - self.threshold) < self.margin
            is_reference = score >= self.threshold and not ambiguous
            is_other = score < self.threshold and not ambiguous
            exempt = is_reference if self.mode == "exempt" else is_other
            matches.append(FaceMatch(score, exempt, ambiguous))
        return matches
