"""The `.g2face` sidecar of an anonymized video: one exact-recovery container per frame, in one file.

Video containers do not all carry attachments (MP4 does not), and re-encoding would not keep an
in-frame block anyway, so the encrypted original regions travel next to the clip:

    magic "G2FV" | version (1 byte) | header length (u32 BE) | header (UTF-8 JSON)
    then per anonymized frame: frame index (u32 BE) | container length (u32 BE) | container bytes

Each container is sealed on its own (`g2face.payload.carriers.seal_regions`: salt, key check,
ChaCha20-Poly1305), so the file needs no encryption of its own; the JSON header holds only layout
facts (frame size, frame count) and a random clip id. Since version 2 each container is bound to
its place: it is sealed with `frame_binding(clip id, frame index)` as associated data, so a record
moved to another frame, reordered or taken from another clip's sidecar fails authentication
(version 1 sidecars, unbound, are still read). Reading builds an index (frame → offset) by
skipping from record to record, so a long clip's containers are never all in memory.
"""

from __future__ import annotations

import json
import secrets
import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

from g2face.io.images import _atomic_write, check_output_free
from g2face.types import InputError

MAGIC = b"G2FV"
VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: records not bound to their frame
CLIP_ID_BYTES = 16
_BINDING_LABEL = b"g2face video sidecar v2 frame"
SIDECAR_SUFFIX = ".g2face"
_LENGTH = struct.Struct(">I")
_RECORD = struct.Struct(">II")

T = TypeVar("T")


class SidecarError(InputError):
    """A sidecar that is missing, not a g2face sidecar, of an unknown version or truncated."""


def new_clip_id() -> bytes:
    """A random id for one anonymized clip's sidecar (its records are bound to it)."""
    return secrets.token_bytes(CLIP_ID_BYTES)


def frame_binding(clip_id: bytes, frame_index: int) -> bytes:
    """The associated data a frame's container is sealed and opened with (version 2)."""
    return _BINDING_LABEL + clip_id + _LENGTH.pack(frame_index)


def sidecar_path(video: str | Path) -> Path:
    """Where the sidecar of `video` goes by default: `<video>.g2face`."""
    video = Path(video)
    return video.with_name(video.name + SIDECAR_SUFFIX)


class SidecarWriter:
    def __init__(self, file: BinaryIO, header: dict, clip_id: bytes):
        """`clip_id`: the id the records' containers were sealed for (`frame_binding`)."""
        if len(clip_id) != CLIP_ID_BYTES:
            raise ValueError(f"clip id must be {CLIP_ID_BYTES} bytes, got {len(clip_id)}")
        encoded = json.dumps(header | {"clip_id": clip_id.hex()}, sort_keys=True).encode()
        file.write(MAGIC + bytes([VERSION]) + _LENGTH.pack(len(encoded)) + encoded)
        self._file = file
        self._last = -1
        self.records = 0

    def add(self, frame_index: int, container: bytes) -> None:
        """Append the container of `frame_index` (frames in increasing order, each at most once)."""
        if frame_index <= self._last:
            raise ValueError(f"frame {frame_index} after frame {self._last}: frames must increase")
        self._file.write(_RECORD.pack(frame_index, len(container)) + container)
        self._last = frame_index
        self.records += 1


def write_sidecar(
    path: str | Path,
    header: dict,
    clip_id: bytes,
    fill: Callable[[SidecarWriter], T],
    *,
    protected=(),
    force: bool = False,
) -> T:
    """Create the sidecar atomically: `fill(writer)` adds the records (containers sealed with
    `frame_binding(clip_id, frame)`); the file appears only if it returns, and `fill`'s result is
    returned."""
    path = Path(path)
    check_output_free(path, protected=protected, force=force)
    result: list[T] = []
    _atomic_write(path, lambda f: result.append(fill(SidecarWriter(f, header, clip_id))), replace=force)
    return result[0]


class SidecarReader:
    """Random access to a sidecar's containers by frame index; use as a context manager."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - closed by close() / __exit__
        except OSError as e:
            raise SidecarError(f"{self.path}: cannot open the sidecar ({e.strerror})") from None
        try:
            self.header = self._read_header()
            self._index = self._scan()
        except BaseException:
            self._file.close()
            raise

    def _fail(self, why: str) -> SidecarError:
        return SidecarError(f"{self.path}: {why}")

    def _read_header(self) -> dict:
        start = self._file.read(len(MAGIC) + 1 + _LENGTH.size)
        if len(start) < len(MAGIC) or not start.startswith(MAGIC):
            raise self._fail("not a g2face video sidecar (no G2FV magic)")
        if len(start) < len(MAGIC) + 1 + _LENGTH.size:
            raise self._fail("sidecar truncated in its header")
        self.version = start[len(MAGIC)]
        if self.version not in READABLE_VERSIONS:
            raise self._fail(
                f"sidecar version {self.version} is not supported (reads up to {VERSION}); upgrade g2face"
            )
        (length,) = _LENGTH.unpack(start[len(MAGIC) + 1 :])
        raw = self._file.read(length)
        try:
            header = json.loads(raw)
        except ValueError:
            raise self._fail("sidecar header damaged") from None
        if len(raw) != length or not isinstance(header, dict):
            raise self._fail("sidecar header damaged")
        if self.version >= 2:
            try:
                self.clip_id: bytes | None = bytes.fromhex(header["clip_id"])
            except (KeyError, TypeError, ValueError):
                raise self._fail("sidecar header damaged (no clip id)") from None
        else:
            self.clip_id = None
        return header

    def _scan(self) -> dict[int, tuple[int, int]]:
        index: dict[int, tuple[int, int]] = {}
        size = self.path.stat().st_size
        while True:
            raw = self._file.read(_RECORD.size)
            if not raw:
                return index
            if len(raw) < _RECORD.size:
                raise self._fail("sidecar truncated (partial record header)")
            frame, length = _RECORD.unpack(raw)
            offset = self._file.tell()
            if offset + length > size:
                raise self._fail(f"sidecar truncated in the record of frame {frame}")
            index[frame] = (offset, length)
            self._file.seek(length, 1)

    @property
    def frames(self) -> list[int]:
        return sorted(self._index)

    def binding(self, frame_index: int) -> bytes:
        """The associated data to open `frame_index`'s container with (empty for version 1)."""
        return b"" if self.clip_id is None else frame_binding(self.clip_id, frame_index)

    def get(self, frame_index: int) -> bytes | None:
        """The container of `frame_index`, or None when that frame had nothing to restore."""
        where = self._index.get(frame_index)
        if where is None:
            return None
        self._file.seek(where[0])
        return self._file.read(where[1])

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SidecarReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
