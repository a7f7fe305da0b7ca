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
