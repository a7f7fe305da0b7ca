"""Detection over files: faces per image as JSON-ready reports, optionally drawn (no torch needed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from g2face.detection import FaceDetector, draw_detections
from g2face.io import ExpandedInputs, InputFile, read_image, write_image
from g2face.pipeline.batch import (
    BatchReport,
    FileOutcome,
    check_output_target,
    free_output_target,
    process_each,
)
from g2face.types import FaceDetection, InputError


class NoFaceError(InputError):
    """An image in which the detector found no face."""


@dataclass(frozen=True)
class DetectionReport:
    path: Path
    width: int
    height: int
    faces: tuple[FaceDetection, ...]
    drawing: Path | None = None

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "width": self.width,
            "height": self.height,
            "faces": [f.to_dict() for f in self.faces],
            **({"drawing": str(self.drawing)} if self.drawing else {}),
        }


def detect_files(
    detector: FaceDetector,
    inputs: ExpandedInputs,
    *,
    draw: Path | None = None,
    force: bool = False,
    on_outcome: Callable[[FileOutcome[DetectionReport]], None] | None = None,
) -> BatchReport[DetectionReport]:
    """Detect faces in every input. An image without faces is a failure (`NoFaceError`).

    With `draw`, each image is written with its detections drawn: to `draw` itself for a single
    input named like an image file, else mirrored under the folder `draw`. Existing files (inputs
    included) are never overwritten unless `force`: such an input fails before it is read. A
    file-like `draw` with several inputs raises `ValueError` upfront.
    """
    if draw is not None:
        check_output_target(draw, inputs)

    def handle(item: InputFile) -> DetectionReport:
        drawing_path = None if draw is None else free_output_target(draw, item, inputs, force=force)
        loaded = read_image(item.path)
        faces = tuple(detector.detect(loaded.rgb))
        if not faces:
            raise NoFaceError(f"{item.path}: no face found; faces smaller than about 10 px are not detected")
        drawing = None
        if drawing_path is not None:
            drawing = write_image(
                drawing_path,
                draw_detections(loaded.rgb, faces),
                protected=inputs.paths,
                force=force,
            )
        height, width = loaded.rgb.shape[:2]
        return DetectionReport(item.path, width, height, faces, drawing)

    return process_each(inputs, handle, on_outcome)


def detections_json(report: BatchReport[DetectionReport], notices: tuple[str, ...] = ()) -> dict:
    """The JSON document `g2face detect --json` writes: one entry per image, the failures and the
    notices (e.g. files of an unreadable format that a folder scan left out)."""
    return {
        "images": [o.result.to_dict() for o in report.succeeded],
        "failed": [{"input": o.source, "error": o.error} for o in report.failed],
        **({"notices": list(notices)} if notices else {}),
    }
