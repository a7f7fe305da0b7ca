"""Payload codec: round trips, error correction limits, wrong secrets, absent payloads, versions."""

from __future__ import annotations

import numpy as np
import pytest

from g2face.payload import (
    KDF_PARAMETER_SETS,
    KdfParams,
    KdfPolicyError,
    PayloadCodec,
    PayloadNotFoundError,
    Secret,
    UnsupportedPayloadError,
    kdf,
)
from g2face.payload.codec import HEADER_BYTES, MAGIC

CHEAP_KDF_ID = 15


@pytest.fixture(scope="module")
def codec() -> PayloadCodec:
    return PayloadCodec(128)


@pytest.fixture
def cheap_password_kdf(monkeypatch):
    """Passwords use a test-only, fast scrypt set so many trials stay quick; the production set
    is exercised on its own in test_production_password_kdf."""
    monkeypatch.setitem(KDF_PARAMETER_SETS, CHEAP_KDF_ID, KdfParams(CHEAP_KDF_ID, "scrypt", 4, 8, 1))
    monkeypatch.setattr(kdf, "PASSWORD_KDF_ID", CHEAP_KDF_ID)


def unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    x = rng.standard_normal(dim)
    return x / np.linalg.norm(x)


def key() -> Secret:
    return Secret(np.random.default_rng().bytes(32), "key")


def flip_random(bits: np.ndarray, ber: float, rng: np.random.Generator) -> np.ndarray:
    return bits ^ (rng.random(bits.size) < ber).astype(np.uint8)


def verified(codec: PayloadCodec, probs: np.ndarray, secret: Secret) -> bool:
    try:
        return codec.decode(probs, secret).verified
    except PayloadNotFoundError:
        return False


def garble_burst(probs: np.ndarray, length: int, rng: np.random.Generator, soft: bool) -> np.ndarray:
    """A run of `length` unreadable bits: random hard bits, or near-0.5 probabilities."""
    out = probs.astype(np.float64).copy()
    start = rng.integers(0, out.size - length)
    out[start : start + length] = rng.uniform(0.4, 0.6, length) if soft else rng.integers(0, 2, length)
    return out


def test_layout_is_fixed(codec):
    # The format is frozen per (dim, version): a change here breaks every anonymized image.
    assert codec.n_bits == 1296 and (codec.ecc.codewords, codec.ecc.nsym) == (1, 84)
    big = PayloadCodec(512)
    assert big.n_bits == 4512 and (big.ecc.codewords, big.ecc.nsym) == (3, 98)


@pytest.mark.parametrize("dim", [128, 512])
def test_round_trip_key_file(tmp_path, dim):
    codec = PayloadCodec(dim)
    embedding = unit(np.random.default_rng(dim), dim)
    writer = Secret.generate_key_file(tmp_path / "k")
    enc = codec.encode(embedding, writer)
    assert enc.bits.shape == (codec.n_bits,) and enc.bits.dtype == np.uint8
    dec = codec.decode(enc.bits, Secret.from_key_file(tmp_path / "k"))
    assert dec.verified and dec.bit_errors_corrected == 0 and dec.salt == enc.salt
    assert float(dec.embedding @ embedding) > 0.99
    assert np.isclose(np.linalg.norm(dec.embedding), 1, atol=1e-5)


def test_production_password_kdf(codec):
    # OWASP's current scrypt guidance, over the image salt; images sealed before KDF 3 stay readable
    assert str(KDF_PARAMETER_SETS[kdf.PASSWORD_KDF_ID]) == "scrypt(N=2^17, r=8, p=1)"
    assert KDF_PARAMETER_SETS[kdf.PASSWORD_KDF_ID].stretched_prefix == kdf.IMAGE_SALT_BYTES
    assert not KDF_PARAMETER_SETS[2].retired
    embedding = unit(np.random.default_rng(0), 128)
    enc = codec.encode(embedding, Secret.from_password("correct horse"))
    assert enc.kdf_id == kdf.PASSWORD_KDF_ID
    dec = codec.decode(enc.bits, Secret.from_password("correct horse"))  # a fresh object: no cache
    assert dec.verified and float(dec.embedding @ embedding) > 0.99


def test_retired_password_kdf_is_read_but_never_written(codec):
    """Images sealed by earlier releases (scrypt N=2^16, id 1) still recover; new payloads may not
    be sealed with it."""
    assert KDF_PARAMETER_SETS[1].retired and str(KDF_PARAMETER_SETS[1]) == "scrypt(N=2^16, r=8, p=1)"
    embedding, secret = unit(np.random.default_rng(10), 128), Secret.from_password("correct horse")
    old = codec.ecc.encode(codec.frame(embedding, secret, bytes(range(8)), 1))
    dec = codec.decode(old, Secret.from_password("correct horse"))
    assert dec.verified and dec.kdf_id == 1 and float(dec.embedding @ embedding) > 0.99
    with pytest.raises(KdfPolicyError, match="retired"):
        codec.encode(embedding, secret, kdf_id=1)


def test_kdf_is_bound_to_the_kind_of_secret(codec, cheap_password_kdf):
    """A password under HKDF (no stretching) could be guessed at hash speed: refused both ways."""
    embedding, password = unit(np.random.default_rng(11), 128), Secret.from_password("correct horse")
    with pytest.raises(KdfPolicyError, match="for keys, not a password"):
        codec.encode(embedding, password, kdf_id=0)
    with pytest.raises(KdfPolicyError, match="for passwords, not a key"):
        codec.encode(embedding, key(), kdf_id=CHEAP_KDF_ID)
    # a payload sealed that way (by another tool, or an edited header) is not decoded either
    weak = codec.ecc.encode(codec.frame(embedding, password, bytes(8), 0))
    with pytest.raises(KdfPolicyError, match="sealed with a key file"):
        codec.decode(weak, password)
    assert isinstance(codec.decode_batch(weak[None], password)[0], KdfPolicyError)


def test_nan_bits_are_a_payload_error_not_a_crash(codec):
    secret = key()
    bits = codec.encode(unit(np.random.default_rng(12), 128), secret).bits.astype(np.float64)
    logits = 8 * (2 * bits - 1)
    logits[5] = np.nan
    with pytest.raises(PayloadNotFoundError, match="NaN for 1 of 1296"):
        codec.decode_logits(logits, secret)
    probs = bits.copy()
    probs[:3] = np.nan
    assert isinstance(codec.decode_batch(np.stack([probs, bits]), secret)[0], PayloadNotFoundError)
    assert codec.decode_batch(np.stack([probs, bits]), secret)[1].verified
    # infinite logits are certainty, not an error
    assert codec.decode_logits(np.where(bits > 0, np.inf, -np.inf), secret).verified


def test_header_kdf_parameters_are_honoured(codec, cheap_password_kdf, monkeypatch):
    embedding = unit(np.random.default_rng(1), 128)
    enc = codec.encode(embedding, Secret.from_password("pw"))
    assert enc.kdf_id == CHEAP_KDF_ID
    monkeypatch.setattr(kdf, "PASSWORD_KDF_ID", 2)  # the decoder's default no longer matches
    assert codec.decode(enc.bits, Secret.from_password("pw")).verified
    # The same frame claiming another password parameter set derives another key.
    frame = bytearray(codec.frame(embedding, Secret.from_password("pw"), enc.salt, CHEAP_KDF_ID))
    frame[1] = (frame[1] & 0xF0) | 1
    assert not codec.decode(codec.ecc.encode(bytes(frame)), Secret.from_password("pw")).verified


def test_unknown_version_and_kdf_are_refused(codec):
    secret = key()
    frame = bytearray(codec.frame(unit(np.random.default_rng(2), 128), secret, bytes(8), 0))
    newer = frame.copy()
    newer[1] = 7 << 4
    with pytest.raises(UnsupportedPayloadError, match="version 7 is not supported"):
        codec.decode(codec.ecc.encode(bytes(newer)), secret)
    unknown_kdf = frame.copy()
    unknown_kdf[1] = 1 << 4 | 9
    with pytest.raises(UnsupportedPayloadError, match="KDF parameter set 9"):
        codec.decode(codec.ecc.encode(bytes(unknown_kdf)), secret)
    with pytest.raises(UnsupportedPayloadError):
        PayloadCodec(128, version=2)


def test_salts_differ_and_fixed_salt_is_deterministic(codec, cheap_password_kdf):
    embedding, secret = unit(np.random.default_rng(3), 128), Secret.from_password("pw")
    a, b = codec.encode(embedding, secret), codec.encode(embedding, secret)
    assert a.salt != b.salt
    ciphertext = slice(8 * HEADER_BYTES, 8 * (HEADER_BYTES + 64))
    assert (a.bits[ciphertext] != b.bits[ciphertext]).mean() > 0.3
    c = codec.encode(embedding, Secret.from_password("pw"), salt=a.salt)
    assert np.array_equal(a.bits, c.bits) and a.dummy_seed == c.dummy_seed


def test_dummy_seed_depends_on_key_salt_and_face(codec):
    secret, salt = key(), bytes(range(8))
    seeds = {codec.dummy_seed(secret, salt, i) for i in range(4)}
    assert len(seeds) == 4
    assert codec.dummy_seed(secret, salt, 1) == codec.dummy_seed(secret, salt, 1)
    assert codec.dummy_seed(key(), salt, 1) != codec.dummy_seed(secret, salt, 1)
    assert codec.encode(unit(np.random.default_rng(4), 128), secret, salt, 2).dummy_seed == codec.dummy_seed(
        secret, salt, 2
    )


def test_wrong_password_gives_unrelated_unverified_embedding(codec, cheap_password_kdf):
    rng = np.random.default_rng(5)
    cosines = []
    for i in range(100):
        embedding = unit(rng, 128)
        enc = codec.encode(embedding, Secret.from_password(f"right {i}"))
        dec = codec.decode(enc.bits, Secret.from_password(f"wrong {i}"))
        assert not dec.verified and dec.bit_errors_corrected == 0
        cosines.append(float(dec.embedding @ embedding))
    assert np.mean(np.abs(cosines)) < 0.2 and max(cosines) < 0.5


def test_wrong_key_kind_says_which_secret_to_give(codec, cheap_password_kdf):
    enc = codec.encode(unit(np.random.default_rng(6), 128), Secret.from_password("pw"))
    with pytest.raises(KdfPolicyError, match="sealed with a password"):
        codec.decode(enc.bits, key())


@pytest.mark.parametrize("dim,ber", [(128, 0.02), (512, 0.02)])
def test_random_errors_up_to_design_limit_hard_bits(dim, ber):
    codec, rng, secret = PayloadCodec(dim), np.random.default_rng(7), key()
    embedding = unit(rng, dim)
    enc = codec.encode(embedding, secret)
    for _ in range(10):
        received = flip_random(enc.bits, ber, rng)
        dec = codec.decode(received, secret)
        assert dec.verified and dec.bit_errors_corrected == int((received != enc.bits).sum())
        assert float(dec.embedding @ embedding) > 0.99


def test_logits_from_a_noisy_channel(codec):
    """Soft input through decode_logits at 2.5% raw errors (Gaussian channel); the gain of soft
    input is mostly for unreadable regions, see test_burst_errors."""
    # A fixed key, salt and noise: at this error rate about 1 decode in 1,000 fails (measured), so
    # with a fresh random salt per run the test failed now and then.
    rng, secret = np.random.default_rng(8), Secret(np.random.default_rng(80).bytes(32), "key")
    enc = codec.encode(unit(rng, 128), secret, salt=bytes(range(8)))
    sigma = 1 / 1.96  # hard-decision error rate Q(1/sigma) = 2.5%
    for _ in range(10):
        received = (2.0 * enc.bits - 1) + sigma * rng.standard_normal(enc.bits.size)
        assert codec.decode_logits(2 * received / sigma**2, secret).verified


@pytest.mark.parametrize("soft,length", [(False, 256), (True, 480)])
def test_burst_errors(codec, soft, length):
    rng, secret = np.random.default_rng(9), key()
    enc = codec.encode(unit(rng, 128), secret)
    for _ in range(5):
        received = garble_burst(flip_random(enc.bits, 0.002, rng), length, rng, soft)
        assert codec.decode(received, secret).verified


def beyond_limit_trials(n: int, seed: int) -> int:
    """Decode n payloads damaged beyond the design limit; count wrong-but-verified results."""
    codec, rng, secret = PayloadCodec(128), np.random.default_rng(seed), key()
    false_accepts = 0
    for i in range(n):
        embedding = unit(rng, 128)
        enc = codec.encode(embedding, secret, salt=rng.bytes(8))
        received = flip_random(enc.bits, rng.uniform(0.04, 0.3), rng).astype(np.float64)
        if i % 2:
            received = garble_burst(received, int(rng.integers(400, 1000)), rng, soft=bool(i % 4 == 1))
        try:
            dec = codec.decode(received, secret)
        except PayloadNotFoundError:
            continue
        false_accepts += dec.verified and float(dec.embedding @ embedding) < 0.99
    return false_accepts


def test_beyond_limit_never_wrong_but_verified():
    assert beyond_limit_trials(100, seed=10) == 0


@pytest.mark.slow
def test_beyond_limit_never_wrong_but_verified_10000_trials():
    assert beyond_limit_trials(10_000, seed=11) == 0


def test_absent_or_truncated_payload(codec):
    rng, secret = np.random.default_rng(12), key()
    for _ in range(10):
        with pytest.raises(PayloadNotFoundError, match="no g2face payload"):
            codec.decode(rng.random(codec.n_bits), secret)
    enc = codec.encode(unit(rng, 128), secret)
    with pytest.raises(PayloadNotFoundError, match="truncated"):
        codec.decode(enc.bits[:-8], secret)
    with pytest.raises(ValueError, match="decode_logits"):
        codec.decode(enc.bits * 4.0 - 2, secret)


def test_damaged_payload_with_readable_tag_is_unverified(codec):
    rng, secret = np.random.default_rng(13), key()
    enc = codec.encode(unit(rng, 128), secret)
    received = enc.bits.copy()
    received[8 * HEADER_BYTES :] ^= (rng.random(received.size - 8 * HEADER_BYTES) < 0.2).astype(np.uint8)
    assert received[:8].tolist() == np.unpackbits(np.uint8(MAGIC)).tolist()
    dec = codec.decode(received, secret)
    assert not dec.verified and dec.bit_errors_corrected is None


def test_batch_helpers(codec):
    rng, secret = np.random.default_rng(14), key()
    embeddings = np.stack([unit(rng, 128) for _ in range(3)])
    encoded = codec.encode_batch(embeddings, secret)
    assert len({e.salt for e in encoded}) == 3
    rows = np.stack([e.bits for e in encoded] + [rng.integers(0, 2, codec.n_bits)])
    decoded = codec.decode_batch(rows, secret)
    assert [d.verified for d in decoded[:3]] == [True] * 3
    assert isinstance(decoded[3], PayloadNotFoundError)


def test_password_is_stretched_once_per_image_salt_and_every_payload_keeps_its_own_key(codec, monkeypatch):
    """KDF 3: scrypt runs over the image salt (first 4 bytes) once; HKDF over the whole salt then
    separates the payloads, so two faces of one image never share a keystream."""
    calls = []
    params = KdfParams(CHEAP_KDF_ID, "scrypt", 4, 8, 1, stretched_prefix=kdf.IMAGE_SALT_BYTES)
    monkeypatch.setitem(KDF_PARAMETER_SETS, CHEAP_KDF_ID, params)
    monkeypatch.setattr(kdf, "PASSWORD_KDF_ID", CHEAP_KDF_ID)
    real_derive = KdfParams.derive
    monkeypatch.setattr(KdfParams, "derive", lambda self, m, s: calls.append(s) or real_derive(self, m, s))
    secret = Secret.from_password("correct horse")
    image_salt = kdf.new_image_salt()
    salts = [kdf.new_salt(8, image_salt) for _ in range(5)]
    assert len(set(salts)) == 5 and all(s[:4] == image_salt for s in salts)
    embeddings = [unit(np.random.default_rng(i), 128) for i in range(5)]
    encoded = [codec.encode(e, secret, salt=s) for e, s in zip(embeddings, salts, strict=True)]
    assert calls == [image_salt]  # one stretch for the five faces
    masters = {kdf.master_key(secret, s, CHEAP_KDF_ID) for s in salts}
    assert len(masters) == 5
    for enc, e in zip(encoded, embeddings, strict=True):
        decoded = codec.decode(enc.bits, Secret.from_password("correct horse"))
        assert decoded.verified and float(decoded.embedding @ e) > 0.99
    assert not codec.decode(encoded[0].bits, Secret.from_password("wrong")).verified
    with pytest.raises(ValueError, match="image salt"):
        kdf.new_salt(8, b"abc")
