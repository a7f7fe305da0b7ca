"""The e2e stage of the paper configuration at reduced width: the paper's backends (ArcFace
iresnet50, Deep3DFaceRecon ResNet-50 + a small BFM) with random weights, the paper's 16384 payload
bits and network layout with narrow generator/discriminator channels. Activation checkpointing
(what lets the full size train on a CPU) must give the plain run's gradients and BatchNorm
statistics, and the CLI's --batch-size / --activation-checkpointing must reach the stage."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from click.testing import CliRunner

from g2face.models import config as model_configs
from g2face.models.config import PAPER, DiscriminatorConfig, ExtractorConfig
from g2face.models.official import _synthetic_tensor
from g2face.models.stylegan2 import StyleGAN2Synthesis
from g2face.models.zoo import Priors
from g2face.priors.arcface import ArcFaceEncoder, IResNet
from g2face.priors.base import freeze
from g2face.priors.deep3d import Deep3DGeometry, ReconNet
from g2face.priors.tiny import TinyPerceptual
from g2face.training import checkpoint as ckpt
from g2face.training.config import config_from_dict, override_stage
from g2face.training.distributed import DistEnv
from g2face.training.memory import repeated_blocks
from g2face.training.stages import STAGE_CLASSES
from test_paper_config import _tiny_bfm  # the same synthetic BFM, larger

CPU = DistEnv(rank=0, world_size=1, device=torch.device("cpu"))
NARROW = (32, 32, 32, 32, 32, 16, 8)  # the parity fixture's widths, 4 … 256 px
PAPER_NARROW = dataclasses.replace(
    PAPER,
    name="paper-narrow",
    stylegan2=dataclasses.replace(PAPER.stylegan2, channels=NARROW),
    extractor=ExtractorConfig(width=16),
    discriminator=DiscriminatorConfig(channels=NARROW),
)


@pytest.fixture(autouse=True)
def narrow_preset(monkeypatch):
    monkeypatch.setitem(model_configs.PRESETS, PAPER_NARROW.name, PAPER_NARROW)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _random_state(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        name: _synthetic_tensor(name, {"shape": list(v.shape), "dtype": str(v.dtype)[6:]}, g)
        for name, v in module.state_dict().items()
    }


@pytest.fixture(scope="module")
def backend_states():
    with torch.device("meta"):
        arcface, recon = IResNet(), ReconNet()
    return _random_state(arcface, 1), _random_state(recon, 2)


def paper_priors(states) -> Priors:
    """The paper's identity and geometry backends (random weights), a narrow StyleGAN2 prior."""
    arcface, recon = states
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        generator = freeze(StyleGAN2Synthesis(PAPER_NARROW.stylegan2))
    return Priors(
        generator=generator,
        identity=ArcFaceEncoder(arcface),
        geometry=Deep3DGeometry(recon, _tiny_bfm(300, 500)),
        perceptual=TinyPerceptual(),
    )


def train_config(**extra):
    return config_from_dict(
        {
            "model": PAPER_NARROW.name,
            "priors": "paper",
            "stages": {"e2e": {"steps": 2, "batch_size": 2, "warmup_steps": 1}},
            "log_every": 1,
            "sample_every": 2,
            "checkpoint_every": 2,
            **extra,
        }
    )


def one_step_gradients(stage) -> dict[str, torch.Tensor]:
    """Run one training step; return every trained parameter's gradient as it reached the
    optimiser (generator and discriminator steps)."""
    grads: dict[str, torch.Tensor] = {}
    names = {id(p): f"{m}.{n}" for m, module in stage.modules().items() for n, p in module.named_parameters()}
    step = stage.optimizer_step

    def recording(optimizer):
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    grads[names[id(p)]] = p.grad.clone()
        step(optimizer)

    stage.optimizer_step = recording
    stage.train_step()
    return grads


def test_checkpointing_reaches_the_heavy_blocks(backend_states, tmp_path):
    stage = STAGE_CLASSES["e2e"](train_config(), CPU, tmp_path, priors=paper_priors(backend_states))
    blocks = {
        type(b).__name__
        for root in (stage.net, stage.priors.identity, stage.priors.geometry)
        for b in repeated_blocks(root)
    }
    assert {"StyledConv", "ResidualBlock", "ExtractorBlock", "IBasicBlock", "Bottleneck"} <= blocks


def test_e2e_with_checkpointing_matches_the_plain_step(backend_states, tmp_path):
    stages = {}
    for checkpointing in (False, True):
        config = train_config(activation_checkpointing=checkpointing)
        stage = STAGE_CLASSES["e2e"](
            config, CPU, tmp_path / str(checkpointing), priors=paper_priors(backend_states)
        )
        stage.prepare()
        stage.initialise()
        stages[checkpointing] = stage
    state = ckpt.rng_state()
    plain = one_step_gradients(stages[False])
    ckpt.set_rng_state(state)  # the same faces, latents, bits, noise and distortion
    checkpointed = one_step_gradients(stages[True])
    # the same parameters train (the R1 step included: step 0 regularises the discriminator)
    assert plain.keys() == checkpointed.keys() and len(plain) > 100
    for name, grad in plain.items():
        assert torch.allclose(grad, checkpointed[name], rtol=1e-4, atol=1e-6), name
    # a recomputed forward does not update E_p's BatchNorm statistics a second time
    for (name, a), b in zip(
        stages[False].net.state_dict().items(), stages[True].net.state_dict().values(), strict=True
    ):
        if "running_" in name or "num_batches" in name:
            assert torch.equal(a, b), name


def test_cli_trains_the_narrow_paper_e2e_for_a_step(backend_states, tmp_path, monkeypatch):
    from g2face.cli import cli
    from g2face.training import engine

    monkeypatch.setattr(engine, "build_priors", lambda *a, **k: paper_priors(backend_states))
    config = tmp_path / "narrow.yaml"
    config.write_text(f"model: {PAPER_NARROW.name}\npriors: paper\nlog_every: 1\n")
    args = [
        "train",
        "--config",
        str(config),
        "--stage",
        "e2e",
        "--steps",
        "1",
        "--run-dir",
        str(tmp_path / "run"),
    ]
    result = CliRunner().invoke(cli, [*args, "--batch-size", "2", "--activation-checkpointing", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "e2e: step 1" in result.output
    assert (tmp_path / "run" / "model.safetensors").is_file()
    refused = CliRunner().invoke(cli, [*args, "--batch-size", "1"])
    assert refused.exit_code != 0 and "batch_size must be at least 2" in refused.output


def test_override_stage_replaces_one_setting_and_keeps_the_rest():
    config = train_config()
    changed = override_stage(config, "e2e", batch_size=4)
    assert changed.stages["e2e"].batch_size == 4
    assert changed.stages["e2e"].steps == config.stages["e2e"].steps
    assert changed.stages["payload"] == config.stages["payload"]
