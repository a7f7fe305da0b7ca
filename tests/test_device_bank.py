"""scripts/device/bank.py: a bank rendered as fp16 shards (the accelerator's side) expands here into
the bank stage's batch files, with w recomputed from the seeds exactly as the renderer drew them."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from g2face.priors.mobilestylegan import MobileStyleGAN
from g2face.priors.tiny import TinyGeometryEncoder, TinyIdentityEncoder
from g2face.training.stages import BANK_SEED_STRIDE

TWO_BATCHES_MIB = 2 * 4 * 223 * 2 / 2**20  # 2 batches of 4 samples, 223 fp16 values each
SCRIPT = Path(__file__).parents[1] / "scripts" / "device" / "bank.py"


@pytest.fixture(scope="module")
def bank():
    spec = importlib.util.spec_from_file_location("device_bank", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _geometry():
    # The tiny stand-in's shape and expression sizes are whatever it is given; the bank's are
    # MediaPipe's (40 shape coefficients, 52 blendshapes), which the fp16 shard layout assumes.
    return TinyGeometryEncoder(shape_dim=40, expression_dim=52, seed=1).eval()


def test_rendered_shards_expand_to_the_bank_stage_files(bank, tmp_path):
    torch.manual_seed(0)
    generator = MobileStyleGAN(output_resolution=32, channels=(16, 16, 8, 8), style_dim=32).eval()
    identity, geometry = TinyIdentityEncoder(128, seed=0).eval(), _geometry()
    kit_generator = copy.deepcopy(generator)
    bank.round_like_kit(kit_generator)  # what the accelerator loads from the kit's fp16 file
    summary = bank.render_bank(
        kit_generator,
        copy.deepcopy(kit_generator),
        identity,
        geometry,
        tmp_path / "out",
        seed=3,
        batch=4,
        minutes=5,
        max_batches=5,
        shard_mib=TWO_BATCHES_MIB,
    )
    assert summary["samples"] == 20
    shards = sorted((tmp_path / "out").glob("bank-*.safetensors"))
    assert len(shards) == 3  # two batches a shard, the last one short

    rounded = copy.deepcopy(generator)
    bank.round_like_kit(rounded)  # as the CLI's expand does
    assert bank.expand_shards(rounded, shards, tmp_path / "bank", name_offset=100) == 20
    for index in range(5):
        record = load_file(tmp_path / "bank" / f"batch_{100 + index:06d}.safetensors")
        with torch.no_grad():
            w = rounded.map(rounded.sample_z(4, 3 * BANK_SEED_STRIDE + index))
            images = rounded(w[:, None, :].expand(-1, rounded.n_styles, -1)).clamp(-1, 1)
            g = geometry(images)
        assert torch.equal(record["w"], w)
        for key, value in (("identity", identity(images)), ("shape", g.shape), ("pose", g.pose)):
            assert torch.allclose(record[key], value, rtol=2e-3, atol=2e-3), key
        assert record["expression"].shape == (4, 52)


def test_the_seed_stride_is_the_bank_stages(bank):
    assert bank.SEED_STRIDE == BANK_SEED_STRIDE
