"""MobileStyleGAN generative prior: structure, styles, fuse hook, sampling, gradients (tiny random nets),
and parity with OpenVINO on the shipped weights (skipped when the asset or the runtime is absent)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from g2face import hub
from g2face.priors.base import GenerativePrior, freeze
from g2face.priors.mobilestylegan import MobileStyleGAN, haar_idwt, load_mobilestylegan

TINY_CHANNELS = (16, 16, 8, 8)  # features at 4, 8, 16, 32; full output 64


@pytest.fixture
def tiny() -> MobileStyleGAN:
    torch.manual_seed(0)
    model = MobileStyleGAN(output_resolution=32, channels=TINY_CHANNELS, style_dim=32)
    with torch.no_grad():  # random noise maps and biases, so the fixed-noise path is exercised
        for name, buffer in model.named_buffers():
            if name.endswith("noise"):
                buffer.normal_(0, 0.1)
    return freeze(model)


def _features(model: MobileStyleGAN, wplus: torch.Tensor) -> dict[int, torch.Tensor]:
    seen: dict[int, torch.Tensor] = {}

    def hook(resolution: int, x: torch.Tensor) -> torch.Tensor:
        seen[resolution] = x
        return x

    seen[0] = model(wplus, hook)
    return seen


def test_satisfies_protocol_and_declares_styles(tiny):
    assert isinstance(tiny, GenerativePrior)
    assert tiny.n_styles == 8 and tiny.style_dim == 32
    assert tiny.style_resolutions() == [4, 8, 8, 16, 16, 32, 32, 32]
    assert tiny.feature_channels() == {4: 16, 8: 16, 16: 8, 32: 8}
    with pytest.raises(ValueError):
        MobileStyleGAN(output_resolution=48, channels=TINY_CHANNELS)


def test_lower_resolutions_are_exact_area_downsampling(tiny):
    wplus = tiny.sample_wplus(2, seed=1)
    tiny.output_resolution = 64
    full = tiny(wplus)
    assert full.shape == (2, 3, 64, 64)
    for resolution in (32, 16, 8):
        tiny.output_resolution = resolution
        assert torch.allclose(tiny(wplus), F.avg_pool2d(full, 64 // resolution), atol=1e-5)


def test_haar_idwt_inverts_the_haar_transform():
    x = torch.randn(2, 3, 8, 10)
    a, b, c, d = x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    bands = [(a + b + c + d) / 2, (a + b - c - d) / 2, (a - b + c - d) / 2, (a - b - c + d) / 2]
    coeffs = torch.cat([bands[0], torch.stack(bands[1:], dim=2).flatten(1, 2)], dim=1)
    assert torch.allclose(haar_idwt(coeffs), x, atol=1e-6)


def test_each_style_drives_its_declared_resolution(tiny):
    wplus = tiny.sample_wplus(1, seed=2)
    base = _features(tiny, wplus)
    for index, resolution in enumerate(tiny.style_resolutions()):
        moved = wplus.clone()
        moved[:, index] += 1.0
        feats = _features(tiny, moved)
        assert not torch.equal(feats[0], base[0]), f"style {index} does not reach the output"
        for r in tiny.feature_channels():
            if r < resolution:
                assert torch.equal(feats[r], base[r]), f"style {index} changed features at {r}"
        if index < tiny.n_styles - 1:  # the last row drives the to-image head only
            assert not torch.equal(feats[resolution], base[resolution])


def test_fuse_hook_is_called_once_per_resolution_and_its_output_is_used(tiny):
    calls = []

    def hook(resolution: int, x: torch.Tensor) -> torch.Tensor:
        calls.append((resolution, x.shape[1], x.shape[2]))
        return torch.zeros_like(x) if resolution == 8 else x

    wplus = tiny.sample_wplus(2, seed=3)
    out = tiny(wplus, hook)
    assert calls == [(r, c, r) for r, c in tiny.feature_channels().items()]
    assert not torch.allclose(out, tiny(wplus))


def test_sampling_is_seeded_and_truncation_pulls_to_w_avg(tiny):
    tiny.w_avg.copy_(torch.randn(32))
    assert torch.equal(tiny.sample(2, seed=5), tiny.sample(2, seed=5))
    assert not torch.allclose(tiny.sample(2, seed=5), tiny.sample(2, seed=6))
    wplus = tiny.sample_wplus(3, seed=7, truncation_psi=0.0)
    assert wplus.shape == (3, tiny.n_styles, 32)
    assert torch.allclose(wplus, tiny.w_avg.expand_as(wplus))
    w = tiny.mapping(tiny.sample_z(3, seed=7))
    assert torch.allclose(tiny.map(tiny.sample_z(3, seed=7), 0.5), (w + tiny.w_avg) / 2, atol=1e-6)


def test_frozen_by_default_gradients_reach_wplus_and_trainable_copy(tiny):
    assert not any(p.requires_grad for p in tiny.parameters()) and not tiny.training
    wplus = tiny.sample_wplus(2, seed=8).clone().requires_grad_(True)
    tiny(wplus).square().mean().backward()
    assert wplus.grad is not None and bool((wplus.grad.abs().sum(dim=(0, 2)) > 0).all())

    twin = tiny.trainable_copy()
    assert all(p.requires_grad for p in twin.synthesis.parameters()) and twin.synthesis.training
    assert not any(p.requires_grad for p in twin.mapping.parameters())
    assert not any(p.requires_grad for p in tiny.parameters())
    twin(tiny.sample_wplus(1, seed=9)).mean().backward()
    assert twin.synthesis.blocks[0].conv1.weight_dw.grad is not None


# ---------------------------------------------------------------- shipped weights

needs_asset = pytest.mark.skipif(
    not hub.is_cached("mobilestylegan"),
    reason="mobilestylegan asset not cached (run `g2face weights fetch mobilestylegan`)",
)


def _openvino():
    ov = pytest.importorskip("openvino", reason="openvino (the reference runtime) is not installed")
    return ov, ov.Core()


def _compile(ov, core, model):
    return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


@pytest.fixture(scope="module")
def shipped() -> MobileStyleGAN:
    return load_mobilestylegan(output_resolution=1024, progress=False)


@needs_asset
def test_shipped_model_is_frozen_and_declares_its_layout(shipped):
    assert shipped.n_styles == 16 and shipped.output_resolution == 1024
    assert shipped.feature_channels() == {
        4: 512,
        8: 512,
        16: 512,
        32: 512,
        64: 512,
        128: 256,
        256: 128,
        512: 64,
    }
    assert not any(p.requires_grad for p in shipped.parameters())
    assert float(shipped.w_avg.abs().sum()) > 0


@needs_asset
@pytest.mark.parity
def test_mapping_and_64px_features_match_openvino(shipped):
    ov, core = _openvino()
    folder = hub.fetch("mobilestylegan", progress=False)
    z = np.random.default_rng(0).standard_normal((3, 512)).astype(np.float32)
    mapping = _compile(ov, core, core.read_model(folder / "MappingNetwork.xml"))
    w_ref = np.concatenate([mapping(z[i : i + 1])[0] for i in range(len(z))])
    with torch.no_grad():
        w = shipped.mapping(torch.from_numpy(z))
    assert np.abs(w.numpy() - w_ref).max() <= 1e-4

    # Reduced synthesis check: cut the IR after the last activation at 64x64 (cheap to run).
    synthesis = core.read_model(folder / "SynthesisNetwork.xml")
    cut = [
        op
        for op in synthesis.get_ordered_ops()
        if op.get_type_name() == "PRelu" and list(op.get_output_shape(0))[-1] == 64
    ][-1]
    partial = _compile(ov, core, ov.Model([cut.output(0)], synthesis.get_parameters()))
    feats = _features(shipped, shipped.broadcast(torch.from_numpy(w_ref[:1])))
    assert np.abs(feats[64].numpy() - partial(w_ref[:1])[0]).max() <= 1e-3


@needs_asset
@pytest.mark.parity
@pytest.mark.slow
def test_1024_and_256_outputs_match_openvino(shipped):
    ov, core = _openvino()
    folder = hub.fetch("mobilestylegan", progress=False)
    mapping = _compile(ov, core, core.read_model(folder / "MappingNetwork.xml"))
    synthesis = _compile(ov, core, core.read_model(folder / "SynthesisNetwork.xml"))
    for seed in (1, 2):
        z = np.random.default_rng(seed).standard_normal((1, 512)).astype(np.float32)
        reference = synthesis(mapping(z)[0])[0]
        wplus = shipped.broadcast(shipped.mapping(torch.from_numpy(z)))
        with torch.no_grad():
            image = shipped(wplus)
            shipped.output_resolution = 256
            small = shipped(wplus)
            shipped.output_resolution = 1024
        assert np.abs(image.numpy() - reference).max() <= 1e-3
        area = F.avg_pool2d(torch.from_numpy(reference), 4)
        assert (small - area).abs().max() <= 1e-3
