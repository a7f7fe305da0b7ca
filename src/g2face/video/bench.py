"""`g2face bench --video CLIP`: throughput of tracked anonymization on a clip's frames.

Times `VideoAnonymizer.process` (detection, tracking, anonymization of every tracked face, the
fail-closed blur and the sealing of the frame's sidecar container) frame by frame; decoding and
encoding are left out (FFmpeg's, not g2face's). A frame where a new track starts (or a track searches
again: `DummyPolicy`) pays for the model's candidate search; every other frame renders each track's
chosen dummy once, so both are reported.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from g2face.io.video import probe_video, read_frames
from g2face.payload import Secret
from g2face.pipeline.g2face import G2FacePipeline
from g2face.video.clips import VideoAnonymizer


@dataclass(frozen=True)
class VideoBench:
    clip: str
    size: tuple[int, int]  # (width, height) the frames were processed at
    scaled_from: tuple[int, int] | None  # the clip's own size, when --height rescaled it
    frames: int
    face_frames: int  # faces anonymized, summed over frames
    search_frames: int  # frames where a new track ran the dummy search, or a track searched again
    seconds: float
    steady_seconds: float  # over the frames without a search

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    @property
    def seconds_per_face_frame(self) -> float:
        return self.seconds / self.face_frames if self.face_frames else float("nan")

    def to_dict(self) -> dict:
        return asdict(self) | {
            "frames_per_second": round(self.frames_per_second, 3),
            "seconds_per_face_frame": round(self.seconds_per_face_frame, 3),
        }


def bench_video(
    pipeline: G2FacePipeline,
    clip: str | Path,
    secret: Secret,
    *,
    limit: int | None = None,
    height: int | None = None,
) -> VideoBench:
    """Time the first `limit` frames of `clip` (all by default), resized to `height` pixels high
    (aspect kept, even width) when given."""
    info = probe_video(clip)
    anonymizer = VideoAnonymizer(pipeline, secret, rate=float(info.rate or 25))
    frames = face_frames = search_frames = 0
    seconds = steady = 0.0
    size = scaled_from = None
    for frame in read_frames(clip, limit=limit):
        rgb = frame.rgb
        if height is not None and rgb.shape[0] != height:
            scaled_from = (rgb.shape[1], rgb.shape[0])
            width = 2 * round(rgb.shape[1] * height / rgb.shape[0] / 2)
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        size = (rgb.shape[1], rgb.shape[0])
        known = set(anonymizer.dummy_seeds)
        start = time.perf_counter()
        result = anonymizer.process(np.ascontiguousarray(rgb), frame.index)
        took = time.perf_counter() - start
        # a new track's search, or a re-search of a track whose dummy stayed too close
        searched = any(k not in known for k in anonymizer.dummy_seeds) or bool(result.re_searches)
        frames += 1
        face_frames += sum(f["state"] != "lost" for f in result.faces)
        search_frames += searched
        seconds += took
        steady += 0.0 if searched else took
    if size is None:
        raise ValueError(f"{clip}: no frame decoded")
    return VideoBench(str(clip), size, scaled_from, frames, face_frames, search_frames, seconds, steady)
