"""YuNet (OpenCV `FaceDetectorYN`, int8 model from the asset hub) over an image pyramid of tiles.

YuNet's cost grows with the pixels it sees, and it misses faces below about 10 px. So each network
call sees at most `working_size` × `working_size` pixels: a first pass sees the whole image shrunk
to that size (large faces), then finer levels up to full resolution are scanned in overlapping
tiles (small faces). Neighbouring levels differ by a factor of at most `level_step`**1.5 and tiles
overlap by `tile_overlap` px, so a face too large to lie whole inside one tile of a level is at
least `tile_overlap / level_step**1.5` px (45 px by default) at the level above. Faces cut by an
inner tile edge are dropped; detections from all calls are merged by non-maximum suppression.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from g2face import hub
from g2face.detection.base import opencv_dnn_target
from g2face.types import FaceDetection

_EDGE_MARGIN = 2.0  # px: a box this close to a tile's inner edge is a cut face, found whole elsewhere


def _tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Fewest equal spans of at most `tile` px covering [0, length), neighbours sharing `overlap` px."""
    if length <= tile:
        return [(0, length)]
    count = math.ceil((length - overlap) / (tile - overlap))
    # YuNet pads its input to a multiple of 32 px, so spans of that size waste nothing
    size = min(tile, 32 * math.ceil((length + (count - 1) * overlap) / count / 32))
    return [
        (start, start + size) for start in (round(i * (length - size) / (count - 1)) for i in range(count))
    ]


class YuNetDetector:
    """Face detector returning boxes, 5 landmarks and scores for every face, at any image size.

    Holds one OpenCV network whose input size changes per call: use one instance per thread.
    """

    name = "yunet"

    def __init__(
        self,
        *,
        score_threshold: float = 0.7,
        nms_threshold: float = 0.3,
        working_size: int = 640,
        tile_overlap: int = 128,
        level_step: float = 2.0,
        device: str = "cpu",
        model_path: str | Path | None = None,
    ) -> None:
        if not 2 * tile_overlap <= working_size:
            raise ValueError("tile_overlap must be at most half of working_size")
        if level_step <= 1:
            raise ValueError("level_step must be > 1")
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.working_size = working_size
        self.tile_overlap = tile_overlap
        self.level_step = level_step
        backend, target, self.device = opencv_dnn_target(device, "YuNet")
        path = str(model_path or hub.asset_path("yunet"))
        # OpenCV 5's graph engine logs a harmless warning about targets on every create.
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            self._net = cv2.FaceDetectorYN.create(
                path, "", (working_size, working_size), score_threshold, nms_threshold, 5000, backend, target
            )
        finally:
            cv2.utils.logging.setLogLevel(level)

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image [H, W, 3], got {image.dtype} {image.shape}")
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        rows = [raw for scale in self._scales(image.shape[:2]) for raw in self._scan_level(bgr, scale)]
        if not rows:
            return []
        raw = np.stack(rows)
        boxes = [[float(x0), float(y0), float(x1 - x0), float(y1 - y0)] for x0, y0, x1, y1 in raw[:, :4]]
        keep = cv2.dnn.NMSBoxes(boxes, raw[:, 14].tolist(), self.score_threshold, self.nms_threshold)
        faces = [
            FaceDetection(
                box=tuple(float(v) for v in r[:4]),
                landmarks=tuple((float(x), float(y)) for x, y in r[4:14].reshape(5, 2)),
                score=float(r[14]),
            )
            for r in raw[np.asarray(keep, dtype=int).reshape(-1)]
        ]
        return sorted(faces, key=lambda f: (-f.score, f.box[0], f.box[1]))

    def _scales(self, shape: tuple[int, int]) -> list[float]:
        coarsest = min(1.0, self.working_size / max(shape))
        if coarsest == 1.0:
            return [1.0]
        # rounding (not ceiling) skips a full-resolution pass that would add almost nothing: with
        # level_step 2 a photo at most 1.41× the working size is scanned once, shrunk
        levels = round(math.log(1 / coarsest) / math.log(self.level_step))
        return [coarsest ** (1 - k / levels) for k in range(levels + 1)] if levels else [coarsest]

    def _scan_level(self, bgr: np.ndarray, scale: float) -> list[np.ndarray]:
        """Rows (x0, y0, x1, y1, 5×(x, y), score) in full-image coordinates from one pyramid level."""
        height, width = bgr.shape[:2]
        level_w, level_h = max(1, round(width * scale)), max(1, round(height * scale))
        level = bgr if scale == 1.0 else cv2.resize(bgr, (level_w, level_h), interpolation=cv2.INTER_AREA)
        rows = []
        for ty, ty_end in _tile_spans(level_h, self.working_size, self.tile_overlap):
            for tx, tx_end in _tile_spans(level_w, self.working_size, self.tile_overlap):
                patch = level[ty:ty_end, tx:tx_end]
                for r in self._run(patch):
                    x0, y0, w, h = r[:4]
                    inner_cut = (
                        (tx > 0 and x0 < _EDGE_MARGIN)
                        or (ty > 0 and y0 < _EDGE_MARGIN)
                        or (tx + patch.shape[1] < level_w and x0 + w > patch.shape[1] - _EDGE_MARGIN)
                        or (ty + patch.shape[0] < level_h and y0 + h > patch.shape[0] - _EDGE_MARGIN)
                    )
                    if inner_cut:
                        continue
                    points = np.concatenate([[x0, y0, x0 + w, y0 + h], r[4:14]]).reshape(-1, 2)
                    points += (tx, ty)
                    # level pixel centre p sits at full-resolution (p + 0.5) / f - 0.5 per axis
                    points = (points + 0.5) / (level_w / width, level_h / height) - 0.5
                    rows.append(np.concatenate([points.reshape(-1), r[14:15]]))
        return rows

    def _run(self, patch: np.ndarray) -> np.ndarray:
        self._net.setInputSize((patch.shape[1], patch.shape[0]))
        _, found = self._net.detect(np.ascontiguousarray(patch))
        return np.zeros((0, 15), np.float32) if found is None else found.astype(np.float64)
