"""One opaque g2face byte block (the exact-recovery container) inside an encoded PNG, JPEG or WebP file.

Each format has a place for private data that decoders skip:

* PNG: one ancillary, private, safe-to-copy chunk `gfCt`, just before IEND (CRC over type + data).
* JPEG: APP9 segments starting with the signature `G2FACE\\0`, a sequence number and a segment
  count (both big-endian uint16), at most 65,522 block bytes each, placed after SOI and any
  leading APP0 (JFIF) / APP1 (Exif, XMP) segments. APP9 because APP11 carries JUMBF / C2PA.
* WebP: a RIFF chunk `g2fc` at the end of the file; a simple (VP8 / VP8L) file becomes the
  extended format (a VP8X chunk in front) because only that one may hold unknown chunks.

The splicers work on the encoded bytes, so the image data is never re-encoded. Pillow can write a
private PNG chunk (`PngInfo.add`) but offers nothing for JPEG APPn or WebP chunks, and a block has to
be added to bytes that are already encoded; one small splicer per format keeps writing and
reading symmetric. Integrity is the container's job (it is authenticated): `find_block` returns
a damaged block as it is, and the container rejects it.
"""

from __future__ import annotations

import struct
import zlib

from g2face.types import InputError

BLOCK_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})
"""Pillow format names of the files that can carry a block."""

PNG_CHUNK_TYPE = b"gfCt"
JPEG_MARKER = 0xE9  # APP9
JPEG_SIGNATURE = b"G2FACE\x00"
WEBP_CHUNK_ID = b"g2fc"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SEQUENCE = struct.Struct(">HH")
# a segment's 2-byte length counts itself, the signature and the sequence header too
JPEG_SEGMENT_DATA = 0xFFFF - 2 - len(JPEG_SIGNATURE) - _JPEG_SEQUENCE.size
_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: no length field
_VP8X_ALPHA = 0x10


class BlockError(InputError):
    """A block cannot be added: a format without a place for it, or bytes that do not parse."""


def sniff_format(encoded: bytes) -> str | None:
    """'PNG', 'JPEG' or 'WEBP' from the leading bytes, or None."""
    if encoded.startswith(_PNG_SIGNATURE):
        return "PNG"
    if encoded.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(encoded) >= 12 and encoded[:4] == b"RIFF" and encoded[8:12] == b"WEBP":
        return "WEBP"
    return None


def add_block(encoded: bytes, fmt: str, block: bytes) -> bytes:
    """`encoded` (a complete PNG, JPEG or WebP file of format `fmt`) with `block` spliced in."""
    fmt = fmt.upper()
    if fmt not in BLOCK_FORMATS:
        raise BlockError(f"{fmt} files cannot carry a g2face block; use PNG, JPEG or WebP")
    if sniff_format(encoded) != fmt:
        raise BlockError(f"the encoded bytes are not a {fmt} file")
    if find_block(encoded) is not None:
        raise BlockError(f"this {fmt} file already carries a g2face block")
    splice = {"PNG": _add_png, "JPEG": _add_jpeg, "WEBP": _add_webp}[fmt]
    return splice(bytes(encoded), bytes(block))


def find_block(encoded: bytes) -> bytes | None:
    """The g2face block of an encoded file (format sniffed from its magic), or None when there is
    none or the format cannot hold one. Never raises on malformed input."""
    read = {"PNG": _find_png, "JPEG": _find_jpeg, "WEBP": _find_webp}.get(sniff_format(encoded) or "")
    return None if read is None else read(bytes(encoded))


# PNG ------------------------------------------------------------------------------------------


def _png_chunks(data: bytes):
    """(type, start of the chunk, data) for each whole chunk; stops at IEND or where the file ends."""
    offset = len(_PNG_SIGNATURE)
    while offset + 12 <= len(data):
        length, chunk_type = struct.unpack_from(">I4s", data, offset)
        yield chunk_type, offset, data[offset + 8 : offset + 8 + length]
        if chunk_type == b"IEND":
            return
        offset += 12 + length


def _add_png(data: bytes, block: bytes) -> bytes:
    iend = next((start for kind, start, _ in _png_chunks(data) if kind == b"IEND"), None)
    if iend is None:
        raise BlockError("the PNG has no IEND chunk (truncated)")
    if len(block) > 0x7FFFFFFF:
        raise BlockError("block too large for one PNG chunk (2 GiB)")
    crc = zlib.crc32(block, zlib.crc32(PNG_CHUNK_TYPE))
    chunk = struct.pack(">I4s", len(block), PNG_CHUNK_TYPE) + block + struct.pack(">I", crc)
    return data[:iend] + chunk + data[iend:]


def _find_png(data: bytes) -> bytes | None:
    return next((body for kind, _, body in _png_chunks(data) if kind == PNG_CHUNK_TYPE), None)


# JPEG -----------------------------------------------------------------------------------------


def _jpeg_segments(data: bytes):
    """(marker, start, end, payload) of each marker segment between SOI and the first SOS."""
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            return  # not a marker: damaged header
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte before a marker
            offset += 1
            continue
        if marker in (_JPEG_SOS, _JPEG_EOI):
            yield marker, offset, offset, b""
            return
        if marker in _JPEG_STANDALONE:
            offset += 2
            continue
        (length,) = struct.unpack_from(">H", data, offset + 2)
        end = offset + 2 + length
        yield marker, offset, end, data[offset + 4 : end]
        offset = end


def _add_jpeg(data: bytes, block: bytes) -> bytes:
    insert_at = 2
    for marker, start, end, _ in _jpeg_segments(data):
        if marker not in (0xE0, 0xE1):  # Exif must stay first after SOI / JFIF
            insert_at = start
            break
        insert_at = end
    pieces = [block[i : i + JPEG_SEGMENT_DATA] for i in range(0, len(block), JPEG_SEGMENT_DATA)] or [b""]
    if len(pieces) > 0xFFFF:
        raise BlockError("block too large for JPEG APP segments (4 GiB)")
    segments = b"".join(
        struct.pack(">BBH", 0xFF, JPEG_MARKER, 2 + len(JPEG_SIGNATURE) + _JPEG_SEQUENCE.size + len(piece))
        + JPEG_SIGNATURE
        + _JPEG_SEQUENCE.pack(index, len(pieces))
        + piece
        for index, piece in enumerate(pieces)
    )
    return data[:insert_at] + segments + data[insert_at:]


def _find_jpeg(data: bytes) -> bytes | None:
    pieces: dict[int, bytes] = {}
    header = len(JPEG_SIGNATURE) + _JPEG_SEQUENCE.size
    for marker, _, _, payload in _jpeg_segments(data):
        if marker == JPEG_MARKER and payload.startswith(JPEG_SIGNATURE) and len(payload) >= header:
            index, _ = _JPEG_SEQUENCE.unpack_from(payload, len(JPEG_SIGNATURE))
            pieces.setdefault(index, payload[header:])
    # a missing or damaged segment leaves a block the container's authentication rejects
    return b"".join(pieces[i] for i in sorted(pieces)) if pieces else None


# WebP -----------------------------------------------------------------------------------------


def _webp_chunks(data: bytes):
    """(FourCC, start, payload) of each whole RIFF chunk; stops where the file ends."""
    offset = 12
    while offset + 8 <= len(data):
        fourcc, size = struct.unpack_from("<4sI", data, offset)
        yield fourcc, offset, data[offset + 8 : offset + 8 + size]
        offset += 8 + size + (size & 1)


def _vp8x_for(fourcc: bytes, payload: bytes) -> bytes:
    """The VP8X chunk a simple-format file needs to become the extended format."""
    if fourcc == b"VP8L" and len(payload) >= 5 and payload[0] == 0x2F:
        bits = int.from_bytes(payload[1:5], "little")
        width, height = (bits & 0x3FFF) + 1, (bits >> 14 & 0x3FFF) + 1
        flags = _VP8X_ALPHA if bits >> 28 & 1 else 0
    elif fourcc == b"VP8 " and len(payload) >= 10 and payload[3:6] == b"\x9d\x01\x2a":
        width, height = (v & 0x3FFF for v in struct.unpack_from("<HH", payload, 6))
        flags = 0
    else:
        raise BlockError("the WebP file has no readable VP8 / VP8L header")
    body = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"VP8X" + struct.pack("<I", len(body)) + body


def _add_webp(data: bytes, block: bytes) -> bytes:
    chunks = list(_webp_chunks(data))
    if not chunks:
        raise BlockError("the WebP file has no chunks (truncated)")
    fourcc, _, payload = chunks[0]
    body = data[12:]
    if fourcc != b"VP8X":
        body = _vp8x_for(fourcc, payload) + body
    if len(block) > 0xFFFFFFFF - len(body) - 20:
        raise BlockError("block too large for a WebP file (4 GiB)")
    chunk = WEBP_CHUNK_ID + struct.pack("<I", len(block)) + block + b"\x00" * (len(block) & 1)
    body += chunk
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def _find_webp(data: bytes) -> bytes | None:
    return next((payload for fourcc, _, payload in _webp_chunks(data) if fourcc == WEBP_CHUNK_ID), None)
