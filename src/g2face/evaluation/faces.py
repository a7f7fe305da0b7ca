"""Faces as the evaluation meets them: the main face of a photo found, aligned, processed, pasted
back through the soft mask, cropped again and, for robustness, distorted and detected again.

The same `g2face.align` warp and paste-back the pipeline uses; detection through any
`FaceDetector`. A photo's main face is the detection nearest the image centre (LFW and CelebA are
centred on the labelled person) or, after a distortion, the one overlapping the known face most.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from g2face.align import (
    DEFAULT_CROP_SIZE,
    align_face,
    blend_faces,
    paste_faces,
    transform_points,
    warp_affine,
)
from g2face.detection.base import FaceDetector, iou
from g2face.types import AlignedFace, FaceDetection


def transform_box(box: Sequence[float], matrix: np.ndarray) -> tuple[float, float, float, float]:
    """Axis-aligned bounds of a box moved by a 2×3 matrix."""
    x0, y0, x1, y1 = box
    pts = transform_points(np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]), matrix)
    return (*pts.min(0), *pts.max(0))


MIN_REDETECT_IOU = 0.3
"""A face found again after a distortion must overlap the known face this much."""


def pick_face(
    detections: Sequence[FaceDetection], shape: tuple[int, ...], near: Sequence[float] | None = None
) -> FaceDetection | None:
    """The main face: nearest the image centre, or (given `near`) the best overlap with that box."""
    if not detections:
        return None
    if near is not None:
        best = max(detections, key=lambda d: iou(d.box, near))
        return best if iou(best.box, near) >= MIN_REDETECT_IOU else None
    cy, cx = shape[0] / 2, shape[1] / 2
    return min(
        detections, key=lambda d: (d.box[0] + d.box[2] - 2 * cx) ** 2 + (d.box[1] + d.box[3] - 2 * cy) ** 2
    )


@dataclass(frozen=True, eq=False)
class Photo:
    key: str
    image: np.ndarray
    face: AlignedFace


class FaceFinder:
    """Detect and align the main face of a photo; paste crops back and crop photos again."""

    def __init__(self, detector: FaceDetector, crop_size: int = DEFAULT_CROP_SIZE):
        self.detector, self.crop_size = detector, crop_size

    def find(self, image: np.ndarray, near: Sequence[float] | None = None) -> AlignedFace | None:
        detection = pick_face(self.detector.detect(image), image.shape, near)
        return None if detection is None else self.align(image, detection)

    def align(self, image: np.ndarray, detection: FaceDetection) -> AlignedFace:
        return align_face(image, detection, self.crop_size)

    def crop(self, image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """`image` cropped with a known alignment (the strongest attacker: it knows where the face was)."""
        return warp_affine(image, matrix, (self.crop_size, self.crop_size))

    @staticmethod
    def paste(photo: Photo, crop: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """The crop put back into the photo: through the method's own mask when it has one (the
        geometric-fusion default), else the default face ellipse."""
        if mask is None:
            return paste_faces(photo.image, [crop], [photo.face])
        return blend_faces(photo.image, [crop], [photo.face], [mask])[0]


# --- distortions a published image meets -------------------------------------------------------------

Distortion = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""RGB uint8 image -> (distorted image, 2×3 matrix from original to distorted pixel coordinates)."""

_IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _encoded(ext: str, params: list[int]) -> Distortion:
    def apply(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ok, data = cv2.imencode(ext, np.ascontiguousarray(image[..., ::-1]), params)
        if not ok:
            raise RuntimeError(f"OpenCV could not encode {ext}")
        return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].copy(), _IDENTITY

    return apply


def _half_and_back(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), _IDENTITY


def _crop_5_percent(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the central 95% of each side."""
    h, w = image.shape[:2]
    dx, dy = round(0.025 * w), round(0.025 * h)
    return image[dy : h - dy, dx : w - dx].copy(), np.array([[1.0, 0.0, -dx], [0.0, 1.0, -dy]])


DISTORTIONS: dict[str, Distortion] = {
    "png": _encoded(".png", []),
    "jpeg95": _encoded(".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95]),
    "jpeg90": _encoded(".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90]),
    "jpeg75": _encoded(".jpg", [cv2.IMWRITE_JPEG_QUALITY, 75]),
    "resize0.5": _half_and_back,
    "crop5": _crop_5_percent,
}
"""Robustness conditions, each applied to the whole anonymized photo (8-bit PNG is the clean one)."""


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """2×3 matrix applying `inner` then `outer`."""
    return np.hstack([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])
