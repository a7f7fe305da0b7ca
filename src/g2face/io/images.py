"""Reading any common image into upright sRGB uint8, and writing images atomically without metadata."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import secrets
import signal
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError, features

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
    | ({".avif"} if features.check("avif") else set())
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
    """An output that may not or cannot be written (protected input, unknown format, a folder that
    is read-only or full)."""


class OutputExistsError(ImageWriteError):
    """An output file that exists already and may not be overwritten (no `force`)."""


class ImageMetadataWarning(UserWarning):
    """An image whose pixels decode but whose metadata (EXIF orientation, colour profile) is damaged
    and was ignored."""


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """An image as g2face works on it: upright sRGB uint8 [H, W, 3].

    `alpha` ([H, W] uint8) is kept apart, or None when the image is opaque. Colours are converted
    to sRGB on reading and no metadata is kept, so `icc_profile` is always None; it remains only so
    that callers which pass it on to `write_image` keep working (deprecated, to be removed).
    `block` is the g2face block (the recovery container, `g2face.io.blocks`) of a PNG, JPEG or
    WebP file, or None.
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


_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
# modes LittleCMS converts directly; others are first expanded to RGB(A)
_CMS_MODES = frozenset({"RGB", "RGBA", "CMYK", "L"})


def _metadata_warning(path: Path, what: str) -> None:
    warnings.warn(f"{path}: {what}", ImageMetadataWarning, stacklevel=3)


def _upright(im: Image.Image, path: Path) -> Image.Image:
    """Apply the EXIF orientation. Damaged EXIF makes Pillow raise almost anything (TypeError,
    struct.error, AttributeError…) although the pixels are fine: the image is then used as stored,
    with a warning, rather than refused — losing a rotation is better than losing the photo."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's multi-line notes on the same damage
            return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - any failure while parsing untrusted metadata
        _metadata_warning(
            path, "damaged EXIF data ignored; the image is used as stored (orientation may be wrong)"
        )
        return im


def _to_srgb(im: Image.Image, path: Path) -> Image.Image:
    """Convert pixels from the embedded colour profile to sRGB, so outputs need no profile (and an
    input's profile bytes can never travel into an output). A damaged profile is ignored."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return im
    has_alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    source = im if im.mode in _CMS_MODES else im.convert("RGBA" if has_alpha else "RGB")
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(
            source, profile, _SRGB, outputMode="RGBA" if source.mode == "RGBA" else "RGB"
        )
    except Exception:  # noqa: BLE001 - LittleCMS rejects damaged or mismatched profiles variously
        _metadata_warning(path, "damaged colour profile ignored; colours are read as sRGB")
        return im


def _bomb_message(path: Path) -> str:
    limit = Image.MAX_IMAGE_PIXELS or 0
    return (
        f"{path}: refusing to decode an image this large (over {2 * limit:,} pixels; it may be a "
        "decompression bomb); downscale it first"
    )


def read_image(path: str | Path) -> LoadedImage:
    """Decode an image file, honouring EXIF orientation and converting to sRGB; problems raise a
    one-line `ImageReadError`, damaged metadata an `ImageMetadataWarning`."""
    path = Path(path)
    try:
        if not path.exists():
            raise ImageReadError(f"{path}: no such file")
        if path.is_dir():
            raise ImageReadError(f"{path}: is a folder, not an image")
        if path.stat().st_size == 0:
            raise ImageReadError(f"{path}: empty file (0 bytes); re-export or re-download it")
        with Image.open(path) as im:
            im.load()
            fmt = im.format or path.suffix.lstrip(".").upper()
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                # nothing of the other frames reaches an output (so none of their faces leaks), but
                # a user must not think the whole animation or document was processed
                _metadata_warning(
                    path,
                    f"{frames} frames (animated or multi-page); only the first is read and written "
                    "(for an animation, convert it to a video and anonymize that)",
                )
            rgb, alpha = _to_rgb(_to_srgb(_upright(im, path), path))
        block = find_block(path.read_bytes()) if fmt in BLOCK_FORMATS | _JPEG_FORMATS else None
    except ImageReadError:
        raise
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
    except Image.DecompressionBombError:
        raise ImageReadError(_bomb_message(path)) from None
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied; check the file's permissions") from None
    except OSError as e:
        if e.errno is not None:  # the file system, not the decoder
            raise ImageReadError(f"{path}: cannot read ({e.strerror})") from None
        raise ImageReadError(
            f"{path}: cannot decode ({e}); the file is truncated or corrupt, re-export or re-download it"
        ) from None
    except Exception as e:  # noqa: BLE001 - a decoder fed a malformed file may raise anything
        raise ImageReadError(
            f"{path}: cannot decode ({type(e).__name__}: {e}); the file is truncated or corrupt, "
            "re-export or re-download it"
        ) from None
    if rgb.size == 0:
        raise ImageReadError(f"{path}: image has no pixels")
    return LoadedImage(rgb=rgb, alpha=alpha, path=path, format=fmt, block=block)


def output_format(path: str | Path) -> str:
    """Pillow format name for an output path's suffix; unknown or read-only suffixes raise."""
    suffix = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        raise ImageWriteError(
            f"{path}: cannot write '{suffix or 'no suffix'}' images; use .png, .jpg or .webp"
        )
    return fmt


def check_output_free(path: str | Path, *, protected: Iterable[str | Path] = (), force: bool = False) -> None:
    """Raise `OutputExistsError` when `path` exists and `force` is not given; the message says
    whether it is one of the run's inputs (`protected`). Call it before the expensive work on an
    input; `write_image` checks again, atomically."""
    path = Path(path)
    if force or not os.path.lexists(path):
        return
    for p in protected:
        with contextlib.suppress(OSError):
            if os.path.samefile(path, p):
                raise OutputExistsError(
                    f"{path}: refusing to overwrite an input; choose another output or use --force"
                )
    raise OutputExistsError(
        f"{path}: exists; refusing to overwrite it (use --force, or choose another output)"
    )


def _write_problem(path: Path, e: OSError, doing: str = "cannot write") -> ImageWriteError:
    hints = {
        errno.EEXIST: "a file stands where a folder is needed; choose another output",
        errno.ENOTDIR: "a file stands where a folder is needed; choose another output",
        errno.EACCES: "permission denied; check the folder's permissions or choose another output",
        errno.EPERM: "not permitted (a file or folder of another user?); choose another output",
        errno.ENOSPC: "no space left on the device; free some space or choose another output",
        errno.EDQUOT: "disk quota exceeded; free some space or choose another output",
        errno.EROFS: "read-only file system; choose another output",
    }
    return ImageWriteError(f"{path}: {doing}: {hints.get(e.errno, e.strerror or str(e))}")


class _Terminated(BaseException):
    """A termination signal arrived while a temporary file existed."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _terminated(signum: int, frame: object) -> None:
    raise _Terminated(signum)


_TERMINATING = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """While a temporary file exists, turn SIGTERM/SIGHUP (whose default is to die on the spot)
    into an exception, so the temporary file is removed; then die of the same signal, as the
    process would have. SIGINT already raises KeyboardInterrupt. Only the main thread may set
    handlers, and handlers the application installed are left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    replaced = {}
    for signum in _TERMINATING:
        if signal.getsignal(signum) is signal.SIG_DFL:
            replaced[signum] = signal.signal(signum, _terminated)
    try:
        yield
    except _Terminated as e:
        for signum, previous in replaced.items():
            signal.signal(signum, previous)
        replaced.clear()
        os.kill(os.getpid(), e.signum)
        raise SystemExit(128 + e.signum) from None  # not reached while the default handler kills
    finally:
        for signum, previous in replaced.items():
            signal.signal(signum, previous)


def _atomic_write(path: Path, write: Callable[[BinaryIO], object], *, replace: bool) -> Path:
    """Write through a temporary file in the same folder, fsync it, then move it into place:
    `replace` overwrites an existing file, else the move is a hard link that fails if the name
    exists (so a file created meanwhile is not clobbered either). OS errors become one-line
    `ImageWriteError`s, and the temporary file never survives an error or a termination signal."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _write_problem(path, e, f"cannot create the folder {path.parent}") from None
    try:
        with _signals_raise():
            # os.open with 0o666 lets the umask decide the final permissions, as for any new file
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                with os.fdopen(fd, "wb") as f:
                    write(f)
                    f.flush()
                    os.fsync(f.fileno())
                if replace:
                    os.replace(tmp, path)
                else:
                    _link_exclusive(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
    except FileExistsError:
        raise OutputExistsError(
            f"{path}: exists; refusing to overwrite it (use --force, or choose another output)"
        ) from None
    except OSError as e:
        raise _write_problem(path, e) from None
    return path


def _link_exclusive(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # file systems without hard links (FAT, some network mounts): the check is not atomic there
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
        os.replace(tmp, path)


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
    """Write sRGB uint8 [H, W, 3] (plus optional alpha) atomically, in the format of the suffix.

    No EXIF, XMP, GPS, comments or colour profile are written (`icc_profile` is deprecated and
    ignored: `read_image` already converts to sRGB); `block` (the recovery container) is spliced
    into the encoded file (PNG, JPEG or WebP only). An existing file is never overwritten unless
    `force`; the message names it as an input when it is one of `protected`.
    """
    path = Path(path)
    fmt = output_format(path)
    if icc_profile is not None:
        warnings.warn(
            "write_image(icc_profile=...) is ignored: outputs carry no colour profile (sRGB)",
            DeprecationWarning,
            stacklevel=2,
        )
    if block is not None and fmt not in BLOCK_FORMATS:
        raise ImageWriteError(
            f"{path}: {fmt} files cannot carry the recovery container; use .png, .jpg or .webp"
        )
    check_output_free(path, protected=protected, force=force)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected RGB uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
    image = Image.fromarray(rgb)
    if alpha is not None and fmt in _ALPHA_FORMATS:
        image = Image.fromarray(np.dstack([rgb, alpha]))
    options: dict = {}
    if fmt in _JPEG_FORMATS:
        options |= {"quality": quality, "subsampling": 0}  # 4:4:4 keeps faces' fine colour detail
    elif fmt == "WEBP":
        options |= {"quality": quality}
    if block is None:
        return _atomic_write(path, lambda f: image.save(f, format=fmt, **options), replace=force)
    encoded = io.BytesIO()
    image.save(encoded, format=fmt, **options)
    with_block = add_block(encoded.getvalue(), fmt, block)
    return _atomic_write(path, lambda f: f.write(with_block), replace=force)


def write_json(
    path: str | Path, data: object, *, protected: Iterable[str | Path] = (), force: bool = False
) -> Path:
    """Write `data` as indented UTF-8 JSON atomically; never over an existing file unless `force`.

    Strings holding undecodable file-name bytes (lone surrogates, Python's `surrogateescape`) are
    written as `\\udcXX` escapes, which JSON allows, instead of failing to encode."""
    path = Path(path)
    check_output_free(path, protected=protected, force=force)
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    try:
        encoded = text.encode()
    except UnicodeEncodeError:
        encoded = (json.dumps(data, indent=2) + "\n").encode()
    return _atomic_write(path, lambda f: f.write(encoded), replace=force)
