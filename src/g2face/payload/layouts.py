"""Payload layouts for networks whose bit budget differs from the codec's own (the paper
configuration: 512 x 32 = 16384 bit slots for a 512-d identity).

* `RepeatedPayload`: the secure codec's bits (encrypted, authenticated, error-corrected) laid out
  over all slots by cyclic repetition; reading sums the logits of each bit's copies (soft
  combining: independent log-likelihood ratios add).
* `ReferenceFloatPayload`: the reference's own payload, the raw float32 bits of the identity
  (sign, exponent, mantissa; most significant first). Unkeyed and unauthenticated: anyone who
  reads the bits has the identity. Only for reproducing the reference's numbers.
"""

from __future__ import annotations

import secrets

import numpy as np

from g2face.payload.codec import SALT_BYTES, DecodedPayload, EncodedPayload, PayloadCodec
from g2face.payload.errors import PayloadNotFoundError
from g2face.payload.secret import Secret


class RepeatedPayload:
    """`PayloadCodec` interface over `n_slots` bits; slot i carries codec bit i mod codec.n_bits."""

    def __init__(self, codec: PayloadCodec, n_slots: int):
        if n_slots < codec.n_bits:
            raise ValueError(f"{n_slots} slots cannot carry the codec's {codec.n_bits} bits")
        self.codec, self.n_bits, self.embedding_dim = codec, n_slots, codec.embedding_dim
        self._source = np.arange(n_slots) % codec.n_bits

    def encode(
        self,
        embedding: np.ndarray,
        secret: Secret,
        salt: bytes | None = None,
        face_index: int = 0,
        kdf_id: int | None = None,
    ) -> EncodedPayload:
        inner = self.codec.encode(embedding, secret, salt=salt, face_index=face_index, kdf_id=kdf_id)
        return EncodedPayload(inner.bits[self._source], inner.salt, inner.kdf_id, inner.dummy_seed)

    def combine_logits(self, logits: np.ndarray) -> np.ndarray:
        logits = np.asarray(logits, dtype=np.float64).reshape(-1)
        if logits.shape != (self.n_bits,):
            raise PayloadNotFoundError(f"expected {self.n_bits} payload logits, got {logits.shape}")
        return np.bincount(self._source, weights=logits, minlength=self.codec.n_bits)

    def decode_logits(self, logits: np.ndarray, secret: Secret) -> DecodedPayload:
        return self.codec.decode_logits(self.combine_logits(logits), secret)


BITS_PER_FLOAT = 32
REFERENCE_CLAMP = 50.0  # the reference zeroes decoded values beyond ±50 (mostly exponent bit errors)


class ReferenceFloatPayload:
    """The reference payload: float32 bits of the raw identity. Not secure (see module docstring)."""

    def __init__(self, embedding_dim: int = 512):
        self.embedding_dim, self.n_bits = embedding_dim, embedding_dim * BITS_PER_FLOAT

    def encode(
        self,
        embedding: np.ndarray,
        secret: Secret | None = None,
        salt: bytes | None = None,
        face_index: int = 0,
        kdf_id: int | None = None,
    ) -> EncodedPayload:
        values = np.asarray(embedding, dtype=np.float32).reshape(-1)
        values = np.where(values == 0, np.float32(1e-8), values)  # the reference's float2bit does this
        words = values.astype(">f4").view(">u4").astype(np.uint32)
        bits = ((words[:, None] >> np.arange(31, -1, -1, dtype=np.uint32)) & 1).astype(np.uint8)
        # Unkeyed: the dummy identity is just random, as the reference's torch.randn.
        salt = secrets.token_bytes(SALT_BYTES) if salt is None else bytes(salt)
        return EncodedPayload(bits.reshape(-1), salt, 0, int.from_bytes(secrets.token_bytes(8), "big"))

    def decode_bits(self, bits: np.ndarray) -> np.ndarray:
        """The reference's bit2float (IEEE-754 without denormals) and ±50 clamp → float32 [dim]."""
        b = np.asarray(bits).reshape(self.embedding_dim, BITS_PER_FLOAT).astype(np.float64)
        sign = (-1.0) ** b[:, 0]
        exponent = b[:, 1:9] @ (2.0 ** np.arange(7, -1, -1)) - 127
        mantissa = 1 + b[:, 9:] @ (2.0 ** -np.arange(1, 24))
        with np.errstate(over="ignore"):
            values = sign * 2.0**exponent * mantissa
        values = np.where(np.abs(values) > REFERENCE_CLAMP, 0.0, values)
        return values.astype(np.float32)

    def decode_logits(self, logits: np.ndarray, secret: Secret | None = None) -> DecodedPayload:
        logits = np.asarray(logits, dtype=np.float64).reshape(-1)
        if logits.shape != (self.n_bits,):
            raise PayloadNotFoundError(f"expected {self.n_bits} payload logits, got {logits.shape}")
        # Nothing authenticates the payload: it is never `verified`.
        return DecodedPayload(self.decode_bits(logits > 0), False, b"", 0, None)
