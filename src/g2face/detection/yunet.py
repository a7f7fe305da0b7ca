"""YuNet (OpenCV `FaceDetectorYN`, int8 model from the asset hub) over an image pyramid of tiles.

YuNet's cost grows with the pixels it sees, and it misses faces below about 10 px. So a first pass
sees the whole image shrunk to `working_size` (large faces), then finer levels up to full
resolution are scanned in overlapping tiles of at most `tile_size` px (small faces). Neighbouring
levels differ by a factor of at most `level_step`**1.5 and tiles overlap by `tile_overlap` px, so a
face too large to lie whole inside one tile of a level is at least `tile_overlap / level_step**1.5`
px (45 px by default) at the level above. Faces cut by an inner tile edge are dropped; detections
from all calls are merged by non-maximum suppression.

The full-resolution level of a large photo holds most of its pixels (70 % of a 12 MP photo's work)
but only adds faces of 10-20 px. With `candidate_threshold` set it is scanned only where the level
above saw a face-like response (a score of at least that, below the detection threshold), in
`working_size` tiles around each: about half the time on 12 MP photos, but on faces of 12 px pasted
into a 12 MP photo it found 33 of 48 where the whole scan finds 41 (larger faces: all, as the whole
scan), so it is off by default.
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


def _best_span(spans: list[tuple[int, int]], point: float) -> tuple[int, int]:
    """The span holding `point` farthest from its ends (so a small face there lies whole inside)."""
    return max(spans, key=lambda span: min(point - span[0], span[1] - point))


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
        tile_size: int = 2048,
        tile_overlap: int = 128,
        level_step: float = 2.0,
        candidate_threshold: float | None = None,
        device: str = "cpu",
        model_path: str | Path | None = None,
    ) -> None:
        if not 2 * tile_overlap <= working_size <= tile_size:
            raise ValueError("need 2 * tile_overlap <= working_size <= tile_size")
        if level_step <= 1:
            raise ValueError("level_step must be > 1")
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.working_size = working_size
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.level_step = level_step
        if candidate_threshold is not None and not 0 < candidate_threshold <= score_threshold:
            raise ValueError("candidate_threshold must be in (0, score_threshold]")
        self.candidate_threshold = candidate_threshold
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
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        scales = self._scales(image.shape[:2])
        guided = self.candidate_threshold is not None and len(scales) > 1
        rows = [raw for scale in scales[: -2 if guided else None] for raw in self._scan_level(bgr, scale)]
        if guided:
            self._net.setScoreThreshold(self.candidate_threshold)
            try:
                above = self._scan_level(bgr, scales[-2])
            finally:
                self._net.setScoreThreshold(self.score_threshold)
            rows += [r for r in above if r[14] >= self.score_threshold]
            centres = [((r[0] + r[2]) / 2, (r[1] + r[3]) / 2) for r in above if r[14] < self.score_threshold]
            rows += self._scan_level(bgr, scales[-1], around=centres)
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

    def _scan_level(
        self, bgr: np.ndarray, scale: float, around: list[tuple[float, float]] | None = None
    ) -> list[np.ndarray]:
        """Rows (x0, y0, x1, y1, 5×(x, y), score) in full-image coordinates from one pyramid level:
        all of it, or (`around`: full-image points) only the `working_size` tiles that hold each
        point farthest from their edges."""
        height, width = bgr.shape[:2]
        level_w, level_h = max(1, round(width * scale)), max(1, round(height * scale))
        tile = self.tile_size if around is None else self.working_size
        rows_y = _tile_spans(level_h, tile, self.tile_overlap)
        cols_x = _tile_spans(level_w, tile, self.tile_overlap)
        if around is None:
            tiles = [(y, x) for y in rows_y for x in cols_x]
        else:
            tiles = sorted(
                {(_best_span(rows_y, cy * scale), _best_span(cols_x, cx * scale)) for cx, cy in around}
            )
        if not tiles:
            return []
        level = bgr if scale == 1.0 else cv2.resize(bgr, (level_w, level_h), interpolation=cv2.INTER_AREA)
        rows = []
        for (ty, ty_end), (tx, tx_end) in tiles:
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
