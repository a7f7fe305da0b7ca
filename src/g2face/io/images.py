"""Reading any common image into upright RGB uint8, and writing images atomically without metadata."""

from __future__ import annotations

import io
import json
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from g2face.io.blocks import BLOCK_FORMATS, add_block, find_block
from g2face.types import InputError

IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".bmp",
        ".tif",
        ".tiff",
        ".webp",
        ".gif",
        ".ppm",
        ".pgm",
        ".pnm",
    }
)
"""Suffixes picked up when a folder or glob is expanded (a file named explicitly may have any)."""

_ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF"})
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})


# leading bytes of formats we read: a file that starts like one but does not decode is damaged,
# not of an unknown format
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


class ImageReadError(InputError):
    """An input that is missing, empty, truncated, corrupt or not an image."""


class ImageWriteError(InputError):
    """An output that may not or cannot be written (protected input, unknown format)."""


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """An image as g2face works on it: upright RGB uint8 [H, W, 3].

    `alpha` ([H, W] uint8) is kept apart, or None when the image is opaque. `icc_profile` is the
    colour profile, for callers that want colours managed in the output; `block` the g2face block
    (the recovery container, `g2face.io.blocks`) of a PNG, JPEG or WebP file, or None. No other
    metadata is kept.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    path: Path
    format: str
    icc_profile: bytes | None = None
    block: bytes | None = None


def _to_rgb(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # Pillow's convert() clips high-bit-depth grey at 255 instead of rescaling it
        grey = np.asarray(im, dtype=np.float64)
        grey = grey / 257 if grey.max() > 255 else grey
        return np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8)[:, :, None], 3, axis=2), None
    has_alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    if not has_alpha:
        return np.asarray(im.convert("RGB")), None
    rgba = np.asarray(im.convert("RGBA"))
    alpha = rgba[:, :, 3]
    return np.ascontiguousarray(rgba[:, :, :3]), None if alpha.min() == 255 else np.ascontiguousarray(alpha)


def read_image(path: str | Path) -> LoadedImage:
    """Decode an image file, honouring EXIF orientation; problems raise a one-line `ImageReadError`."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, not an image")
    try:
        if path.stat().st_size == 0:
            raise ImageReadError(f"{path}: empty file (0 bytes); re-export or re-download it")
        with Image.open(path) as im:
            im.load()
            fmt = im.format or path.suffix.lstrip(".").upper()
            icc = im.info.get("icc_profile")
            upright = ImageOps.exif_transpose(im)
            rgb, alpha = _to_rgb(upright)
        block = find_block(path.read_bytes()) if fmt in BLOCK_FORMATS | _JPEG_FORMATS else None
    except UnidentifiedImageError:
        with open(path, "rb") as f:
            damaged = f.read(8).startswith(_MAGIC)
        if damaged:
            raise ImageReadError(
                f"{path}: cannot decode; the file is truncated or corrupt, re-export it"
            ) from None
        raise ImageReadError(
            f"{path}: not an image format g2face can read; convert it to PNG or JPEG"
        ) from None
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"{path}: {e}; downscale it first") from None
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied; check the file's permissions") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageReadError(
            f"{path}: cannot decode ({e}); the file is truncated or corrupt, re-export or re-download it"
        ) from None
    if rgb.size == 0:
        raise ImageReadError(f"{path}: image has no pixels")
    return LoadedImage(rgb=rgb, alpha=alpha, path=path, format=fmt, icc_profile=icc, block=block)


def output_format(path: str | Path) -> str:
    """Pillow format name for an output path's suffix; unknown or read-only suffixes raise."""
    suffix = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        raise ImageWriteError(
            f"{path}: cannot write '{suffix or 'no suffix'}' images; use .png, .jpg or .webp"
        )
    return fmt


def _check_not_input(path: Path, protected: Iterable[str | Path], force: bool) -> None:
    if force or not path.exists():
        return
    for p in protected:
        if Path(p).exists() and os.path.samefile(path, p):
            raise ImageWriteError(
                f"{path}: refusing to overwrite an input; choose another output or use --force"
            )


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write through a temporary file in the same folder, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 lets the umask decide the final permissions, as for any new file
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_image(
    path: str | Path,
    rgb: np.ndarray,
    *,
    alpha: np.ndarray | None = None,
    icc_profile: bytes | None = None,
    protected: Iterable[str | Path] = (),
    force: bool = False,
    quality: int = 95,
    block: bytes | None = None,
) -> Path:
    """Write RGB uint8 [H, W, 3] (plus optional alpha) atomically, in the format of the suffix.

    No EXIF, XMP, GPS or comments are written; `icc_profile` only when given; `block` (the recovery
    container) is spliced into the encoded file (PNG, JPEG or WebP only). A path that is one
    of `protected` (the run's inputs) is refused unless `force`.
    """
    path = Path(path)
    fmt = output_format(path)
    if block is not None and fmt not in BLOCK_FORMATS:
        raise ImageWriteError(
            f"{path}: {fmt} files cannot carry the recovery container; use .png, .jpg or .webp"
        )
    _check_not_input(path, protected, force)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected RGB uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
    image = Image.fromarray(rgb)
    if alpha is not None and fmt in _ALPHA_FORMATS:
        image = Image.fromarray(np.dstack([rgb, alpha]))
    options: dict = {"icc_profile": icc_profile} if icc_profile else {}
    if fmt in _JPEG_FORMATS:
        options |= {"quality": quality, "subsampling": 0}  # 4:4:4 keeps faces' fine colour detail
    elif fmt == "WEBP":
        options |= {"quality": quality}
    if block is None:
        return _atomic_write(path, lambda f: image.save(f, format=fmt, **options))
    encoded = io.BytesIO()
    image.save(encoded, format=fmt, **options)
    with_block = add_block(encoded.getvalue(), fmt, block)
    return _atomic_write(path, lambda f: f.write(with_block))


def write_json(
    path: str | Path, data: object, *, protected: Iterable[str | Path] = (), force: bool = False
) -> Path:
    """Write `data` as indented UTF-8 JSON atomically; same input protection as `write_image`."""
    path = Path(path)
    _check_not_input(path, protected, force)
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return _atomic_write(path, lambda f: f.write(text.encode()))
