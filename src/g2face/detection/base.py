"""The face-detector interface every backend implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from g2face.types import FaceDetection


@runtime_checkable
class FaceDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """Every face in an RGB uint8 image [H, W, 3], in descending score (ties by position)."""
        ...
