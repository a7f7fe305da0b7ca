"""Image-level recovery through a `G2FacePipeline`'s carriers, on whole photos.

What `g2face eval`'s recovery protocol measures for a method that recovers from the file rather
than from face crops (the shipped geometric-fusion default, and blur / pixelate / box around it):

* **exact container**: anonymize → write PNG / JPEG q95 / WebP with the container (`write_image`)
  → read the file → `recover` with the container → the face regions (every pixel a paste touched)
  identical to the original's;
* **in-pixel payload**: the anonymized pixels without the file's metadata (the container is gone),
  attacked (re-encoded, resized, cropped) → `recover` re-detects the face and reads its payload →
  verified; after strip + JPEG q90, the identity rendered back is scored against the person;
* **wrong password**: neither path may verify.

Attacks act on the bare pixels through Pillow, as an upload platform that strips metadata does.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from g2face.detection.base import iou
from g2face.evaluation.faces import transform_box
from g2face.io import read_image, write_image
from g2face.payload import Secret
from g2face.pipeline.g2face import AnonymizedImage, G2FacePipeline, RecoveredImage
from g2face.types import FaceDetection

Attack = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""RGB uint8 -> (attacked RGB uint8, 2×3 matrix from original to attacked pixel coordinates)."""

_IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _reencoded(fmt: str, **options) -> Attack:
    def attack(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, fmt, **options)
        return np.asarray(Image.open(buffer).convert("RGB")), _IDENTITY

    return attack


def _resize_png(factor: float) -> Attack:
    def attack(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        height, width = image.shape[:2]
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        resized = np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))
        sx, sy = size[0] / width, size[1] / height
        # pixel centres: p' + ½ = s (p + ½)
        return _reencoded("PNG")(resized)[0], np.array([[sx, 0, (sx - 1) / 2], [0, sy, (sy - 1) / 2]])

    return attack


def _crop_10_percent(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the middle 90 % of each side, from an odd offset (never on the old 8 px grid)."""
    height, width = image.shape[:2]
    top, left = round(0.05 * height) | 1, round(0.05 * width) | 1
    cropped = image[top : top + round(0.9 * height), left : left + round(0.9 * width)].copy()
    return cropped, np.array([[1.0, 0, -left], [0, 1.0, -top]])


ATTACKS: dict[str, Attack] = {
    "png": _reencoded("PNG"),
    "strip_jpeg90": _reencoded("JPEG", quality=90),
    "jpeg75": _reencoded("JPEG", quality=75),
    "resize0.75": _resize_png(0.75),
    "crop10": _crop_10_percent,
}
"""What happens to a published file whose metadata (and so the container) was stripped."""

CONTAINER_OUTPUTS = {"png": ".png", "jpeg95": ".jpg", "webp": ".webp"}
"""Output formats `write_image` stores the container in (JPEG at its default quality 95)."""

FACE_WIDTHS = (48, 64, 96, 128, 256)


def rescale_to_face_width(image: np.ndarray, face: FaceDetection, width: float) -> tuple[np.ndarray, float]:
    """The photo resized so that `face` is `width` px wide (area filter down, Lanczos up), and the factor."""
    factor = width / face.width
    size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
    resample = Image.BOX if factor < 1 else Image.LANCZOS
    return np.asarray(Image.fromarray(image).resize(size, resample)), factor


def scaled_detection(face: FaceDetection, factor: float) -> FaceDetection:
    points = tuple((x * factor, y * factor) for x, y in face.points)
    return FaceDetection(tuple(v * factor for v in face.box), points, face.score)


def container_exact(
    pipe: G2FacePipeline, original: np.ndarray, anon: AnonymizedImage, secret: Secret, suffix: str
) -> bool:
    """Write the output with its container, read the file back, recover: are the pixels under every
    face's footprint the original's, and was every face served by the container?"""
    if anon.container is None:
        return False
    with tempfile.TemporaryDirectory() as folder:
        path = write_image(Path(folder) / f"out{suffix}", anon.image, block=anon.container)
        loaded = read_image(path)
    back = pipe.recover(loaded.rgb, secret, container=loaded.block)
    if not back.faces or any(f.path != "exact" for f in back.faces):
        return False
    for face in anon.faces:
        x0, y0, x1, y1 = face.footprint.box
        mask = face.footprint.mask
        if not np.array_equal(back.image[y0:y1, x0:x1][mask], original[y0:y1, x0:x1][mask]):
            return False
    return True


@dataclass(frozen=True, eq=False)
class PixelRecovery:
    """One face's in-pixel recovery from an attacked image."""

    outcome: str
    """verified | unverified | no payload | not re-detected | not embedded"""
    recovered: RecoveredImage | None
    detection: FaceDetection | None  # the face as re-detected in the attacked image


def pixel_recovery(
    pipe: G2FacePipeline,
    anon: AnonymizedImage,
    face_index: int,
    secret: Secret,
    attack: str,
) -> PixelRecovery:
    """Strip the container, apply `attack`, recover the whole image (the pipeline re-detects and
    reads every face), and report the face that overlaps the anonymized one."""
    face = anon.faces[face_index]
    if not face.pixel_payload:
        return PixelRecovery("not embedded", None, None)
    attacked, to_attacked = ATTACKS[attack](anon.image)
    back = pipe.recover(attacked, secret)
    expected = transform_box(face.detection.box, to_attacked)
    found = [f for f in back.faces if f.detection is not None and iou(f.detection.box, expected) >= 0.3]
    if not found:
        return PixelRecovery("not re-detected", back, None)
    best = max(found, key=lambda f: iou(f.detection.box, expected))
    outcome = "no payload" if best.error is not None else ("verified" if best.verified else "unverified")
    return PixelRecovery(outcome, back, best.detection)


def carrier_record(
    pipe: G2FacePipeline,
    image: np.ndarray,
    face: FaceDetection,
    secret: Secret,
    wrong: Secret,
    crop: Callable[[np.ndarray], np.ndarray],
    attacks: tuple[str, ...] = tuple(ATTACKS),
) -> dict[str, np.ndarray]:
    """Everything the recovery protocol asks of one photo's main face: anonymize it through the
    pipeline, then per container output whether the regions come back exactly, per attack whether
    the in-pixel payload verifies, whether a wrong secret ever verifies (container, and in-pixel
    after strip + JPEG q90), and the recovered face (`crop` of the recovered image: the view the
    recognizers score) after the PNG (the payload read without channel errors) and after strip +
    JPEG q90 (the anonymized face where recovery failed: what a user is left with)."""
    original = image
    anon = pipe.anonymize(original, secret, detections=[face])
    record: dict[str, np.ndarray] = {"pixel_payload": np.array(int(anon.faces[0].pixel_payload))}
    for name, suffix in CONTAINER_OUTPUTS.items():
        record[f"container.{name}"] = np.array(int(container_exact(pipe, original, anon, secret, suffix)))
    wrong_back = pipe.recover(anon.image, wrong, container=anon.container)
    record["wrong.container"] = np.array(int(any(f.verified for f in wrong_back.faces)))
    for attack in attacks:
        found = pixel_recovery(pipe, anon, 0, secret, attack)
        record[f"pixel.{attack}"] = np.array(int(found.outcome == "verified"))
        if attack in ("png", "strip_jpeg90"):
            shown = found.recovered.image if found.outcome == "verified" else ATTACKS[attack](anon.image)[0]
            record[f"view.{attack}"] = crop(shown)
    attacked, _ = ATTACKS["strip_jpeg90"](anon.image)
    record["wrong.pixel"] = np.array(int(any(f.verified for f in pipe.recover(attacked, wrong).faces)))
    return record


def width_record(
    pipe: G2FacePipeline, image: np.ndarray, face: FaceDetection, secret: Secret, width: float
) -> dict[str, np.ndarray]:
    """The photo rescaled so that its face is `width` px wide, anonymized, stripped and re-encoded
    as JPEG q90: whether the in-pixel payload verifies (a face too small to carry it counts as not)."""
    scaled, factor = rescale_to_face_width(image, face, width)
    faces = [d for d in pipe.detector.detect(scaled) if iou(d.box, scaled_detection(face, factor).box) >= 0.5]
    if not faces:
        return {"detected": np.array(0), "verified": np.array(0)}
    anon = pipe.anonymize(scaled, secret, detections=[faces[0]])
    found = pixel_recovery(pipe, anon, 0, secret, "strip_jpeg90")
    return {
        "detected": np.array(1),
        "face_width": np.array(faces[0].width),
        "pixel_payload": np.array(int(anon.faces[0].pixel_payload)),
        "verified": np.array(int(found.outcome == "verified")),
    }
