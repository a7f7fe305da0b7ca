"""Identity embedding <-> 4-bit codes per dimension (cosine >= 0.995 after de-quantisation).

A fixed orthogonal rotation (random signs, then an orthonormal DCT-II) first spreads the energy of
the embedding evenly, so every rotated component is close to N(0, 1/d) whatever the recognizer's
per-dimension statistics are; then each component is quantised with the 16-level Lloyd-Max
quantiser of the standard normal. Only the direction matters (the decoder re-normalises), so the
encoder tries a few scales and keeps the codes closest in angle: no scale is transmitted.
"""

from __future__ import annotations

import hashlib

import numpy as np

BITS_PER_DIM = 4
# Positive half of the 16-level Lloyd-Max quantiser for N(0, 1) (Max, 1960). Part of the format.
_LLOYD_MAX_16 = np.array([0.1284, 0.3880, 0.6568, 0.9423, 1.2562, 1.6180, 2.0690, 2.7326])
LEVELS = np.concatenate([-_LLOYD_MAX_16[::-1], _LLOYD_MAX_16])
_THRESHOLDS = (LEVELS[1:] + LEVELS[:-1]) / 2
_SCALES = np.linspace(0.7, 1.4, 29)


def rotation(dim: int) -> np.ndarray:
    """The format's fixed orthogonal matrix for `dim`; hash-derived signs, not a library RNG, so
    it cannot change with a numpy release."""
    sign_bits = np.unpackbits(
        np.frombuffer(hashlib.shake_256(f"g2face rotation {dim}".encode()).digest((dim + 7) // 8), np.uint8)
    )[:dim]
    signs = 1.0 - 2.0 * sign_bits
    k, n = np.arange(dim)[:, None], np.arange(dim)[None, :]
    dct = np.sqrt(2.0 / dim) * np.cos(np.pi * (n + 0.5) * k / dim)
    dct[0] /= np.sqrt(2.0)
    return dct * signs[None, :]


class EmbeddingQuantizer:
    """`quantize` a (dim,) embedding to uint8 codes in [0, 16); `dequantize` back to a unit vector."""

    def __init__(self, dim: int):
        if dim < 2 or dim % 2:
            raise ValueError(f"embedding_dim must be even and >= 2, got {dim}")
        self.dim = dim
        self._rotation = rotation(dim)

    @property
    def n_bytes(self) -> int:
        return self.dim * BITS_PER_DIM // 8

    def quantize(self, embedding: np.ndarray) -> np.ndarray:
        x = np.asarray(embedding, dtype=np.float64)
        if x.shape != (self.dim,):
            raise ValueError(f"expected an embedding of shape ({self.dim},), got {x.shape}")
        norm = np.linalg.norm(x)
        if not np.isfinite(norm) or norm == 0:
            raise ValueError("embedding must be finite and non-zero")
        z = self._rotation @ (x / norm)
        candidates = np.searchsorted(_THRESHOLDS, np.outer(_SCALES * np.sqrt(self.dim), z))
        values = LEVELS[candidates]
        cosines = (values @ z) / np.linalg.norm(values, axis=1)
        return candidates[np.argmax(cosines)].astype(np.uint8)

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        x = self._rotation.T @ LEVELS[np.asarray(codes, dtype=np.intp)]
        return (x / np.linalg.norm(x)).astype(np.float32)

    def to_bytes(self, codes: np.ndarray) -> bytes:
        return ((codes[0::2] << 4) | codes[1::2]).astype(np.uint8).tobytes()

    def from_bytes(self, data: bytes) -> np.ndarray:
        packed = np.frombuffer(data, dtype=np.uint8)
        return np.stack([packed >> 4, packed & 0x0F], axis=1).reshape(-1)
