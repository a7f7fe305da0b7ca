"""The face-detector interface every backend implements."""

from __future__ import annotations

import warnings
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from g2face.types import FaceDetection


@runtime_checkable
class FaceDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """Every face in an RGB uint8 image [H, W, 3], in descending score (ties by position)."""
        ...


def box_area(box) -> float:
    """Area of a box (x0, y0, x1, y1)."""
    return (box[2] - box[0]) * (box[3] - box[1])


def intersection(a, b) -> float:
    """Area shared by two boxes (x0, y0, x1, y1)."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def iou(a, b) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    inter = intersection(a, b)
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def opencv_dnn_target(device: str, detector: str) -> tuple[int, int, str]:
    """(backend, target, device actually used: "cuda" or "cpu") for OpenCV DNN: CUDA when asked for
    and this OpenCV build has it, else the CPU with a warning (PyPI's OpenCV wheels have no CUDA)."""
    if device.startswith("cuda"):
        if hasattr(cv2, "cuda") and cv2.cuda.getCudaEnabledDeviceCount() > 0:
            return cv2.dnn.DNN_BACKEND_CUDA, cv2.dnn.DNN_TARGET_CUDA, "cuda"
        warnings.warn(f"this OpenCV build has no CUDA; {detector} runs on the CPU", stacklevel=3)
    elif device != "cpu":
        warnings.warn(f"OpenCV cannot run {detector} on {device!r}; it runs on the CPU", stacklevel=3)
    return cv2.dnn.DNN_BACKEND_DEFAULT, cv2.dnn.DNN_TARGET_CPU, "cpu"
