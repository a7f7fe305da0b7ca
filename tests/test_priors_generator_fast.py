"""The fast CPU inference path of the MobileStyleGAN synthesis (g2face.priors.mobilestylegan_fast):
parity with the reference modules, determinism, and when `SynthesisNetwork.forward` uses it."""

from __future__ import annotations

import pytest
import torch

from g2face import hub
from g2face.priors.base import freeze
from g2face.priors.mobilestylegan import MobileStyleGAN, haar_idwt, load_mobilestylegan
from g2face.priors.mobilestylegan_fast import haar_idwt_exact, synthesize_pooled

CHANNELS = (16, 16, 16, 8, 8)  # features at 4 ... 64; full output 128
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def tiny() -> MobileStyleGAN:
    torch.manual_seed(0)
    model = MobileStyleGAN(output_resolution=32, channels=CHANNELS, style_dim=32)
    with torch.no_grad():  # nonzero noise and biases, so the band edges and halos matter
        for name, tensor in [*model.named_buffers(), *model.named_parameters()]:
            if name.endswith(("noise", "bias")):
                tensor.normal_(0, 0.3)
    return freeze(model)


def _reference(model: MobileStyleGAN, wplus: torch.Tensor, resolution: int) -> torch.Tensor:
    model.synthesis.fast_inference = False
    try:
        return model.synthesis(wplus, None, resolution)
    finally:
        model.synthesis.fast_inference = True


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("resolution", [64, 8])
@pytest.mark.parametrize(("band_rows", "fast_from", "banded_from"), [(4, 8, 32), (16, 64, 64)])
@torch.no_grad()
def test_matches_the_reference(tiny, batch, resolution, band_rows, fast_from, banded_from):
    wplus = tiny.sample_wplus(batch, seed=batch)
    reference = _reference(tiny, wplus, resolution)
    fast = synthesize_pooled(tiny.synthesis, wplus, resolution, band_rows, fast_from, banded_from)
    assert fast.shape == reference.shape == (batch, 3, resolution, resolution)
    scale = float(reference.abs().max())
    assert scale > 0.1  # not a degenerate all-zero comparison
    assert float((fast - reference).abs().max()) <= TOLERANCE * max(scale, 1.0)


@torch.no_grad()
def test_is_deterministic(tiny):
    wplus = tiny.sample_wplus(2, seed=5)
    first = synthesize_pooled(tiny.synthesis, wplus, 32, 4, 8, 32)
    assert torch.equal(first, synthesize_pooled(tiny.synthesis, wplus, 32, 4, 8, 32))


def test_band_rows_must_tile_the_image(tiny):
    with pytest.raises(ValueError, match="band rows"), torch.no_grad():
        synthesize_pooled(tiny.synthesis, tiny.sample_wplus(1, seed=0), 64, band_rows=6)


def test_forward_uses_it_only_for_plain_pooled_inference(tiny):
    wplus = tiny.sample_wplus(1, seed=2)
    with torch.no_grad():
        fast = synthesize_pooled(tiny.synthesis, wplus, 32)
        assert torch.equal(tiny(wplus), fast)
        reference = _reference(tiny, wplus, 32)
        # a fuse hook, or the full resolution, keep the reference modules
        assert torch.equal(tiny(wplus, fuse=lambda resolution, x: x), reference)
        assert torch.equal(tiny.synthesis(wplus, None, 128), _reference(tiny, wplus, 128))  # full: no pooling
    # with autograd (the refinement, training): the reference, differentiable path
    wplus = wplus.clone().requires_grad_(True)
    image = tiny(wplus)
    assert torch.equal(image.detach(), reference)
    image.sum().backward()
    assert wplus.grad is not None and float(wplus.grad.abs().sum()) > 0


# ---------------------------------------------------------------- shipped weights


@pytest.mark.slow
@pytest.mark.skipif(
    not hub.is_cached("mobilestylegan"),
    reason="mobilestylegan asset not cached (run `g2face weights fetch mobilestylegan`)",
)
@torch.no_grad()
def test_shipped_generator_matches_the_reference_and_is_deterministic():
    generator = load_mobilestylegan(output_resolution=256, progress=False)
    for batch, seed, psi in ((1, 0, 0.7), (3, 1, 1.0), (3, 2, 0.7)):
        wplus = generator.sample_wplus(batch, seed=seed, truncation_psi=psi)
        reference = _reference(generator, wplus, 256)
        fast = generator(wplus)
        assert float((fast - reference).abs().max()) <= TOLERANCE
        assert float((fast.clamp(-1, 1) - reference.clamp(-1, 1)).abs().max()) <= TOLERANCE
        assert torch.equal(fast, generator(wplus))


def test_written_out_idwt_is_bit_identical_to_the_reference():
    torch.manual_seed(3)
    for shape in ((1, 2048, 4, 4), (3, 64, 16, 12)):
        coeffs = torch.randn(*shape) * 10
        assert torch.equal(haar_idwt_exact(coeffs), haar_idwt(coeffs))
