"""Exceptions raised while encoding, decoding or unlocking a recovery payload."""

from __future__ import annotations


class PayloadError(Exception):
    """Base class: anything that stops a payload from being read."""


class PayloadNotFoundError(PayloadError):
    """No g2face payload in these bits: wrong length, the error-correcting code failed and the
    format tag does not match (an image that was never anonymized), or the extractor produced no
    usable bits (NaN)."""


class UnsupportedPayloadError(PayloadError):
    """A g2face payload whose format version or KDF parameter set this release does not know."""


class KdfPolicyError(PayloadError):
    """A KDF parameter set this secret may not use: HKDF for a password (no stretching), a password
    KDF for a key file, or a retired (weaker) set for a new payload."""


class SecretError(ValueError):
    """No usable password or key: empty password, malformed key file, nothing given."""


class SecretExposureWarning(UserWarning):
    """The secret was passed in a way others may see (a command-line argument)."""


class WeakPasswordWarning(UserWarning):
    """A short or low-variety password: anyone holding an anonymized image can guess it offline."""
