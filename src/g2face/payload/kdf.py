"""Secret + salt -> per-image master key -> cipher key, MAC key and dummy-identity seed.

Each payload header names a KDF parameter set by a 4-bit id so costs can rise in later releases
while old images stay readable. Passwords go through scrypt (memory-hard); a key file already
holds 256 random bits, so HKDF with the salt is enough to give every image its own key.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from g2face.payload.errors import KdfPolicyError, UnsupportedPayloadError
from g2face.payload.secret import Secret

MASTER_KEY_BYTES = 32


@dataclass(frozen=True)
class KdfParams:
    """One versioned KDF parameter set; `id` is what the payload header stores."""

    id: int
    algorithm: Literal["hkdf-sha256", "scrypt"]
    log2_n: int = 0
    r: int = 0
    p: int = 0
    retired: bool = False
    """Still read (old images stay recoverable) but never used for a new payload."""
    stretched_prefix: int = 0
    """> 0: only the salt's first `stretched_prefix` bytes (the image salt, shared by every face
    payload and the container of one image) go through the expensive KDF, whose result is cached
    per image; HKDF over the whole salt then gives each payload its own key. The password is
    stretched once per image instead of once per face (a 5-face photo paid 6 x 0.37 s)."""

    @property
    def secret_kind(self) -> Literal["key", "password"]:
        """The kind of secret this set is for: HKDF does no stretching, so only random keys."""
        return "key" if self.algorithm == "hkdf-sha256" else "password"

    def derive(self, material: bytes, salt: bytes) -> bytes:
        if self.algorithm == "scrypt":
            kdf = Scrypt(salt=salt, length=MASTER_KEY_BYTES, n=2**self.log2_n, r=self.r, p=self.p)
        else:
            kdf = HKDF(hashes.SHA256(), MASTER_KEY_BYTES, salt=salt, info=b"g2face key file v1")
        return kdf.derive(material)

    def __str__(self) -> str:
        if self.algorithm == "scrypt":
            return f"scrypt(N=2^{self.log2_n}, r={self.r}, p={self.p})"
        return self.algorithm


# Only ever append: an id, once released, means these parameters forever. Header ids are
# looked up here, so an untrusted image cannot ask for an arbitrary (denial-of-service) cost.
KDF_PARAMETER_SETS: dict[int, KdfParams] = {
    0: KdfParams(0, "hkdf-sha256"),
    # 64 MiB, ~130 ms on the 2-core development machine; below OWASP's current guidance.
    1: KdfParams(1, "scrypt", log2_n=16, r=8, p=1, retired=True),
    # OWASP Password Storage Cheat Sheet (2024): N=2^17, r=8, p=1. 128 MiB (docs/payload-format.md).
    2: KdfParams(2, "scrypt", log2_n=17, r=8, p=1),
    # As 2, stretched once per image (see `KdfParams.stretched_prefix`, docs/payload-format.md).
    3: KdfParams(3, "scrypt", log2_n=17, r=8, p=1, stretched_prefix=4),
}
KEY_FILE_KDF_ID = 0
PASSWORD_KDF_ID = 3
IMAGE_SALT_BYTES = 4
"""Length of the image salt that `new_salt` puts in front of each salt of one image."""


def default_kdf_id(secret: Secret) -> int:
    return KEY_FILE_KDF_ID if secret.kind == "key" else PASSWORD_KDF_ID


def kdf_params(kdf_id: int) -> KdfParams:
    try:
        return KDF_PARAMETER_SETS[kdf_id]
    except KeyError:
        raise UnsupportedPayloadError(
            f"payload uses KDF parameter set {kdf_id}, unknown to this g2face release "
            f"(known: {sorted(KDF_PARAMETER_SETS)}); upgrade g2face to read it"
        ) from None


def check_kdf(secret: Secret, kdf_id: int, *, new_payload: bool) -> KdfParams:
    """The parameter set `kdf_id`, if `secret` may use it: the set must be meant for this kind of
    secret (a password under HKDF could be guessed at hash speed), and a new payload may not use a
    retired set. Raises `KdfPolicyError` (or `UnsupportedPayloadError` for an unknown id)."""
    params = kdf_params(kdf_id)
    if params.secret_kind != secret.kind:
        if new_payload:
            raise KdfPolicyError(
                f"KDF parameter set {kdf_id} ({params}) is for {params.secret_kind}s, not a {secret.kind}"
            )
        sealed_with = "a key file" if params.secret_kind == "key" else "a password"
        raise KdfPolicyError(
            f"this payload was sealed with {sealed_with} (KDF {params}), not a {secret.kind}: "
            f"give {sealed_with} instead"
        )
    if new_payload and params.retired:
        raise KdfPolicyError(
            f"KDF parameter set {kdf_id} ({params}) is retired (read for old images only); "
            f"new payloads use {default_kdf_id(secret)}"
        )
    return params


def master_key(secret: Secret, salt: bytes, kdf_id: int) -> bytes:
    params = kdf_params(kdf_id)
    if not params.stretched_prefix:
        return secret.derive(kdf_id, salt, params.derive)
    if len(salt) <= params.stretched_prefix:
        raise ValueError(f"KDF {kdf_id} needs a salt longer than {params.stretched_prefix} bytes")
    image_key = secret.derive(kdf_id, salt[: params.stretched_prefix], params.derive)
    info = f"g2face per-payload key kdf={kdf_id}".encode()
    return HKDF(hashes.SHA256(), MASTER_KEY_BYTES, salt=salt, info=info).derive(image_key)


def new_image_salt() -> bytes:
    """A fresh image salt: pass it to `new_salt` for every payload and container of one image."""
    return secrets.token_bytes(IMAGE_SALT_BYTES)


def new_salt(length: int, image_salt: bytes | None = None) -> bytes:
    """A fresh random salt of `length` bytes; with `image_salt`, it starts with it (the rest is
    random), so a password is stretched once for all of the image's payloads (KDF 3)."""
    if image_salt is None:
        return secrets.token_bytes(length)
    if len(image_salt) != IMAGE_SALT_BYTES:
        raise ValueError(f"image salt must be {IMAGE_SALT_BYTES} bytes, got {len(image_salt)}")
    return image_salt + secrets.token_bytes(length - IMAGE_SALT_BYTES)


def _expand(master: bytes, length: int, info: str) -> bytes:
    return HKDFExpand(hashes.SHA256(), length, info.encode()).derive(master)


def payload_keys(master: bytes, format_version: int, embedding_dim: int) -> tuple[bytes, bytes]:
    """(ChaCha20 key, HMAC key): independent subkeys, bound to the format and layout."""
    both = _expand(master, 64, f"g2face payload v{format_version} dim={embedding_dim} cipher+mac")
    return both[:32], both[32:]


def dummy_seed(master: bytes, face_index: int, attempt: int = 0) -> int:
    """A 64-bit seed for the dummy identity of face `face_index`, reproducible from key and salt.
    `attempt` > 0 gives further independent seeds for the same face (a video track that searches
    again because its dummy stayed too close to the original); attempt 0 is the face's own seed."""
    if face_index < 0 or attempt < 0:
        raise ValueError("face_index and attempt must be >= 0")
    label = f"g2face dummy identity v1 face={face_index}" + (f" attempt={attempt}" if attempt else "")
    return int.from_bytes(_expand(master, 8, label), "big")


def container_keys(master: bytes, format_version: int) -> tuple[bytes, bytes]:
    """(AEAD key, key-check value) of the exact-recovery container: labels distinct from the payload's,
    so the container never shares a key with a payload even if both used one salt."""
    aead_key = _expand(master, 32, f"g2face container v{format_version} aead")
    check = _expand(master, 4, f"g2face container v{format_version} key check")
    return aead_key, check
