"""Embedding quantisation: fidelity, fixed rotation, packing."""

from __future__ import annotations

import numpy as np
import pytest

from g2face.payload.quantize import EmbeddingQuantizer, rotation


def embeddings(dim: int, n: int, heavy_tailed: bool, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if heavy_tailed:  # Student-t components around a shared offset, like real recognizer outputs
        x = rng.standard_t(3, (n, dim)) + 0.5 * rng.standard_normal(dim)
    else:
        x = rng.standard_normal((n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("dim", [128, 512])
@pytest.mark.parametrize("heavy_tailed", [False, True])
def test_cosine_after_quantisation(dim, heavy_tailed):
    quantizer = EmbeddingQuantizer(dim)
    x = embeddings(dim, 100, heavy_tailed)
    cosines = [float(quantizer.dequantize(quantizer.quantize(v)) @ v) for v in x]
    assert np.mean(cosines) >= 0.995 and min(cosines) > 0.99


def test_rotation_is_orthogonal_and_frozen():
    r = rotation(128)
    assert np.allclose(r @ r.T, np.eye(128), atol=1e-12)
    # Part of the format: these values must never change between releases.
    signs = [1, 1, 1, 1, -1, -1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1]
    assert np.array_equal(np.sign(r[0, :16]), signs) and np.isclose(r[1, 5], -0.12386283)


def test_codes_pack_to_nibbles_and_ignore_scale():
    quantizer = EmbeddingQuantizer(128)
    x = embeddings(128, 1, False)[0]
    codes = quantizer.quantize(x)
    assert codes.dtype == np.uint8 and codes.max() < 16
    assert np.array_equal(quantizer.from_bytes(quantizer.to_bytes(codes)), codes)
    assert len(quantizer.to_bytes(codes)) == 64
    assert np.array_equal(quantizer.quantize(7.5 * x), codes)
    with pytest.raises(ValueError):
        quantizer.quantize(np.zeros(128))
