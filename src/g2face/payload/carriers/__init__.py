"""Carriers of recovery data in an anonymized image (torch-free).

`container`: the exact-recovery container, the original pixels of every anonymized region,
encrypted and authenticated, stored as a byte block beside the pixels (docs/container-format.md).
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

__all__ = [
    "ContainerError",
    "ImageMismatchError",
    "NotAContainerError",
    "OpenedContainer",
    "Region",
    "TamperedContainerError",
    "UnsupportedContainerError",
    "WrongSecretError",
    "open_container",
    "restore_regions",
    "seal_regions",
]
