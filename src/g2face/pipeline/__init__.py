"""Public entry points: detect → align → transform → paste back, on images and on many files.

`FacePipeline` and `process_files` need torch; they are imported on first use so that detection-only
callers (e.g. `g2face detect`) start quickly.
"""

from g2face.pipeline.batch import BatchReport, FileOutcome, process_each
from g2face.pipeline.detect import DetectionReport, NoFaceError, detect_files, detections_json

_TORCH_ENTRY_POINTS = ("CropTransform", "FacePipeline", "ProcessedFile", "process_files")


def __getattr__(name: str):
    if name in _TORCH_ENTRY_POINTS:
        from g2face.pipeline import faces

        return getattr(faces, name)
    raise AttributeError(f"module 'g2face.pipeline' has no attribute {name!r}")


__all__ = [
    "BatchReport",
    "CropTransform",
    "DetectionReport",
    "FacePipeline",
    "FileOutcome",
    "NoFaceError",
    "ProcessedFile",
    "detect_files",
    "detections_json",
    "process_each",
    "process_files",
]
