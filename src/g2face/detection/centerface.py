"""CenterFace (MobileNetV2 CenterNet-style ONNX from the asset hub), run with OpenCV DNN.

A second detector for evaluation, independent of YuNet in network and authors (both learnt from
WIDER FACE), so a detection rate is not an artefact of one model. The network takes RGB 0..255 of
any size that is a multiple of 32 and returns, at stride 4, a face-centre heatmap, log box sizes,
sub-cell centre offsets and 5 landmarks relative to the box. The image is shrunk so its longer side
is at most `working_size` and zero-padded on the right and bottom to multiples of 32, so
coordinates map back by one factor per axis. Its landmarks come in YuNet's order (image-left eye
and mouth corner first, i.e. the subject's right).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from g2face import hub
from g2face.detection.base import opencv_dnn_target
from g2face.types import FaceDetection

_STRIDE = 4  # input pixels per output cell


class CenterFaceDetector:
    """Face detector returning boxes, 5 landmarks and scores, one network pass per image.

    Holds one OpenCV network whose input size changes per call: use one instance per thread.
    """

    name = "centerface"

    def __init__(
        self,
        *,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.3,
        working_size: int = 640,
        device: str = "cpu",
        model_path: str | Path | None = None,
    ) -> None:
        if working_size < 32 or working_size % 32:
            raise ValueError("working_size must be a positive multiple of 32")
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.working_size = working_size
        self._net = cv2.dnn.readNetFromONNX(str(model_path or hub.asset_path("centerface")))
        backend, target, self.device = opencv_dnn_target(device, "CenterFace")
        if self.device == "cuda":  # setting the CPU target only makes OpenCV 5 log a warning
            self._net.setPreferableBackend(backend)
            self._net.setPreferableTarget(target)
        self._outputs = self._net.getUnconnectedOutLayersNames()

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image [H, W, 3], got {image.dtype} {image.shape}")
        blob, factors = network_input(image, self.working_size)
        heatmap, sizes, offsets, landmarks = self.forward(blob)
        rows, cols = np.nonzero(heatmap[0, 0] > self.score_threshold)
        if not len(rows):
            return []
        scores = heatmap[0, 0, rows, cols]
        box_h, box_w = np.exp(sizes[0, :, rows, cols].T) * _STRIDE
        centre_y = (rows + offsets[0, 0, rows, cols] + 0.5) * _STRIDE
        centre_x = (cols + offsets[0, 1, rows, cols] + 0.5) * _STRIDE
        x0, y0 = centre_x - box_w / 2, centre_y - box_h / 2
        # landmark channels are (y, x) pairs, as fractions of the box from its top-left corner
        marks = landmarks[0, :, rows, cols].reshape(-1, 5, 2)[:, :, ::-1]
        points = marks * np.stack([box_w, box_h], 1)[:, None] + np.stack([x0, y0], 1)[:, None]
        corners = np.stack([x0, y0, x0 + box_w, y0 + box_h], 1).reshape(-1, 2, 2)
        # network pixel centre p sits at full-resolution (p + 0.5) / f - 0.5 per axis
        corners, points = ((a + 0.5) / factors - 0.5 for a in (corners, points))
        height, width = image.shape[:2]
        boxes = np.clip(corners, 0, (width, height)).reshape(-1, 4)
        keep = cv2.dnn.NMSBoxes(
            [[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in boxes.tolist()],
            scores.tolist(),
            self.score_threshold,
            self.nms_threshold,
        )
        faces = [
            FaceDetection(
                box=tuple(boxes[i].tolist()),
                landmarks=tuple(map(tuple, points[i].tolist())),
                score=float(scores[i]),
            )
            for i in np.asarray(keep, dtype=int).reshape(-1)
        ]
        return sorted(faces, key=lambda f: (-f.score, f.box[0], f.box[1]))

    def forward(self, blob: np.ndarray) -> tuple[np.ndarray, ...]:
        """Raw outputs (heatmap, log sizes, offsets, landmarks) for a `network_input` blob."""
        self._net.setInput(blob)
        return tuple(self._net.forward(self._outputs))


def network_input(image: np.ndarray, working_size: int) -> tuple[np.ndarray, tuple[float, float]]:
    """Float32 blob [1, 3, H', W'] of the RGB image shrunk to a longer side of at most
    `working_size` and zero-padded to multiples of 32, and the (x, y) shrink factors."""
    height, width = image.shape[:2]
    scale = min(1.0, working_size / max(height, width))
    size_w, size_h = max(1, round(width * scale)), max(1, round(height * scale))
    if (size_w, size_h) != (width, height):
        image = cv2.resize(image, (size_w, size_h), interpolation=cv2.INTER_AREA)
    blob = np.zeros((1, 3, 32 * math.ceil(size_h / 32), 32 * math.ceil(size_w / 32)), np.float32)
    blob[0, :, :size_h, :size_w] = image.transpose(2, 0, 1)
    return blob, (size_w / width, size_h / height)
