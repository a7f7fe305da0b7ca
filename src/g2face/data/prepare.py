"""`g2face data prepare`: detect, align and cache 256 px face crops with a manifest.

Layout of a prepared dataset folder:
    dataset.json      what was prepared from where, crop size, whether the source was pre-aligned
    manifest.jsonl    one `CropRecord` per line, appended as crops are written
    crops/<hash of the source path>_<face>.png

Preparation resumes: sources already listed in the manifest are skipped, so an interrupted run
continues where it stopped. A destination that holds anything but such a dataset is refused
(unless `force`), as is one inside the source (its crops would be read back as sources).
Detection is injected (a callable image -> detections) because the data layer sits beside, not
above, `g2face.detection`; so is image reading (here, not `g2face.io`): any source that cannot be
decoded is counted and reported in one line, never a traceback.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import secrets
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from g2face.align import align_face, transform_points
from g2face.hub import cache_dir
from g2face.types import FaceDetection, InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MANIFEST = "manifest.jsonl"
HEADER = "dataset.json"
CROP_SIZES = range(32, 1025)
"""Crop sides accepted, in pixels."""

Detector = Callable[[np.ndarray], Sequence[FaceDetection]]


@dataclass(frozen=True)
class CropRecord:
    """One cached crop: its file (relative to the dataset folder), where it came from, the index of
    the face in that source, its identity label when the source has one, the detector score and
    the 5 landmarks in crop pixels (None for pre-aligned sources, which were not detected)."""

    crop: str
    source: str
    face: int
    identity: str | None
    score: float | None
    landmarks: list[list[float]] | None


@dataclass(frozen=True)
class PrepareReport:
    folder: Path
    sources: int
    skipped: int
    without_face: int
    unreadable: int
    crops: int
    problems: tuple[str, ...] = field(default=())
    """One line per unreadable source, naming it and why."""


def default_dataset_dir(source: Path) -> Path:
    """Where a dataset prepared from `source` is cached when no destination is given."""
    return cache_dir() / "datasets" / Path(source).resolve().name


def list_images(source: Path) -> list[Path]:
    return sorted(p for p in Path(source).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def identity_labels(source: Path, images: list[Path]) -> dict[str, str]:
    """Identity per image: from `identities.csv` (`file,identity`, CelebA style) when the source
    has one, else the sub-folder name when images sit in per-person folders (LFW style)."""
    table = Path(source) / "identities.csv"
    if table.is_file():
        with open(table, newline="") as f:
            return {row["file"]: row["identity"] for row in csv.DictReader(f)}
    labels = {}
    for path in images:
        rel = path.relative_to(source)
        if len(rel.parts) > 1:
            labels[rel.as_posix()] = rel.parts[-2]
    return labels


def read_manifest(folder: Path) -> list[CropRecord]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no {MANIFEST} in {folder}: run `g2face data prepare` first")
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(CropRecord(**json.loads(line)))
            except (ValueError, TypeError):
                raise ValueError(
                    f"{path}: line {number} is not a crop record; the manifest is damaged"
                ) from None
    return records


def _drop_partial_last_line(path: Path) -> None:
    """A run killed while appending leaves a partial last line: drop it (that source is simply
    prepared again), so the next append starts on a line of its own."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def _read_rgb(path: Path) -> np.ndarray:
    """Upright RGB pixels of a source; a source that cannot be decoded raises a one-line
    `InputError`. Damaged EXIF only loses the rotation (the pixels are fine)."""
    try:
        with Image.open(path) as image:
            image.load()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    image = ImageOps.exif_transpose(image)
            except Exception:  # noqa: BLE001 - damaged metadata raises almost anything
                pass
            return np.asarray(image.convert("RGB"))
    except Image.DecompressionBombError:
        raise InputError(f"{path}: too many pixels (a decompression bomb?); skipped") from None
    except Exception as e:  # noqa: BLE001 - a decoder fed a malformed file may raise anything
        raise InputError(f"{path}: cannot decode ({type(e).__name__}: {e}); skipped") from None


def _save_crop(crop: np.ndarray, path: Path) -> None:
    """Write a crop through a temporary name, so a killed run never leaves half a PNG."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        Image.fromarray(crop).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _check_destination(source: Path, folder: Path, header: dict, force: bool) -> None:
    if folder.resolve().is_relative_to(source.resolve()):
        raise ValueError(
            f"destination {folder} is inside the source {source}: its crops would be read as sources "
            "on the next run; choose a folder outside it"
        )
    header_path = folder / HEADER
    if header_path.is_file():
        try:
            previous = json.loads(header_path.read_text())
        except ValueError:
            previous = None
        if not isinstance(previous, dict) or {k: previous.get(k) for k in header} != header:
            raise ValueError(
                f"{folder} holds a dataset prepared differently ({previous}); choose another folder"
            )
    elif folder.is_dir() and any(folder.iterdir()) and not force:
        raise ValueError(
            f"{folder} exists and is not a g2face dataset; choose an empty or new folder (or --force)"
        )


def _centre_square(rgb: np.ndarray, size: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = Image.fromarray(rgb[top : top + side, left : left + side])
    return np.asarray(square.resize((size, size), Image.LANCZOS) if side != size else square)


def _faces(
    rgb: np.ndarray, detector: Detector | None, size: int, min_face: float, max_faces: int
) -> Iterator[tuple[np.ndarray, float | None, list[list[float]] | None]]:
    """(crop, detector score, 5 landmarks in crop pixels) for each face kept from one image."""
    if detector is None:
        yield _centre_square(rgb, size), None, None
        return
    faces = [d for d in detector(rgb) if max(d.width, d.height) >= min_face]
    faces.sort(key=lambda d: d.width * d.height, reverse=True)
    for detection in faces[:max_faces]:
        aligned = align_face(rgb, detection, size)
        landmarks = transform_points(detection.points, aligned.matrix)
        yield aligned.crop, round(detection.score, 4), np.round(landmarks, 2).tolist()


def prepare_dataset(
    source: Path,
    destination: Path | None = None,
    *,
    detector: Detector | None = None,
    size: int = 256,
    min_face: float = 48.0,
    max_faces: int = 1,
    limit: int | None = None,
    progress: bool = True,
    force: bool = False,
) -> PrepareReport:
    """Cache aligned crops of the faces in every image under `source`.

    With a `detector`, each image's largest `max_faces` faces (box side >= `min_face` px) are
    aligned to the FFHQ framing; without one the source is taken as already aligned and each image
    is centre-cropped to a square and resized to `size` (one of `CROP_SIZES`). A `destination`
    that holds files but no dataset is refused unless `force`; bad settings raise `ValueError`.
    """
    if size not in CROP_SIZES:
        raise ValueError(f"crop size {size} px is outside {CROP_SIZES.start}..{CROP_SIZES.stop - 1}")
    if max_faces < 1 or min_face < 0 or (limit is not None and limit < 0):
        raise ValueError("max_faces must be >= 1, min_face and limit >= 0")
    source = Path(source)
    folder = Path(destination) if destination is not None else default_dataset_dir(source)
    header = {"source": str(source.resolve()), "size": size, "aligned": detector is None}
    _check_destination(source, folder, header, force)
    (folder / "crops").mkdir(parents=True, exist_ok=True)
    header_path = folder / HEADER
    if not header_path.is_file():
        header_path.write_text(json.dumps(header, indent=1) + "\n")

    _drop_partial_last_line(folder / MANIFEST)
    done = {r.source for r in read_manifest(folder)} if (folder / MANIFEST).is_file() else set()
    images = list_images(source)[:limit]
    labels = identity_labels(source, images)
    counts = {"skipped": 0, "without_face": 0, "unreadable": 0, "crops": 0}
    problems: list[str] = []
    with open(folder / MANIFEST, "a") as manifest:
        for path in tqdm(images, desc="prepare", unit="img", disable=not progress):
            rel = path.relative_to(source).as_posix()
            stem = hashlib.sha1(rel.encode()).hexdigest()[:16]  # stable across runs and folder changes
            if rel in done:
                counts["skipped"] += 1
                continue
            try:
                rgb = _read_rgb(path)
            except InputError as e:
                counts["unreadable"] += 1
                problems.append(str(e))
                continue
            faces = list(_faces(rgb, detector, size, min_face, max_faces))
            for face, (crop, score, landmarks) in enumerate(faces):
                name = f"crops/{stem}_{face}.png"
                _save_crop(crop, folder / name)
                record = CropRecord(name, rel, face, labels.get(rel), score, landmarks)
                manifest.write(json.dumps(asdict(record)) + "\n")
            counts["crops"] += len(faces)
            counts["without_face"] += not faces
            manifest.flush()
    return PrepareReport(folder=folder, sources=len(images), problems=tuple(problems), **counts)
