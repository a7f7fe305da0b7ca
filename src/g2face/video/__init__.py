"""Video clips: tracked, fail-closed anonymization with one fake identity per person, and recovery
from the per-frame exact-recovery sidecar (docs/video.md)."""

from g2face.video.clips import (
    AnonymizedFrame,
    DummyPolicy,
    FailClosedPolicy,
    VideoAnonymizer,
    VideoReport,
    anonymize_video,
    recover_video,
)
from g2face.video.tracking import FaceTracker, OneEuroFilter, Track

__all__ = [
    "AnonymizedFrame",
    "DummyPolicy",
    "FailClosedPolicy",
    "FaceTracker",
    "OneEuroFilter",
    "Track",
    "VideoAnonymizer",
    "VideoReport",
    "anonymize_video",
    "recover_video",
]
