"""One uploaded photo anonymized or recovered: temp files that never outlive the call, the same
one-line messages as the CLI, results as encoded bytes (the download keeps its recovery container).
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import numpy as np
from PIL import Image

from g2face.io import printable, read_image, write_image
from g2face.payload import Secret
from g2face.payload.carriers import WrongSecretError
from g2face.pipeline.detect import NoFaceError
from g2face.pipeline.g2face import G2FacePipeline
from g2face.types import InputError

METHODS = ("g2face", "blur", "pixelate", "box")
OUTPUT_FORMATS = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
PREVIEW_SIDE = 1600  # longest side of the before/after pictures the page shows (downloads are full size)


class UploadTooLargeError(InputError):
    """An upload over the server's byte or pixel limit."""


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int
    max_pixels: int


@dataclass(frozen=True)
class Upload:
    """What one request brought: the photo's bytes stay in memory until the worker takes them."""

    name: str  # the file's base name as the browser sent it, made printable
    data: bytes
    action: str  # "anonymize" or "recover"
    secret: Secret
    method: str = "g2face"
    output_format: str = "png"


@dataclass(frozen=True)
class FaceReport:
    box: list[float] | None  # x0, y0, x1, y1 in the photo's pixels; None for a container region
    status: str  # anonymize: "anonymized"; recover: "exact", "identity", "wrong password", "no payload"
    detail: str = ""


@dataclass(frozen=True)
class Outcome:
    """A processed photo. `download` is None when there is nothing to give back (recovery that did
    not verify); `message` then says why."""

    name: str
    width: int
    height: int
    faces: list[FaceReport]
    before: bytes  # JPEG previews for the page
    after: bytes
    download: bytes | None
    download_name: str
    media_type: str
    message: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.before) + len(self.after) + len(self.download or b"")


def display_name(raw: str | None) -> str:
    """The base name of an uploaded file as something safe to show and to reuse in a download name."""
    name = PurePath((raw or "").replace("\\", "/")).name.strip()
    return printable(name) or "photo"


def process(
    upload: Upload, pipelines: Callable[[str], G2FacePipeline], limits: Limits, temp_root: Path | None
):
    """Anonymize or recover one upload. Bad input raises an `InputError` whose one-line message
    names the upload (as the CLI's name the file); every temp file is gone when this returns."""
    if len(upload.data) > limits.max_upload_bytes:
        raise UploadTooLargeError(too_large_message(upload.name, len(upload.data), limits.max_upload_bytes))
    with tempfile.TemporaryDirectory(prefix="g2face-web-", dir=temp_root) as folder:
        source = Path(folder) / f"upload{PurePath(upload.name).suffix.lower()[:8]}"
        source.write_bytes(upload.data)
        try:
            _check_pixels(source, limits.max_pixels)
            loaded = read_image(source)
        except InputError as e:
            raise type(e)(str(e).replace(str(source), upload.name)) from None
        if upload.action == "anonymize":
            return _anonymize(upload, loaded, pipelines(upload.method), Path(folder))
        return _recover(upload, loaded, pipelines("g2face"), Path(folder))


def too_large_message(name: str, size: int, limit: int) -> str:
    return (
        f"{name}: {size / 2**20:.1f} MB is over this server's upload limit of {limit / 2**20:g} MB; "
        "downscale or re-export it (or start `g2face serve --max-upload-mb N`)"
    )


def _check_pixels(path: Path, max_pixels: int) -> None:
    """Refuse an image over the pixel limit from its header, before decoding it."""
    try:
        with Image.open(path) as im:
            width, height = im.size
    except Exception:  # noqa: BLE001 - read_image gives the one-line message for a bad file
        return
    if width * height > max_pixels:
        raise UploadTooLargeError(
            f"{path}: {width}×{height} ({width * height / 1e6:.1f} MP) is over this server's limit of "
            f"{max_pixels / 1e6:g} MP; downscale it (or start `g2face serve --max-pixels N`)"
        )


def _anonymize(upload: Upload, loaded, pipeline: G2FacePipeline, folder: Path) -> Outcome:
    result = pipeline.anonymize(loaded.rgb, upload.secret)
    if not result.faces:
        raise NoFaceError(f"{upload.name}: no face found; nothing to anonymize")
    download_name = f"{PurePath(upload.name).stem}.anonymized.{upload.output_format}"
    data = _encode(folder / f"result.{upload.output_format}", result.image, loaded.alpha, result.container)
    faces = [
        FaceReport(
            [round(v, 1) for v in f.detection.box],
            "anonymized",
            "; ".join(
                (["carries its identity in its pixels"] if f.pixel_payload else [])
                + ([f"check: {', '.join(f.shortfalls)}"] if f.shortfalls else [])
            ),
        )
        for f in result.faces
    ]
    warnings = [] if result.container else ["no recovery container was written"]
    return Outcome(
        upload.name,
        loaded.rgb.shape[1],
        loaded.rgb.shape[0],
        faces,
        _preview(loaded.rgb),
        _preview(result.image),
        data,
        download_name,
        OUTPUT_FORMATS[upload.output_format],
        warnings=warnings,
    )


def _recover(upload: Upload, loaded, pipeline: G2FacePipeline, folder: Path) -> Outcome:
    result = pipeline.recover(loaded.rgb, upload.secret, container=loaded.block)
    wrong_secret = isinstance(result.container_error, WrongSecretError)
    if not result.faces:
        raise NoFaceError(f"{upload.name}: no face found; nothing to recover")
    if not wrong_secret and all(f.error is not None for f in result.faces):
        note = f" (container: {result.container_error})" if result.container_error else ""
        raise InputError(f"{upload.name}: {result.faces[0].error}{note}; nothing recovered")
    faces = [_recovered_face(f, wrong_secret) for f in result.faces]
    download_name = f"{PurePath(upload.name).stem}.recovered.{upload.output_format}"
    message, data = "", None
    if wrong_secret or not result.verified:
        message = (
            f"{upload.name}: recovery not verified (wrong password or key, or a damaged image); "
            "nothing to download"
        )
    else:
        data = _encode(folder / f"result.{upload.output_format}", result.image, loaded.alpha, None)
    return Outcome(
        upload.name,
        loaded.rgb.shape[1],
        loaded.rgb.shape[0],
        faces,
        _preview(loaded.rgb),
        _preview(result.image),
        data,
        download_name,
        OUTPUT_FORMATS[upload.output_format],
        message,
    )


def _recovered_face(face, wrong_secret: bool) -> FaceReport:
    box = None if face.detection is None else [round(v, 1) for v in face.detection.box]
    if face.path == "exact":
        return FaceReport(box, "exact", "original pixels from the file's recovery container")
    if face.path == "identity":
        return FaceReport(box, "identity", "original identity rendered back from the in-pixel payload")
    if face.error is not None:
        return FaceReport(box, "no payload", str(face.error))
    detail = "the recovery container did not open" if wrong_secret else "the payload did not verify"
    return FaceReport(box, "wrong password", detail)


def _encode(path: Path, rgb: np.ndarray, alpha: np.ndarray | None, block: bytes | None) -> bytes:
    """The file as `g2face anonymize` writes it (metadata-free, with the container block)."""
    written = write_image(path, rgb, alpha=alpha, block=block)
    try:
        return written.read_bytes()
    finally:
        written.unlink()


def _preview(rgb: np.ndarray) -> bytes:
    image = Image.fromarray(rgb)
    image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=88)
    return buffer.getvalue()
