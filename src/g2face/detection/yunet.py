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

YuNet was trained on upright faces: of 100 LFW photos turned in the image plane it found the face in
all at 30°, 94 at 45°, 75 at 60°, 40 at 90° and 91 at 180° (scripts/study_turned_photos.py). So
the image is also scanned turned by a quarter, a half and three quarters (`rotated_scans`): every
in-plane angle is then within 45° of one scan. The turned scans skip the fine pyramid levels of a
large photo (`TURNED_SCAN_MIN_FACE`), and all detections are merged by
non-maximum suppression in the photo's own coordinates. A face's five points keep their meaning
(its own right eye is still the first; `YuNetDetector._points_in_order` checks the names YuNet gave
them), so the aligner turns the face upright.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from g2face import hub
from g2face.detection.base import box_area, intersection, iou, opencv_dnn_target
from g2face.types import FaceDetection

POINT_ORDERS = ((0, 1, 2, 3, 4), (1, 0, 2, 4, 3), (3, 4, 2, 0, 1), (4, 3, 2, 1, 0))
"""The five points in the order YuNet names them (right eye, left eye, nose, right and left mouth
corner), and as a face seen mirrored, upside down, or both gets them named."""
TURNED_SCAN_MIN_FACE = 40
"""px: the turned scans look for faces about this wide and larger (the pyramid's coarser levels): on
a 12 MP photo they then add 0.25 s to its 0.5 s of upright scanning instead of 0.8 s. A photo whose
long side is under about 900 px is scanned whole at every turn."""
LEVEL_VIEW_SIZE = 320
"""px: at most this wide, the view around a face in which `YuNetDetector._points_in_order` names
its points (twice the face box)."""
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


def _covered(box: np.ndarray, by: np.ndarray, share: float = 0.5) -> bool:
    """Whether `share` of the smaller of two boxes lies inside the other (one face's box around
    another's: the same face)."""
    smaller = min(box_area(box), box_area(by))
    return smaller > 0 and intersection(box, by) >= share * smaller


def _level_to_image(
    row: np.ndarray, level_shape: tuple[int, ...], image_shape: tuple[int, ...]
) -> np.ndarray:
    """A detection row in the coordinates of a resized copy of the image (`level_shape`) in the
    image's own: a level's pixel centre p sits at (p + 0.5) / f - 0.5 per axis."""
    factor = (level_shape[1] / image_shape[1], level_shape[0] / image_shape[0])
    points = (row[:14].reshape(7, 2) + 0.5) / factor - 0.5
    return np.concatenate([points.reshape(-1), row[14:15]])


def _unturn(row: np.ndarray, turns: int, width: int, height: int) -> np.ndarray:
    """A detection row (`_scan_level`) found in `np.rot90(image, turns)` in the coordinates of the
    `width` x `height` image itself: the box's corners and the five points turned back (pixel
    centres map onto pixel centres), the box made axis-aligned again."""
    points = row[:14].reshape(7, 2).copy()
    # One quarter turn of np.rot90 (counter-clockwise) takes the pixel at (x, y) of an image W wide
    # to (y, W - 1 - x); undone, (u, v) goes back to (W - 1 - v, u). The turns are undone last first.
    widths = [width if k % 2 == 0 else height for k in range(turns)]  # the width before each turn
    for before in reversed(widths):
        u, v = points[:, 0].copy(), points[:, 1].copy()
        points[:, 0], points[:, 1] = before - 1 - v, u
    corners, landmarks = points[:2], points[2:]
    box = np.concatenate([corners.min(axis=0), corners.max(axis=0)])
    return np.concatenate([box, landmarks.reshape(-1), row[14:15]])


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
        rotated_scans: bool = True,
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
        self.rotated_scans = rotated_scans
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
        upright = self._scan_upright(bgr)
        rows = list(upright)
        if self.rotated_scans:
            rows += self._scan_turned(bgr)
        if not rows:
            return []
        raw = np.stack(rows)
        boxes = [[float(x0), float(y0), float(x1 - x0), float(y1 - y0)] for x0, y0, x1, y1 in raw[:, :4]]
        keep = cv2.dnn.NMSBoxes(boxes, raw[:, 14].tolist(), self.score_threshold, self.nms_threshold)
        kept = list(raw[np.asarray(keep, dtype=int).reshape(-1)])
        if self.rotated_scans:
            kept = self._settle_turned_scans(bgr, kept, upright)
        faces = [
            FaceDetection(
                box=tuple(float(v) for v in r[:4]),
                landmarks=tuple((float(x), float(y)) for x, y in r[4:14].reshape(5, 2)),
                score=float(r[14]),
            )
            for r in kept
        ]
        return sorted(faces, key=lambda f: (-f.score, f.box[0], f.box[1]))

    def _scan_turned(self, bgr: np.ndarray) -> list[np.ndarray]:
        """Rows (`_scan_level`, in the image's coordinates) of the image turned a quarter, a half
        and three quarters, at the pyramid levels where a face `TURNED_SCAN_MIN_FACE` px wide is at
        most 16 px (the coarsest always). Each level is shrunk once and then turned (turning a
        large photo and shrinking it three times cost more than the scans)."""
        height, width = bgr.shape[:2]
        scales = self._scales(bgr.shape[:2])
        rows = []
        for scale in [x for x in scales if x * TURNED_SCAN_MIN_FACE <= 16] or scales[:1]:
            level_w, level_h = max(1, round(width * scale)), max(1, round(height * scale))
            level = bgr if scale == 1.0 else cv2.resize(bgr, (level_w, level_h), interpolation=cv2.INTER_AREA)
            for turns in (1, 2, 3):
                turned = np.ascontiguousarray(np.rot90(level, turns))
                for row in self._scan_level(turned, 1.0):
                    rows.append(
                        _level_to_image(_unturn(row, turns, level_w, level_h), level.shape, bgr.shape)
                    )
        return rows

    def _settle_turned_scans(
        self, bgr: np.ndarray, kept: list[np.ndarray], upright: list[np.ndarray]
    ) -> list[np.ndarray]:
        """The merged detections of all four scans, each with its points named as the face shows
        them (`_points_in_order`), less two kinds of extra detection the turned scans made on upright
        photos. Of 213 LFW, CelebA and wild photos, they added 7 detections to upright scanning's 248:
        3 boxes several times a face's size around a face already found (a lower-scoring detection
        covering half of a better one is dropped), 3 patterns on clothes or skin (stars on a
        uniform, an ear, a neckline), and a defocused face in the background. A detection no
        upright scan made must pass again: its level views must find a face too, which only the
        background face did."""
        # (an upright scan's detections first: a turned scan's box around a face is dropped, not
        # the face's own)
        candidates = [(row, any(iou(row[:4], r[:4]) >= self.nms_threshold for r in upright)) for row in kept]
        settled: list[np.ndarray] = []
        for row, seen_upright in sorted(candidates, key=lambda c: (not c[1], -c[0][14])):
            if any(_covered(row[:4], better[:4]) for better in settled):
                continue
            named, seen_level = self._points_in_order(bgr, row)
            if seen_upright or seen_level:
                settled.append(named)
        return settled

    def _points_in_order(self, bgr: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, bool]:
        """`row` with its five points named as the face shows them, and whether a level view found
        the face at all. YuNet names the points as for an upright face, so a face it sees tilted
        or upside down can win the merge of the scans with its points misnamed (mouth corners as
        eyes, left as right), and the aligner would turn it upside down. Turned so that the line
        through its named eyes is level, the face is
        either upright or upside down, and there YuNet tells the two apart: on 53 LFW faces at
        0° and 180° its best upright-named detection outscored every misnamed one by at least 0.03
        (at 30-45° the misnamed ones won 9-19 % of the time). So the face's surroundings are
        scanned level both ways up, and where the better view names the row's points otherwise
        (its points fit the row's best mirrored, upside down or both: `POINT_ORDERS`), the view's
        points replace them. A row whose names the view confirms is returned as it is (on a
        blurred face the view can place its points elsewhere)."""
        x0, y0, x1, y1 = row[:4]
        points = row[4:14].reshape(5, 2)
        eyes = points[1] - points[0]
        angle = math.degrees(math.atan2(eyes[1], eyes[0]))
        centre = ((x0 + x1) / 2, (y0 + y1) / 2)
        side = 2 * max(x1 - x0, y1 - y0, 1.0)
        scale = min(1.0, LEVEL_VIEW_SIZE / side)
        size = max(32, round(side * scale))
        best: tuple[float, np.ndarray] | None = None
        for flip in (0.0, 180.0):
            matrix = cv2.getRotationMatrix2D(centre, angle + flip, scale)
            matrix[:, 2] += (size / 2 - centre[0], size / 2 - centre[1])
            view = cv2.warpAffine(bgr, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=(128,) * 3)
            found = [
                r
                for r in self._run(view)
                if r[0] <= size / 2 <= r[0] + r[2] and r[1] <= size / 2 <= r[1] + r[3]
            ]
            if not found:
                continue
            view_row = max(found, key=lambda r: r[14])
            back = cv2.invertAffineTransform(matrix)
            named = view_row[4:14].reshape(5, 2) @ back[:, :2].T + back[:, 2]
            if best is None or view_row[14] > best[0]:
                best = float(view_row[14]), named
        if best is None:
            return row, False
        named = best[1]
        misfit = {
            order: float(np.linalg.norm(points[list(order)] - named, axis=1).sum()) for order in POINT_ORDERS
        }
        order = min(misfit, key=misfit.get)
        if order == POINT_ORDERS[0]:
            return row, True
        # misnamed: the view that sees the face upright also places its points best
        return np.concatenate([row[:4], named.reshape(-1), row[14:15]]), True

    def _scan_upright(self, bgr: np.ndarray) -> list[np.ndarray]:
        """Rows (`_scan_level`) of every pyramid level of the image as it is."""
        scales = self._scales(bgr.shape[:2])
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
        return rows

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
                rows.append(
                    _level_to_image(np.concatenate([points.reshape(-1), r[14:15]]), level.shape, bgr.shape)
                )
        return rows

    def _run(self, patch: np.ndarray) -> np.ndarray:
        self._net.setInputSize((patch.shape[1], patch.shape[0]))
        _, found = self._net.detect(np.ascontiguousarray(patch))
        return np.zeros((0, 15), np.float32) if found is None else found.astype(np.float64)
