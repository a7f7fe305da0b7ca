"""`g2face.priors.backends`: the generator on ONNX Runtime / OpenVINO, parity-tested against PyTorch."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from g2face import hub
from g2face.priors import backends
from g2face.priors.backends import BackendError, RuntimeGenerator, generator_on, graph_path, use_backend
from g2face.priors.mobilestylegan import MobileStyleGAN

PARITY = 1e-4
"""Issue #17: max |runtime − PyTorch| on images in [-1, 1]."""


def _runtime(name: str) -> str:
    pytest.importorskip(name, reason=f"{name} is not installed (pip install 'g2face[runtime]')")
    return name


RUNTIMES = [pytest.param(r, marks=pytest.mark.parity) for r in backends.RUNTIMES]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private asset cache: graphs and calibrations are written there."""
    monkeypatch.setenv(hub.ENV_HOME, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _tiny_generator(seed: int = 0) -> MobileStyleGAN:
    torch.manual_seed(seed)
    generator = MobileStyleGAN(32, channels=(32, 32, 16, 16)).eval()
    for p in generator.parameters():  # non-trivial modulations, biases and noise maps
        p.data.normal_(0, 0.3)
    for name, buffer in generator.named_buffers():
        if name.endswith("noise"):
            buffer.normal_(0, 0.3)
    return generator.requires_grad_(False)


class _Holder(nn.Module):
    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_runtime_generator_matches_pytorch(cache, runtime):
    reference = _tiny_generator()
    generator = generator_on(reference, _runtime(runtime))
    assert isinstance(generator, RuntimeGenerator) and generator.backend == runtime
    wplus = torch.randn(3, reference.n_styles, reference.style_dim)
    with torch.no_grad():
        want, got = reference(wplus), generator(wplus)
    assert got.shape == want.shape == (3, 3, 32, 32)
    assert (got.clamp(-1, 1) - want.clamp(-1, 1)).abs().max() <= PARITY
    # The batch size is free, and a copy of the module makes its own session.
    twin = copy.deepcopy(generator)
    with torch.no_grad():
        assert (twin(wplus[:1]) - got[:1]).abs().max() <= PARITY


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_hooks_and_gradients_run_the_pytorch_modules(cache, runtime):
    reference = _tiny_generator()
    generator = generator_on(reference, _runtime(runtime))
    seen = []

    def fuse(resolution, x):
        seen.append(resolution)
        return x

    wplus = torch.randn(1, reference.n_styles, reference.style_dim, requires_grad=True)
    generator(wplus, fuse).sum().backward()  # the runtime has no hook and no gradient
    assert seen == [4, 8, 16, 32] and wplus.grad is not None and wplus.grad.abs().sum() > 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_use_backend_swaps_the_generator_and_torch_restores_it(cache, runtime):
    model = _Holder(_tiny_generator())
    keys = set(model.state_dict())
    assert use_backend(model, _runtime(runtime)) is model
    assert isinstance(model.generator, RuntimeGenerator)
    assert set(model.state_dict()) == keys  # checkpoints read and write the same names
    use_backend(model, "torch")
    assert type(model.generator) is MobileStyleGAN
    with pytest.raises(BackendError, match="MobileStyleGAN"):
        use_backend(_Holder(nn.Identity()), runtime)
    assert isinstance(use_backend(_Holder(nn.Identity()), "auto").generator, nn.Identity)


def test_graph_is_cached_per_weights(cache):
    pytest.importorskip("onnx", reason="the ONNX exporter needs the onnx package")
    generator = _tiny_generator()
    path = graph_path(generator)
    built = path.stat().st_mtime_ns
    assert graph_path(generator) == path and path.stat().st_mtime_ns == built  # not rebuilt
    assert path.is_relative_to(cache)
    other = graph_path(_tiny_generator(seed=1))
    assert other != path and other.is_file()


def test_auto_measures_once_and_caches_its_choice(cache, monkeypatch):
    pytest.importorskip("onnx", reason="the ONNX exporter needs the onnx package")
    runtime = next((r for r in backends.RUNTIMES if backends._installed(r)), None)
    if runtime is None:
        pytest.skip("no graph runtime installed (pip install 'g2face[runtime]')")
    calls = []

    def fake_calibrate(reference, threads):
        calls.append(threads)
        return {"torch": 2.0, runtime: 1.0}

    monkeypatch.setattr(backends, "calibrate", fake_calibrate)
    generator = _tiny_generator()
    first = generator_on(generator, "auto", threads=1)
    again = generator_on(generator, "auto", threads=1)
    assert isinstance(first, RuntimeGenerator) and first.backend == again.backend == runtime
    assert calls == [1]  # the second choice came from the cache
    cached = json.loads(graph_path(generator).with_name(backends.CALIBRATION).read_text())
    (entry,) = cached.values()
    assert entry == {"choice": runtime, "ms_per_render": {"torch": 2.0, runtime: 1.0}}


def test_calibration_times_every_installed_backend(cache):
    pytest.importorskip("onnx", reason="the ONNX exporter needs the onnx package")
    ms = backends.calibrate(_tiny_generator(), threads=1, renders=1)
    assert set(ms) == set(backends.available_backends()) and all(t > 0 for t in ms.values())


def test_unknown_or_missing_backend_is_one_line(cache, monkeypatch):
    generator = _tiny_generator()
    with pytest.raises(BackendError, match="unknown backend 'tensorrt'"):
        generator_on(generator, "tensorrt")
    monkeypatch.setattr(backends, "_installed", lambda runtime: False)
    with pytest.raises(BackendError, match=r"pip install 'g2face\[runtime\]'"):
        generator_on(generator, "openvino")
    assert generator_on(generator, "auto") is generator  # nothing else installed: PyTorch


@pytest.mark.parity
@pytest.mark.skipif(not hub.is_cached("mobilestylegan"), reason="needs the cached MobileStyleGAN asset")
@pytest.mark.parametrize("runtime", backends.RUNTIMES)
def test_shipped_generator_parity(runtime):
    from g2face.priors.mobilestylegan import load_mobilestylegan

    reference = load_mobilestylegan(256, progress=False)
    generator = generator_on(reference, _runtime(runtime))
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, reference.style_dim, generator=g)
    wplus = reference.broadcast(reference.map(z, 0.7))
    wplus = wplus + 0.3 * torch.randn(wplus.shape, generator=g)  # W+ rows differ, as GIE's do
    with torch.no_grad():
        want, got = reference(wplus), generator(wplus)
    assert (got.clamp(-1, 1) - want.clamp(-1, 1)).abs().max() <= PARITY


def test_cli_offers_the_same_backends():
    from click.testing import CliRunner

    from g2face.cli import cli
    from g2face.cli.options import BACKENDS

    assert BACKENDS == backends.CHOICES
    result = CliRunner().invoke(cli, ["anonymize", "x.jpg", "-o", "out", "--backend", "tensorrt"])
    assert result.exit_code == 2 and "'tensorrt' is not one of" in result.output
