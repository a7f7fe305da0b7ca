"""The recovery payload: header + encrypted quantised identity + MAC, under Reed-Solomon.

Frame (bytes, before error correction; docs/payload-format.md has the full table):

    magic | version<<4 | kdf_id | salt (8) | ChaCha20(codes) (dim/2) | HMAC-SHA256 tag (4)

The cipher is a keystream XOR, so a channel bit the code cannot fix spoils one plaintext bit
only; the MAC (encrypt-then-MAC over everything before it) is what `verified` reports.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from hashlib import sha256

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from g2face.payload import kdf
from g2face.payload.ecc import InterleavedReedSolomon, UncorrectableError
from g2face.payload.errors import PayloadError, PayloadNotFoundError, UnsupportedPayloadError
from g2face.payload.quantize import EmbeddingQuantizer
from g2face.payload.secret import Secret

FORMAT_VERSION = 1
MAGIC = 0xA7
SALT_BYTES = 8
MAC_BYTES = 4
HEADER_BYTES = 2 + SALT_BYTES
# A payload the code cannot repair still counts as present when magic + version (12 bits) are
# at most this many bits off; random bits pass with probability 13/4096.
_TAG_TOLERANCE = 1


@dataclass(frozen=True)
class EncodedPayload:
    bits: np.ndarray  # (n_bits,) uint8 in {0, 1}: what the image must carry
    salt: bytes
    kdf_id: int
    dummy_seed: int  # seeds the dummy identity of this face, reproducible from key + salt


@dataclass(frozen=True)
class DecodedPayload:
    embedding: np.ndarray  # (dim,) float32 unit vector; unrelated to the original unless verified
    verified: bool  # the secret is right and the payload arrived intact
    salt: bytes
    kdf_id: int
    bit_errors_corrected: int | None  # None: too many errors to correct, best-effort embedding


def _keystream_xor(key: bytes, data: bytes) -> bytes:
    # Every payload has its own key (salted KDF), so a fixed nonce never repeats under one key.
    return Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor().update(data)


def _tag(mac_key: bytes, authenticated: bytes) -> bytes:
    return hmac.new(mac_key, authenticated, sha256).digest()[:MAC_BYTES]


def _bit_distance(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


class PayloadCodec:
    """Fixed bit layout for one (embedding_dim, format version); see docs/payload-format.md."""

    def __init__(self, embedding_dim: int = 128, version: int = FORMAT_VERSION):
        if version != FORMAT_VERSION:
            raise UnsupportedPayloadError(f"payload format version {version} unknown (this release: 1)")
        self.version = version
        self.embedding_dim = embedding_dim
        self.quantizer = EmbeddingQuantizer(embedding_dim)
        self.frame_bytes = HEADER_BYTES + self.quantizer.n_bytes + MAC_BYTES
        self.ecc = InterleavedReedSolomon(self.frame_bytes)

    @property
    def n_bits(self) -> int:
        return self.ecc.n_bits

    def __repr__(self) -> str:
        return (
            f"PayloadCodec(embedding_dim={self.embedding_dim}, version={self.version}, "
            f"n_bits={self.n_bits}, code_rate={self.ecc.code_rate:.3f})"
        )

    def _keys(self, secret: Secret, salt: bytes, kdf_id: int) -> tuple[bytes, bytes, bytes]:
        master = kdf.master_key(secret, salt, kdf_id)
        return (master, *kdf.payload_keys(master, self.version, self.embedding_dim))

    def dummy_seed(self, secret: Secret, salt: bytes, face_index: int = 0, kdf_id: int | None = None) -> int:
        kdf_id = kdf.default_kdf_id(secret) if kdf_id is None else kdf_id
        kdf.check_kdf(secret, kdf_id, new_payload=False)
        return kdf.dummy_seed(kdf.master_key(secret, salt, kdf_id), face_index)

    def frame(self, embedding: np.ndarray, secret: Secret, salt: bytes, kdf_id: int) -> bytes:
        """The frame before error correction (exposed for tests and tools that inspect it)."""
        _, cipher_key, mac_key = self._keys(secret, salt, kdf_id)
        header = bytes([MAGIC, self.version << 4 | kdf_id]) + salt
        codes = self.quantizer.quantize(embedding)
        ciphertext = _keystream_xor(cipher_key, self.quantizer.to_bytes(codes))
        return header + ciphertext + _tag(mac_key, header + ciphertext)

    def encode(
        self,
        embedding: np.ndarray,
        secret: Secret,
        salt: bytes | None = None,
        face_index: int = 0,
        kdf_id: int | None = None,
    ) -> EncodedPayload:
        """Use a fresh salt (the default) for every payload: one key + salt for two different
        embeddings would reuse the keystream. Passing a salt is for deterministic tests and for
        repeating one payload (e.g. one identity per video track)."""
        salt = kdf.new_salt(SALT_BYTES) if salt is None else bytes(salt)
        if len(salt) != SALT_BYTES:
            raise ValueError(f"salt must be {SALT_BYTES} bytes, got {len(salt)}")
        kdf_id = kdf.default_kdf_id(secret) if kdf_id is None else kdf_id
        kdf.check_kdf(secret, kdf_id, new_payload=True)
        bits = self.ecc.encode(self.frame(embedding, secret, salt, kdf_id))
        seed = kdf.dummy_seed(kdf.master_key(secret, salt, kdf_id), face_index)
        return EncodedPayload(bits=bits, salt=salt, kdf_id=kdf_id, dummy_seed=seed)

    def decode(self, probs: np.ndarray, secret: Secret) -> DecodedPayload:
        """`probs`: (n_bits,) P(bit = 1) from the extractor; hard 0/1 bits work too.

        Returns an unverified, unrelated embedding for a wrong secret or a payload damaged
        beyond repair; raises PayloadNotFoundError when there is no payload (or the bits are NaN),
        UnsupportedPayloadError for a newer format or KDF parameter set, and KdfPolicyError when
        the payload's KDF is not for this kind of secret (a key file's payload and a password).
        """
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape != (self.n_bits,):
            raise PayloadNotFoundError(
                f"expected {self.n_bits} payload bits for a {self.embedding_dim}-d v{self.version} "
                f"payload, got shape {probs.shape}: truncated, or another layout"
            )
        if np.isnan(probs).any():
            raise PayloadNotFoundError(
                f"the extractor returned NaN for {int(np.isnan(probs).sum())} of {self.n_bits} payload "
                "bits: no payload can be read (a damaged image, or damaged model weights)"
            )
        if probs.min() < 0 or probs.max() > 1:
            raise ValueError("decode() takes probabilities in [0, 1]; use decode_logits() for logits")
        try:
            result = self.ecc.decode(probs)
            frame, corrected = result.data, result.bit_errors
        except UncorrectableError:
            frame, corrected = self.ecc.systematic_data(probs), None
        magic, version, kdf_id = frame[0], frame[1] >> 4, frame[1] & 0x0F
        if corrected is None:
            if _bit_distance(magic, MAGIC) + _bit_distance(version, self.version) > _TAG_TOLERANCE:
                raise PayloadNotFoundError(
                    "no g2face payload found: the image was never anonymized, or it was damaged "
                    "beyond what the error-correcting code can repair"
                )
            version = self.version  # the tag is within tolerance; its stray bit is noise
            known = kdf.KDF_PARAMETER_SETS.get(kdf_id)
            # an unrepaired header cannot say which kind of secret sealed it: a mismatch is damage
            if known is None or known.secret_kind != secret.kind:
                raise PayloadNotFoundError("a g2face payload too damaged to read (KDF field unreadable)")
        elif magic != MAGIC:
            raise PayloadNotFoundError("no g2face payload found (the decoded header has no g2face magic)")
        if version != self.version:
            raise UnsupportedPayloadError(
                f"payload format version {version} is not supported by this g2face release "
                f"(reads version {self.version}); upgrade g2face"
            )
        kdf.check_kdf(secret, kdf_id, new_payload=False)
        header, ciphertext, tag = frame[:HEADER_BYTES], frame[HEADER_BYTES:-MAC_BYTES], frame[-MAC_BYTES:]
        salt = header[2:]
        _, cipher_key, mac_key = self._keys(secret, salt, kdf_id)
        verified = corrected is not None and hmac.compare_digest(tag, _tag(mac_key, header + ciphertext))
        codes = self.quantizer.from_bytes(_keystream_xor(cipher_key, ciphertext))
        return DecodedPayload(
            embedding=self.quantizer.dequantize(codes),
            verified=verified,
            salt=salt,
            kdf_id=kdf_id,
            bit_errors_corrected=corrected,
        )

    def decode_logits(self, logits: np.ndarray, secret: Secret) -> DecodedPayload:
        """Like `decode`, from the extractor's logits (log P(1)/P(0)); ±inf means certain, NaN
        raises PayloadNotFoundError."""
        logits = np.asarray(logits, dtype=np.float64)
        return self.decode(0.5 * (1 + np.tanh(0.5 * logits)), secret)

    def encode_batch(self, embeddings: np.ndarray, secret: Secret) -> list[EncodedPayload]:
        """One fresh salt per row; `np.stack([e.bits for e in result])` gives (B, n_bits)."""
        return [self.encode(e, secret, face_index=i) for i, e in enumerate(np.asarray(embeddings))]

    def decode_batch(self, probs: np.ndarray, secret: Secret) -> list[DecodedPayload | PayloadError]:
        """Decode each row; a row without a readable payload yields its exception instead."""
        results: list[DecodedPayload | PayloadError] = []
        for row in np.asarray(probs):
            try:
                results.append(self.decode(row, secret))
            except PayloadError as e:
                results.append(e)
        return results
