"""Named result types shared across layers (numpy only; no torch here).

Coordinate conventions: pixel coordinates of the upright (EXIF-transposed) image, x to the right,
y down, the centre of the top-left pixel at (0, 0) — the convention of OpenCV's `warpAffine`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LANDMARK_NAMES = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")
"""The 5 landmarks, in the subject's frame: `right_eye` is the subject's right eye, which appears on
the *left* of an unmirrored frontal photo (YuNet's and the ArcFace template's order)."""


class InputError(Exception):
    """A problem with one input (unreadable image, no face, protected output…): reported in one
    line, and a batch moves on to the next input instead of stopping."""


@dataclass(frozen=True)
class FaceDetection:
    """One detected face: box (x0, y0, x1, y1), 5 landmarks in `LANDMARK_NAMES` order, score in [0, 1]."""

    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    score: float

    def __post_init__(self) -> None:
        if len(self.landmarks) != len(LANDMARK_NAMES):
            raise ValueError(f"expected {len(LANDMARK_NAMES)} landmarks, got {len(self.landmarks)}")

    @property
    def points(self) -> np.ndarray:
        """Landmarks as a float64 array [5, 2]."""
        return np.asarray(self.landmarks, dtype=np.float64)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    def to_dict(self) -> dict:
        """JSON-ready form: rounded to 0.01 px."""
        return {
            "box": [round(v, 2) for v in self.box],
            "landmarks": {
                n: [round(x, 2), round(y, 2)]
                for n, (x, y) in zip(LANDMARK_NAMES, self.landmarks, strict=True)
            },
            "score": round(self.score, 4),
        }


@dataclass(frozen=True, eq=False)
class AlignedFace:
    """A face warped to the model's framing.

    `crop` is RGB uint8 [S, S, 3]; `matrix` the 2×3 similarity mapping image → crop coordinates and
    `inverse` the 2×3 mapping crop → image coordinates.
    """

    crop: np.ndarray
    matrix: np.ndarray
    inverse: np.ndarray
    detection: FaceDetection

    @property
    def size(self) -> int:
        return self.crop.shape[0]


@dataclass(frozen=True, eq=False)
class Footprint:
    """The pixels of an image that pasting one face may have changed: a box's top-left corner and a
    boolean mask [h, w] inside it (empty when the face lay outside the image)."""

    x0: int
    y0: int
    mask: np.ndarray

    @property
    def box(self) -> tuple[int, int, int, int]:
        h, w = self.mask.shape
        return (self.x0, self.y0, self.x0 + w, self.y0 + h)


@dataclass(frozen=True, eq=False)
class FaceRecord:
    """What a pipeline did to one face: where it was, how it was aligned, the crop it pasted back
    with its soft mask (crop coordinates), and the image pixels that paste touched."""

    index: int
    aligned: AlignedFace
    output_crop: np.ndarray
    mask: np.ndarray | None = None
    footprint: Footprint | None = None

    @property
    def detection(self) -> FaceDetection:
        return self.aligned.detection


@dataclass(frozen=True, eq=False)
class ProcessedImage:
    """An image after a face pipeline: the composited RGB uint8 image and one record per face,
    in the order they were pasted (detection order: descending score, ties by position)."""

    image: np.ndarray
    faces: tuple[FaceRecord, ...] = field(default=())
