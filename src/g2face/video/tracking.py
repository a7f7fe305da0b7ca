"""Linking face detections across frames: IoU against a constant-velocity prediction, and landmark
smoothing (One-Euro filter) so aligned crops do not jitter from frame to frame.

Identity features (SFace on aligned crops) are not used for association: on the measured clips
faces move by a small fraction of their size between frames, so IoU with the predicted box is
unambiguous (docs/video.md); crossing faces are the case it would help.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from g2face.detection.base import iou
from g2face.types import FaceDetection

TrackState = Literal["seen", "predicted", "lost"]


def _to_vector(d: FaceDetection) -> np.ndarray:
    return np.concatenate([np.asarray(d.box, np.float64), d.points.ravel()])


def _from_vector(v: np.ndarray, score: float) -> FaceDetection:
    return FaceDetection(
        box=tuple(float(x) for x in v[:4]),
        landmarks=tuple((float(v[4 + 2 * i]), float(v[5 + 2 * i])) for i in range(5)),
        score=score,
    )


class OneEuroFilter:
    """One-Euro filter (Casiez et al., CHI 2012) on a vector of coordinates: a low-pass whose cutoff
    rises with speed, so a still face is steady and a moving one does not lag. Speeds are measured
    in face widths per second (`scale`), so one setting serves every face size."""

    def __init__(self, rate: float, *, min_cutoff: float = 1.5, beta: float = 2.0, d_cutoff: float = 1.0):
        self.period = 1.0 / rate
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.value: np.ndarray | None = None
        self.derivative: np.ndarray | None = None

    def _alpha(self, cutoff: float | np.ndarray) -> float | np.ndarray:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / self.period)

    def __call__(self, x: np.ndarray, scale: float) -> np.ndarray:
        if self.value is None:
            self.value, self.derivative = x.copy(), np.zeros_like(x)
            return x.copy()
        speed = (x - self.value) / self.period / max(scale, 1e-6)
        a_d = self._alpha(self.d_cutoff)
        self.derivative = a_d * speed + (1 - a_d) * self.derivative
        a = self._alpha(self.min_cutoff + self.beta * np.abs(self.derivative))
        self.value = a * x + (1 - a) * self.value
        return self.value.copy()

    def reset(self, value: np.ndarray) -> None:
        self.value, self.derivative = value.copy(), np.zeros_like(value)

    def shift(self, delta: np.ndarray) -> None:
        """Move the state with a predicted displacement (a coasting track)."""
        if self.value is not None:
            self.value = self.value + delta


@dataclass
class Track:
    id: int
    detection: FaceDetection  # smoothed (or predicted, while coasting)
    filter: OneEuroFilter
    first_frame: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # box-centre px per frame
    missed: int = 0  # consecutive frames without a matching detection
    seen: int = 1  # frames with a matching detection
    predicted: int = 0  # frames anonymized at a predicted place
    lost_frames: int = 0  # frames handled by the fail-closed policy after the track was lost

    def predicted_detection(self) -> FaceDetection:
        shift = np.tile(self.velocity, 7)  # box corners (2 points) + 5 landmarks
        return _from_vector(_to_vector(self.detection) + shift, self.detection.score)


@dataclass(frozen=True)
class TrackedFace:
    track: Track
    state: TrackState
    detection: FaceDetection  # where to anonymize (seen/predicted) or to cover (lost)
    raw: FaceDetection | None  # the detector's own detection this frame, if any


@dataclass(frozen=True)
class TrackerUpdate:
    faces: tuple[TrackedFace, ...]
    unconfirmed: tuple[FaceDetection, ...]  # low-score detections matching no track


class FaceTracker:
    """Greedy IoU association (highest score first) with constant-velocity prediction.

    A detection with score ≥ `confirm_score` that matches no track starts one; a lower-score one
    that matches a track continues it, else it is returned as unconfirmed. A track without a match
    stays `predicted` for `max_predicted` frames, then `lost` for `max_lost` more, then ends."""

    def __init__(
        self,
        rate: float,
        *,
        iou_threshold: float = 0.3,
        confirm_score: float = 0.7,
        max_predicted: int = 5,
        max_lost: int = 10,
        smooth: bool = True,
        reset_iou: float = 0.6,
    ):
        """`reset_iou`: a smoothed box overlapping the frame's detection less than this restarts
        the track's filter at the detection (no lag after a jump)."""
        self.rate = rate
        self.reset_iou = reset_iou
        self.iou_threshold = iou_threshold
        self.confirm_score = confirm_score
        self.max_predicted = max_predicted
        self.max_lost = max_lost
        self.smooth = smooth
        self.tracks: list[Track] = []
        self.ended: list[Track] = []
        self._next_id = 0

    def update(self, detections: list[FaceDetection], frame_index: int) -> TrackerUpdate:
        predictions = {t.id: t.predicted_detection() for t in self.tracks}
        pairs = sorted(
            (
                (iou(d.box, predictions[t.id].box), -d.score, di, ti)
                for di, d in enumerate(detections)
                for ti, t in enumerate(self.tracks)
            ),
            reverse=True,
        )
        matched_d: dict[int, int] = {}  # track index -> detection index
        used_d: set[int] = set()
        for overlap, _, di, ti in pairs:
            if overlap < self.iou_threshold:
                break
            if ti in matched_d or di in used_d:
                continue
            matched_d[ti] = di
            used_d.add(di)
        faces: list[TrackedFace] = []
        survivors: list[Track] = []
        for ti, track in enumerate(self.tracks):
            if ti in matched_d:
                raw = detections[matched_d[ti]]
                self._observe(track, raw)
                faces.append(TrackedFace(track, "seen", track.detection, raw))
                survivors.append(track)
                continue
            track.missed += 1
            track.detection = predictions[track.id]
            track.filter.shift(np.tile(track.velocity, 7))
            if track.missed <= self.max_predicted:
                track.predicted += 1
                faces.append(TrackedFace(track, "predicted", track.detection, None))
                survivors.append(track)
            elif track.missed <= self.max_predicted + self.max_lost:
                track.velocity = track.velocity * 0.8  # a lost face's prediction slows down
                track.lost_frames += 1
                faces.append(TrackedFace(track, "lost", track.detection, None))
                survivors.append(track)
            else:
                self.ended.append(track)
        unconfirmed: list[FaceDetection] = []
        for di, d in enumerate(detections):
            if di in used_d:
                continue
            if d.score < self.confirm_score:
                unconfirmed.append(d)
                continue
            track = Track(self._next_id, d, OneEuroFilter(self.rate), frame_index)
            track.filter(_to_vector(d), max(d.width, 1.0))
            self._next_id += 1
            survivors.append(track)
            faces.append(TrackedFace(track, "seen", d, d))
        self.tracks = survivors
        return TrackerUpdate(tuple(faces), tuple(unconfirmed))

    def _observe(self, track: Track, raw: FaceDetection) -> None:
        previous = _to_vector(track.detection)
        vector = _to_vector(raw)
        smoothed = track.filter(vector, max(raw.width, 1.0)) if self.smooth else vector
        if iou(tuple(smoothed[:4]), raw.box) < self.reset_iou:
            # a jump (a cut, a fast turn): the smoothed place would lag off the face; restart there
            track.filter.reset(vector)
            smoothed = vector
        centre_now = (smoothed[:2] + smoothed[2:4]) / 2
        centre_before = (previous[:2] + previous[2:4]) / 2
        track.velocity = 0.5 * track.velocity + 0.5 * (centre_now - centre_before)
        track.detection = _from_vector(smoothed, raw.score)
        track.missed = 0
        track.seen += 1

    def all_tracks(self) -> list[Track]:
        return sorted(self.ended + self.tracks, key=lambda t: t.id)
