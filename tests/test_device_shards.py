"""scripts/device/shards.py: a weights file split into small shards merges back unchanged."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from g2face.models.checkpoints import read_g2face_config, save_g2face
from g2face.models.config import PRESETS
from g2face.models.g2face import G2FaceNet

SCRIPT = Path(__file__).parents[1] / "scripts" / "device" / "shards.py"


@pytest.fixture(scope="module")
def shards():
    spec = importlib.util.spec_from_file_location("shards", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_split_then_merge_round_trips(shards, tmp_path):
    torch.manual_seed(0)
    net = G2FaceNet(PRESETS["tiny"])
    save_g2face(net, tmp_path / "model.safetensors")
    parts = shards.split(tmp_path / "model.safetensors", tmp_path / "out", max_mib=0.05, dtype="float16")
    assert len(parts) > 2 and all(p.stat().st_size < 0.05 * 2**20 + 65536 for p in parts)
    merged = shards.merge(list(reversed(parts)), tmp_path / "merged.safetensors")
    assert read_g2face_config(merged) == net.config
    original, back = load_file(tmp_path / "model.safetensors"), load_file(merged)
    assert original.keys() == back.keys()
    for key, value in original.items():
        expected = value.half() if value.is_floating_point() else value
        assert torch.equal(back[key], expected), key


def test_merge_refuses_an_incomplete_set(shards, tmp_path):
    save_g2face(G2FaceNet(PRESETS["tiny"]), tmp_path / "model.safetensors")
    parts = shards.split(tmp_path / "model.safetensors", tmp_path / "out", max_mib=0.05)
    with pytest.raises(SystemExit, match="incomplete"):
        shards.merge(parts[:-1], tmp_path / "merged.safetensors")
    assert not (tmp_path / "merged.safetensors").exists()
