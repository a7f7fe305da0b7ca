"""Exact-recovery container: the original pixels of every anonymized region, compressed losslessly,
encrypted and authenticated under a key derived from the user's secret.

The anonymized file carries the container as an opaque byte block (`g2face.io.blocks`); whoever
holds the password or key file gets the original pixels back bit for bit, everyone else learns only
what the clear header says (image size, number of regions, container size). Byte layout, keys and
measured sizes: docs/container-format.md.

    blob = seal_regions([Region.from_image(original, paste_mask, x0, y0)], secret, original.shape)
    restored = restore_regions(anonymized, open_container(blob, secret))
"""

from __future__ import annotations

import hmac
import io
import secrets
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from PIL import Image

from g2face.payload import kdf
from g2face.payload.errors import PayloadError
from g2face.payload.secret import Secret

FORMAT_VERSION = 1
MAGIC = b"G2FC"
SALT_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
# magic, version, kdf_id, salt, nonce, key check, height, width, channels, number of regions
_HEADER = struct.Struct(">4sBB16s12s4sIIBH")
_CRC = struct.Struct(">I")
HEADER_BYTES = _HEADER.size + _CRC.size
# per region, inside the ciphertext: x0, y0, height, width, pixel codec, mask bytes, pixel bytes
_REGION = struct.Struct(">IIIIBII")

# Pixel codecs, chosen per region. WebP lossless stores face regions in ~0.38 of their raw size
# against ~0.55 for PNG and ~0.52 for the best lzma filter (docs/container-format.md); it is limited
# to 16,383 px a side, so larger regions fall back to PNG.
_WEBP_LOSSLESS = 1
_PNG = 2
_WEBP_MAX_SIDE = 16383
# lossless quality is effort, not fidelity; `exact` keeps the RGB under transparent pixels
_WEBP_OPTIONS = {"lossless": True, "quality": 50, "method": 3, "exact": True}
_CODEC_FORMATS = {_WEBP_LOSSLESS: "WEBP", _PNG: "PNG"}
_MODES = {3: "RGB", 4: "RGBA"}


class ContainerError(PayloadError):
    """Base class: anything that stops a container from being opened or applied."""


class NotAContainerError(ContainerError):
    """These bytes are not a g2face container (no magic, or too short to hold a header)."""


class WrongSecretError(ContainerError):
    """The password or key file is not the one the container was sealed with."""


class TamperedContainerError(ContainerError):
    """The container was altered or damaged after sealing: its header checksum or its
    authentication tag does not match, or it is truncated. Nothing from it may be trusted."""


class UnsupportedContainerError(ContainerError):
    """A container version or KDF parameter set this g2face release does not know."""


class ImageMismatchError(ContainerError):
    """The image to restore does not have the size and channels the container was sealed for."""


@dataclass(frozen=True, eq=False)
class Region:
    """One anonymized face's footprint in image coordinates.

    `mask` (bool [h, w]) marks the pixels the anonymizer may have changed, `pixels` (uint8
    [h, w, C], C = 3 or 4) the ORIGINAL pixels of the box whose top-left corner is (x0, y0).
    """

    x0: int
    y0: int
    mask: np.ndarray
    pixels: np.ndarray

    def __post_init__(self) -> None:
        if self.x0 < 0 or self.y0 < 0:
            raise ValueError(f"region corner must be >= 0, got ({self.x0}, {self.y0})")
        if self.mask.dtype != np.bool_ or self.mask.ndim != 2:
            raise ValueError(f"mask must be bool [h, w], got {self.mask.dtype} {self.mask.shape}")
        if (
            self.pixels.dtype != np.uint8
            or self.pixels.ndim != 3
            or self.pixels.shape[:2] != self.mask.shape
            or self.pixels.shape[2] not in _MODES
        ):
            raise ValueError(
                f"pixels must be uint8 [h, w, 3 or 4] matching the mask {self.mask.shape}, "
                f"got {self.pixels.dtype} {self.pixels.shape}"
            )

    @classmethod
    def from_image(cls, image: np.ndarray, mask: np.ndarray, x0: int = 0, y0: int = 0) -> Region:
        """The region of `image` (uint8 [H, W, C], the original) under `mask` (bool [h, w] placed
        with its top-left at (x0, y0)), trimmed to the mask's bounding box. An empty mask raises."""
        rows, cols = np.nonzero(mask)
        if rows.size == 0:
            raise ValueError("the mask selects no pixel")
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        x0, y0 = int(x0 + left), int(y0 + top)
        height, width = bottom - top, right - left
        if y0 + height > image.shape[0] or x0 + width > image.shape[1]:
            raise ValueError(f"the mask reaches outside the {image.shape[1]}x{image.shape[0]} image")
        return cls(
            x0=x0,
            y0=y0,
            mask=np.ascontiguousarray(mask[top:bottom, left:right], dtype=bool),
            pixels=image[y0 : y0 + height, x0 : x0 + width].copy(),
        )

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), exclusive end."""
        height, width = self.mask.shape
        return self.x0, self.y0, self.x0 + width, self.y0 + height


@dataclass(frozen=True)
class OpenedContainer:
    """What a container holds: the shape of the image it was sealed for, and the regions, whose
    `pixels` are the original values where `mask` and zero elsewhere."""

    image_shape: tuple[int, int, int]
    regions: tuple[Region, ...]


def seal_regions(
    regions: Sequence[Region],
    secret: Secret,
    image_shape: tuple[int, int, int],
    *,
    kdf_id: int | None = None,
    image_salt: bytes | None = None,
    associated_data: bytes = b"",
) -> bytes:
    """Compress, encrypt and authenticate the original pixels of `regions` of an image of
    `image_shape` (H, W, C). Every call draws a fresh salt; give the `image_salt` of the image's
    face payloads (`kdf.new_image_salt`) so a password is stretched once for all of them.

    `associated_data` binds the container to its context without being stored in it (a video
    sidecar passes the clip and frame index): `open_container` must be given the same bytes, so a
    container moved to another frame fails authentication. Empty, the container is exactly the
    format's version 1 as before."""
    height, width, channels = _check_shape(image_shape)
    if len(regions) > 0xFFFF:
        raise ValueError(f"at most 65,535 regions per container, got {len(regions)}")
    for region in regions:
        x0, y0, x1, y1 = region.box
        if region.pixels.shape[2] != channels:
            raise ValueError(f"region has {region.pixels.shape[2]} channels, the image {channels}")
        if x1 > width or y1 > height:
            raise ValueError(f"region {region.box} reaches outside the {width}x{height} image")
    kdf_id = kdf.default_kdf_id(secret) if kdf_id is None else kdf_id
    kdf.kdf_params(kdf_id)
    salt, nonce = kdf.new_salt(SALT_BYTES, image_salt), secrets.token_bytes(NONCE_BYTES)
    aead_key, check = kdf.container_keys(kdf.master_key(secret, salt, kdf_id), FORMAT_VERSION)
    fields = _HEADER.pack(
        MAGIC, FORMAT_VERSION, kdf_id, salt, nonce, check, height, width, channels, len(regions)
    )
    header = fields + _CRC.pack(zlib.crc32(fields))
    plaintext = b"".join(_encode_region(r) for r in regions)
    return header + ChaCha20Poly1305(aead_key).encrypt(nonce, plaintext, header + associated_data)


def open_container(blob: bytes, secret: Secret, *, associated_data: bytes = b"") -> OpenedContainer:
    """Check, decrypt and decode a container. Raises `NotAContainerError`, `UnsupportedContainerError`,
    `WrongSecretError` or `TamperedContainerError` (also when `associated_data` differs from what it
    was sealed with); returns only what the tag authenticated."""
    blob = bytes(blob)
    if len(blob) < len(MAGIC) + 1 or not blob.startswith(MAGIC):
        raise NotAContainerError("not a g2face container (no G2FC magic)")
    version = blob[len(MAGIC)]
    if version != FORMAT_VERSION:
        raise UnsupportedContainerError(
            f"container format version {version} is not supported by this g2face release "
            f"(reads version {FORMAT_VERSION}); upgrade g2face"
        )
    if len(blob) < HEADER_BYTES + TAG_BYTES:
        raise TamperedContainerError(f"container truncated to {len(blob)} bytes")
    header, ciphertext = blob[:HEADER_BYTES], blob[HEADER_BYTES:]
    (crc,) = _CRC.unpack(header[_HEADER.size :])
    if crc != zlib.crc32(header[: _HEADER.size]):
        raise TamperedContainerError("container header damaged (checksum mismatch)")
    _, _, kdf_id, salt, nonce, check, height, width, channels, n_regions = _HEADER.unpack(
        header[: _HEADER.size]
    )
    if kdf_id not in kdf.KDF_PARAMETER_SETS:
        raise UnsupportedContainerError(
            f"container uses KDF parameter set {kdf_id}, unknown to this g2face release; upgrade g2face"
        )
    aead_key, expected_check = kdf.container_keys(kdf.master_key(secret, salt, kdf_id), FORMAT_VERSION)
    if not hmac.compare_digest(check, expected_check):
        raise WrongSecretError("wrong password or key file for this image's recovery container")
    try:
        plaintext = ChaCha20Poly1305(aead_key).decrypt(nonce, ciphertext, header + associated_data)
    except InvalidTag:
        bound = " or belongs to another place (associated data differs)" if associated_data else ""
        raise TamperedContainerError(
            f"the recovery container was altered or damaged after anonymizing{bound} (authentication failed)"
        ) from None
    image_shape = (height, width, channels)
    regions = _decode_regions(plaintext, n_regions, image_shape)
    return OpenedContainer(image_shape=image_shape, regions=regions)


def restore_regions(image: np.ndarray, opened: OpenedContainer) -> np.ndarray:
    """A copy of `image` (uint8 [H, W, C]) with the original pixels put back wherever a mask is set."""
    if image.dtype != np.uint8 or image.shape != opened.image_shape:
        height, width, channels = opened.image_shape
        raise ImageMismatchError(
            f"the container was sealed for a {width}x{height} image with {channels} channels, "
            f"this one is {image.dtype} {image.shape}: it was resized, cropped or converted after "
            "anonymizing, so its regions cannot be put back exactly"
        )
    restored = image.copy()
    for region in opened.regions:
        x0, y0, x1, y1 = region.box
        restored[y0:y1, x0:x1][region.mask] = region.pixels[region.mask]
    return restored


def _check_shape(image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    if len(image_shape) != 3 or image_shape[2] not in _MODES or min(image_shape[:2]) < 1:
        raise ValueError(f"image_shape must be (H, W, 3 or 4), got {image_shape}")
    return int(image_shape[0]), int(image_shape[1]), int(image_shape[2])


def _encode_region(region: Region) -> bytes:
    height, width = region.mask.shape
    mask_bytes = zlib.compress(np.packbits(region.mask).tobytes(), 9)
    # only the masked pixels matter; zeros elsewhere cost almost nothing to compress
    masked = np.where(region.mask[:, :, None], region.pixels, 0).astype(np.uint8)
    codec = _WEBP_LOSSLESS if max(height, width) <= _WEBP_MAX_SIDE else _PNG
    buffer = io.BytesIO()
    options = _WEBP_OPTIONS if codec == _WEBP_LOSSLESS else {"compress_level": 9}
    Image.fromarray(masked, _MODES[masked.shape[2]]).save(buffer, _CODEC_FORMATS[codec], **options)
    pixel_bytes = buffer.getvalue()
    entry = _REGION.pack(region.x0, region.y0, height, width, codec, len(mask_bytes), len(pixel_bytes))
    return entry + mask_bytes + pixel_bytes


def _decode_regions(
    plaintext: bytes, n_regions: int, image_shape: tuple[int, int, int]
) -> tuple[Region, ...]:
    # The tag already authenticated these bytes: an inconsistency means a faulty writer, not an attacker.
    image_height, image_width, channels = image_shape
    regions, offset = [], 0
    for index in range(n_regions):
        if offset + _REGION.size > len(plaintext):
            raise ContainerError(f"container content ends inside region {index}")
        x0, y0, height, width, codec, mask_len, pixel_len = _REGION.unpack_from(plaintext, offset)
        offset += _REGION.size
        mask_bytes = plaintext[offset : offset + mask_len]
        pixel_bytes = plaintext[offset + mask_len : offset + mask_len + pixel_len]
        offset += mask_len + pixel_len
        if offset > len(plaintext) or codec not in _CODEC_FORMATS:
            raise ContainerError(f"container region {index} is inconsistent (length or codec)")
        if x0 + width > image_width or y0 + height > image_height:
            raise ContainerError(f"container region {index} lies outside the image")
        try:
            bits = np.unpackbits(np.frombuffer(zlib.decompress(mask_bytes), np.uint8), count=height * width)
            mask = bits.reshape(height, width).astype(bool)
            with Image.open(io.BytesIO(pixel_bytes), formats=[_CODEC_FORMATS[codec]]) as im:
                if im.size != (width, height):
                    raise ValueError(f"pixels are {im.size}, expected {(width, height)}")
                pixels = np.asarray(im.convert(_MODES[channels]))
        except (zlib.error, ValueError, OSError) as e:
            raise ContainerError(f"container region {index} cannot be decoded ({e})") from None
        regions.append(Region(x0=x0, y0=y0, mask=mask, pixels=pixels))
    if offset != len(plaintext):
        raise ContainerError("container content has trailing bytes")
    return tuple(regions)
