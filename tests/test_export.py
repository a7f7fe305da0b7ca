"""`g2face export --format onnx`: the default's networks as ONNX, checked against PyTorch."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from g2face import hub
from g2face.cli import cli
from g2face.models.zoo import PACKAGED_WEIGHTS
from g2face.priors.mobilestylegan import ConstantWeightSynthesis, MobileStyleGAN

ASSETS = ("mobilestylegan", "sface", "face-landmarker")


def test_constant_weight_synthesis_matches_the_reference_generator():
    torch.manual_seed(0)
    generator = MobileStyleGAN(32, channels=(32, 32, 16, 16)).eval()
    for p in generator.parameters():  # non-trivial noise maps, biases and modulations
        p.data.normal_(0, 0.3)
    for name, buffer in generator.named_buffers():
        if name.endswith("noise"):
            buffer.normal_(0, 0.3)
    wplus = torch.randn(3, generator.n_styles, generator.style_dim)
    constant = ConstantWeightSynthesis(generator.synthesis, 32)
    with torch.no_grad():
        want, got = generator(wplus), constant(wplus)
    assert got.shape == want.shape == (3, 3, 32, 32)
    assert (got - want).abs().max() < 1e-5 * want.abs().max()
    with pytest.raises(ValueError, match="power of two"):
        ConstantWeightSynthesis(generator.synthesis, 24)


@pytest.mark.skipif(
    not (PACKAGED_WEIGHTS / "g2face-lite.safetensors").is_file() or not all(hub.is_cached(a) for a in ASSETS),
    reason="needs the shipped g2face-lite weights and the cached priors (g2face weights fetch --all)",
)
def test_cli_exports_every_network_with_a_manifest_and_onnxruntime_parity(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="ONNX Runtime is the parity extra")
    out = tmp_path / "export"
    result = CliRunner().invoke(cli, ["export", "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    names = {e["name"] for e in manifest["networks"]}
    assert names == {"generator", "gie_dummy", "gie_styles", "identity", "geometry"}
    assert manifest["candidates"]["spread"] == 1.5  # how dummies' W+ are used: the shipped setting
    assert manifest["fusion"]["render_only"] is True
    for entry in manifest["networks"]:
        data = (out / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert entry["onnxruntime_max_abs_difference"] <= 1e-4, entry
    # The generator takes any batch size: run it on a batch the export never saw.
    session = onnxruntime.InferenceSession(str(out / "generator.onnx"), providers=["CPUExecutionProvider"])
    image = session.run(None, {"wplus": np.zeros((3, 16, 512), np.float32)})[0]
    assert image.shape == (3, 3, 256, 256) and np.isfinite(image).all()
    # An existing output is not replaced without --force; a wrong model is one line.
    again = CliRunner().invoke(cli, ["export", "--out", str(out)])
    assert again.exit_code != 0 and "--force" in again.output
    wrong = CliRunner().invoke(cli, ["export", "--out", str(tmp_path / "x"), "--model", "no-such-model"])
    assert wrong.exit_code != 0 and len(wrong.output.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*"))


@pytest.mark.skipif(
    not (PACKAGED_WEIGHTS / "g2face-lite.safetensors").is_file() or not all(hub.is_cached(a) for a in ASSETS),
    reason="needs the shipped g2face-lite weights and the cached priors (g2face weights fetch --all)",
)
@torch.no_grad()
def test_the_exported_styles_graph_is_what_the_anonymizer_renders_from():
    """`gie_styles` (f_mlp with the pose and expression corrections) gives the W+ the anonymizer
    computes for the same identity and geometry, so the exported networks render the same faces."""
    from g2face.export.onnx import _Styles
    from g2face.models.zoo import load_model

    model = load_model("g2face-lite", attributes="free")
    assert model.pose_correction is not None and model.expression_correction is not None
    g = torch.Generator().manual_seed(0)
    identity = model.dummy_identities([3, 4], torch.float32)
    geometry = model.gie.style_mlp.input_mean[model.gie.config.identity_dim :].expand(2, -1).clone()
    geometry[:, -3:-1] += torch.randn(2, 2, generator=g) * 15  # turned and tilted
    geometry[:, -3 - 52 + 44 : -3 - 52 + 46] = torch.tensor([[0.9, 0.8], [0.0, 0.1]])  # a smile, none
    torch.testing.assert_close(_Styles(model)(identity, geometry), model.styles(identity, geometry))
    plain = model.with_fusion(follow_pose=False, follow_expression=False)
    assert not torch.allclose(_Styles(model)(identity, geometry), _Styles(plain)(identity, geometry))
