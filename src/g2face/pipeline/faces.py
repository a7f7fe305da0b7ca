"""The face pipeline: detect → align → transform a batch of crops → paste back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from g2face.align import DEFAULT_CROP_SIZE, align_face, blend_faces, face_mask
from g2face.detection import FaceDetector
from g2face.io import ExpandedInputs, InputFile, read_image, write_image
from g2face.nn.crops import crops_to_tensor, tensor_to_crops
from g2face.pipeline.batch import (
    BatchReport,
    FileOutcome,
    check_output_target,
    free_output_target,
    process_each,
)
from g2face.pipeline.detect import NoFaceError
from g2face.types import FaceDetection, FaceRecord, ProcessedImage

CropTransform = Callable[[Tensor], "Tensor | tuple[Tensor, np.ndarray | None]"]
"""Aligned crops [B, 3, S, S] in [-1, 1] on the pipeline's device -> processed crops, same shape,
optionally with per-face soft masks float32 [B, S, S] saying where each replaces the original
(without masks: the default face ellipse)."""


class FacePipeline:
    """Applies a crop transform to every face of an image and composites the results back.

    Holds no state between calls beyond its configuration, so one instance can serve many images.
    """

    def __init__(
        self,
        detector: FaceDetector,
        transform: CropTransform,
        *,
        crop_size: int = DEFAULT_CROP_SIZE,
        batch_size: int = 8,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.detector = detector
        self.transform = transform
        self.crop_size = crop_size
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.dtype = dtype

    def process(self, image: np.ndarray, detections: Sequence[FaceDetection] | None = None) -> ProcessedImage:
        """Process every face of an RGB uint8 image (detected here unless `detections` are given),
        pasting them back in detection order."""
        detections = self.detector.detect(image) if detections is None else detections
        aligned = [align_face(image, d, self.crop_size) for d in detections]
        outputs: list[np.ndarray] = []
        masks: list[np.ndarray] = []
        default = face_mask(self.crop_size)  # for transforms that return no masks of their own
        for start in range(0, len(aligned), self.batch_size):
            chunk = aligned[start : start + self.batch_size]
            batch = crops_to_tensor([a.crop for a in chunk], device=self.device, dtype=self.dtype)
            with torch.inference_mode():
                processed = self.transform(batch)
            chunk_masks = None
            if isinstance(processed, tuple):
                processed, chunk_masks = processed
            if processed.shape != batch.shape:
                raise ValueError(
                    f"transform returned {tuple(processed.shape)} for input {tuple(batch.shape)}"
                )
            outputs.extend(tensor_to_crops(processed))
            masks.extend(chunk_masks if chunk_masks is not None else [default] * len(chunk))
        composed, footprints = blend_faces(image, outputs, aligned, masks)
        records = tuple(
            FaceRecord(i, a, out, m, f)
            for i, (a, out, m, f) in enumerate(zip(aligned, outputs, masks, footprints, strict=True))
        )
        return ProcessedImage(composed, records)


@dataclass(frozen=True)
class ProcessedFile:
    input: Path
    output: Path
    faces: tuple[FaceDetection, ...]


def process_files(
    pipeline: FacePipeline,
    inputs: ExpandedInputs,
    output: Path,
    *,
    suffix: str | None = None,
    force: bool = False,
    require_face: bool = True,
    on_outcome: Callable[[FileOutcome[ProcessedFile]], None] | None = None,
) -> BatchReport[ProcessedFile]:
    """Run the pipeline on every input and write each result (alpha kept, in sRGB, no metadata) to
    `output`: that file for a single input named like an image, else a folder mirroring the input
    tree, optionally with another `suffix`. Images without a face fail unless `require_face` is
    False; an existing output fails its input before any work unless `force`; failures never stop
    the other inputs."""
    check_output_target(output, inputs, suffix)

    def handle(item: InputFile) -> ProcessedFile:
        target = free_output_target(output, item, inputs, suffix, force=force)
        loaded = read_image(item.path)
        result = pipeline.process(loaded.rgb)
        if require_face and not result.faces:
            raise NoFaceError(f"{item.path}: no face found; nothing written")
        written = write_image(target, result.image, alpha=loaded.alpha, protected=inputs.paths, force=force)
        return ProcessedFile(item.path, written, tuple(r.detection for r in result.faces))

    return process_each(inputs, handle, on_outcome)
