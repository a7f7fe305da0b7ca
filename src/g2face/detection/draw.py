"""Visualise detections: boxes, scores and the 5 landmarks drawn on a copy of the image."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from g2face.types import FaceDetection

# one colour per landmark (RGB), in LANDMARK_NAMES order: eyes blue/cyan, nose red, mouth green/yellow
_LANDMARK_COLOURS = ((0, 90, 255), (0, 220, 255), (255, 40, 40), (40, 200, 40), (230, 230, 0))
_BOX_COLOUR = (255, 0, 255)


def draw_detections(image: np.ndarray, detections: Sequence[FaceDetection]) -> np.ndarray:
    """RGB uint8 copy of `image` with each face's box, index:score label and landmarks drawn."""
    out = np.ascontiguousarray(image.copy())
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for i, det in enumerate(detections):
        x0, y0, x1, y1 = (round(v) for v in det.box)
        cv2.rectangle(out, (x0, y0), (x1, y1), _BOX_COLOUR, thickness, cv2.LINE_AA)
        cv2.putText(
            out,
            f"{i}:{det.score:.2f}",
            (x0, max(0, y0 - 3 * thickness)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * thickness,
            _BOX_COLOUR,
            thickness,
            cv2.LINE_AA,
        )
        radius = max(2, round(det.width / 40))
        for (x, y), colour in zip(det.landmarks, _LANDMARK_COLOURS, strict=True):
            cv2.circle(out, (round(x), round(y)), radius, colour, -1, cv2.LINE_AA)
    return out
