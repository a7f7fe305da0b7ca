"""Carriers of recovery data in an anonymized image (torch-free).

`container`: the exact-recovery container, the original pixels of every anonymized region,
encrypted and authenticated, stored as a byte block beside the pixels (docs/container-format.md).
`pixel`: the in-pixel payload, the codec's encrypted identity frame written into the face's own
8×8 luminance DCT blocks, found again blindly after metadata stripping and recompression
(docs/pixel-payload.md).
"""

from g2face.payload.carriers.container import (
    ContainerError,
    ImageMismatchError,
    NotAContainerError,
    OpenedContainer,
    Region,
    TamperedContainerError,
    UnsupportedContainerError,
    WrongSecretError,
    open_container,
    restore_regions,
    seal_regions,
)
from g2face.payload.carriers.pixel import DctQimCarrier, FaceTooSmallError, read_payload

__all__ = [
    "ContainerError",
    "DctQimCarrier",
    "FaceTooSmallError",
    "ImageMismatchError",
    "NotAContainerError",
    "OpenedContainer",
    "Region",
    "TamperedContainerError",
    "UnsupportedContainerError",
    "WrongSecretError",
    "open_container",
    "read_payload",
    "restore_regions",
    "seal_regions",
]
