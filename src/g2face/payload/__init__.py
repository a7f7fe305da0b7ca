"""Secure recovery payload: password or key file -> salted key; the original identity embedding,
quantised, encrypted (ChaCha20), authenticated (truncated HMAC) and protected by an interleaved
Reed-Solomon code that accepts soft bits. No torch here: numpy in, numpy out.

Bit layout and measured figures: docs/payload-format.md.
"""

from g2face.payload import kdf
from g2face.payload.codec import FORMAT_VERSION, DecodedPayload, EncodedPayload, PayloadCodec
from g2face.payload.errors import (
    KdfPolicyError,
    PayloadError,
    PayloadNotFoundError,
    SecretError,
    SecretExposureWarning,
    UnsupportedPayloadError,
    WeakPasswordWarning,
)
from g2face.payload.kdf import KDF_PARAMETER_SETS, KdfParams
from g2face.payload.secret import PASSWORD_ENV, Secret, resolve_secret

__all__ = [
    "FORMAT_VERSION",
    "KDF_PARAMETER_SETS",
    "PASSWORD_ENV",
    "DecodedPayload",
    "EncodedPayload",
    "KdfParams",
    "KdfPolicyError",
    "PayloadCodec",
    "PayloadError",
    "PayloadNotFoundError",
    "Secret",
    "SecretError",
    "SecretExposureWarning",
    "UnsupportedPayloadError",
    "WeakPasswordWarning",
    "kdf",
    "resolve_secret",
]
