"""The `.g2face` sidecar of an anonymized video: one exact-recovery container per frame, in one file.

Video containers do not all carry attachments (MP4 does not), and re-encoding would not keep an
in-frame block anyway, so the encrypted original regions travel next to the clip:

    magic "G2FV" | version (1 byte) | header length (u32 BE) | header (UTF-8 JSON)
    then per anonymized frame: frame index | previous record's frame index | container length
        (u32 BE each) | container bytes
    then an end record: 0xFFFFFFFF | the last record's frame index | length | container

Each container is sealed on its own (`g2face.payload.carriers.seal_regions`: salt, key check,
ChaCha20-Poly1305), so the file needs no encryption of its own; the JSON header holds only layout
facts (frame size, frame count) and a random clip id. Since version 2 each container is bound to
its place: it is sealed with `frame_binding(clip id, frame index)` as associated data, so a record
moved to another frame, reordered or taken from another clip's sidecar fails authentication
(version 1 sidecars, unbound, are still read). Since version 3 each record also names and is
bound to the frame of the record before it, and an end record (an empty container, bound to the
last record's frame) closes the file: a record deleted from the middle shows as a gap in that
chain (`SidecarReader.removed`), one deleted from the end as an end record that no longer fits,
and a cut file as a missing end record (version 2 sidecars, without the chain, are still read).
Reading builds an index (frame → offset) by skipping from record to record, so a long clip's
containers are never all in memory.
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
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)  # 1: records not bound to their frame; 2: not chained
CLIP_ID_BYTES = 16
_BINDING_LABEL = b"g2face video sidecar v2 frame"
_CHAINED_LABEL = b"g2face video sidecar v3 frame"
_END_LABEL = b"g2face video sidecar v3 end"
NO_FRAME = 0xFFFFFFFF
"""In a version-3 record, the previous frame of the first record; as a frame index, the end record."""
SIDECAR_SUFFIX = ".g2face"
_LENGTH = struct.Struct(">I")
_RECORD = struct.Struct(">II")  # versions 1 and 2: frame, length
_CHAINED_RECORD = struct.Struct(">III")  # version 3: frame, previous record's frame, length

T = TypeVar("T")


class SidecarError(InputError):
    """A sidecar that is missing, not a g2face sidecar, of an unknown version or truncated."""


def new_clip_id() -> bytes:
    """A random id for one anonymized clip's sidecar (its records are bound to it)."""
    return secrets.token_bytes(CLIP_ID_BYTES)


def frame_binding(clip_id: bytes, frame_index: int, previous: int | None = None) -> bytes:
    """The associated data a frame's container is sealed and opened with: version 3 with the frame
    index of the record before it in the sidecar (`NO_FRAME` for the first), version 2 without."""
    if previous is None:
        return _BINDING_LABEL + clip_id + _LENGTH.pack(frame_index)
    return _CHAINED_LABEL + clip_id + _RECORD.pack(frame_index, previous)


def end_binding(clip_id: bytes, last_frame: int) -> bytes:
    """The associated data of a version-3 sidecar's end record: bound to its last record's frame
    (`NO_FRAME` when the clip had nothing to restore)."""
    return _END_LABEL + clip_id + _LENGTH.pack(last_frame)


def sidecar_path(video: str | Path) -> Path:
    """Where the sidecar of `video` goes by default: `<video>.g2face`."""
    video = Path(video)
    return video.with_name(video.name + SIDECAR_SUFFIX)


class FrameChain:
    """The version-3 binding of each frame's container, for whoever seals them in frame order: the
    frame of the record before it, which is the last frame `binding` was asked for."""

    def __init__(self, clip_id: bytes):
        self.clip_id, self.last = clip_id, NO_FRAME

    def binding(self, frame_index: int) -> bytes:
        """The associated data to seal `frame_index`'s container with; the record must then be added."""
        if self.last != NO_FRAME and frame_index <= self.last:
            raise ValueError(f"frame {frame_index} after frame {self.last}: frames must increase")
        binding = frame_binding(self.clip_id, frame_index, self.last)
        self.last = frame_index
        return binding


class SidecarWriter:
    def __init__(self, file: BinaryIO, header: dict, clip_id: bytes):
        """`clip_id`: the id the records' containers were sealed for (`FrameChain`)."""
        if len(clip_id) != CLIP_ID_BYTES:
            raise ValueError(f"clip id must be {CLIP_ID_BYTES} bytes, got {len(clip_id)}")
        encoded = json.dumps(header | {"clip_id": clip_id.hex()}, sort_keys=True).encode()
        file.write(MAGIC + bytes([VERSION]) + _LENGTH.pack(len(encoded)) + encoded)
        self._file = file
        self._last = NO_FRAME

    def add(self, frame_index: int, container: bytes) -> None:
        """Append the container of `frame_index` (frames in increasing order, each at most once;
        sealed with `FrameChain.binding`)."""
        if frame_index == NO_FRAME or (self._last != NO_FRAME and frame_index <= self._last):
            raise ValueError(f"frame {frame_index} after frame {self._last}: frames must increase")
        self._file.write(_CHAINED_RECORD.pack(frame_index, self._last, len(container)) + container)
        self._last = frame_index

    def finish(self, end_container: bytes) -> None:
        """Close the file with the end record: `end_container` sealed with `end_binding(clip id,
        last_frame)`."""
        self._file.write(_CHAINED_RECORD.pack(NO_FRAME, self._last, len(end_container)) + end_container)

    @property
    def last_frame(self) -> int:
        return self._last


def write_sidecar(
    path: str | Path,
    header: dict,
    clip_id: bytes,
    fill: Callable[[SidecarWriter], T],
    seal_end: Callable[[bytes], bytes],
    *,
    protected=(),
    force: bool = False,
) -> T:
    """Create the sidecar atomically: `fill(writer)` adds the records (containers sealed with
    `FrameChain(clip_id).binding(frame)`), then `seal_end(end_binding(clip_id, last frame))` gives
    the end record's container; the file appears only if both return, and `fill`'s result is
    returned."""
    path = Path(path)
    check_output_free(path, protected=protected, force=force)
    result: list[T] = []

    def write(file: BinaryIO) -> None:
        writer = SidecarWriter(file, header, clip_id)
        result.append(fill(writer))
        writer.finish(seal_end(end_binding(clip_id, writer.last_frame)))

    _atomic_write(path, write, replace=force)
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
        self._previous: dict[int, int] = {}  # version 3: frame -> the frame its record names before it
        self._order: list[int] = []  # frames in file order
        self.end: tuple[int, int, int] | None = None  # version 3: (last frame named, offset, length)
        layout = _CHAINED_RECORD if self.version >= 3 else _RECORD
        size = self.path.stat().st_size
        while True:
            raw = self._file.read(layout.size)
            if not raw:
                return index
            if len(raw) < layout.size:
                raise self._fail("sidecar truncated (partial record header)")
            if self.version >= 3:
                frame, previous, length = layout.unpack(raw)
            else:
                (frame, length), previous = layout.unpack(raw), None
            offset = self._file.tell()
            if offset + length > size:
                raise self._fail(f"sidecar truncated in the record of frame {frame}")
            if self.version >= 3 and frame == NO_FRAME:
                self.end = (previous, offset, length)
            else:
                index[frame] = (offset, length)
                self._order.append(frame)
                if previous is not None:
                    self._previous[frame] = previous
            self._file.seek(length, 1)

    @property
    def frames(self) -> list[int]:
        return sorted(self._index)

    def binding(self, frame_index: int) -> bytes:
        """The associated data to open `frame_index`'s container with (empty for version 1)."""
        if self.clip_id is None:
            return b""
        return frame_binding(self.clip_id, frame_index, self._previous.get(frame_index))

    def removed(self) -> dict[int, str]:
        """Version 3: frames whose record was deleted, each with why that is known — the record
        after it (or the end record) names it as its predecessor. The name is read before that
        record is opened; a record whose name was altered fails to open and is reported as damaged
        itself. Several records deleted in a row show as their last one, with the span they were in."""
        if self.version < 3:
            return {}
        missing: dict[int, str] = {}
        chain = [(frame, self._previous[frame], f"the record of frame {frame}") for frame in self._order]
        if self.end is not None:
            chain.append((None, self.end[0], "the end record"))
        before = NO_FRAME
        for frame, named, by in chain:
            if named != before and named != NO_FRAME:
                since = "the start" if before == NO_FRAME else f"frame {before}"
                why = f"its sidecar record was removed ({by} names it; any since {since} may be too)"
                missing[named] = why
            before = frame if frame is not None else before
        return missing

    def end_record(self) -> tuple[bytes, bytes] | None:
        """Version 3: the end record's container and the associated data to open it with, or None
        when the end record is missing (the file was cut after its last complete record)."""
        if self.end is None or self.clip_id is None:
            return None
        last, offset, length = self.end
        self._file.seek(offset)
        return self._file.read(length), end_binding(self.clip_id, last)

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
