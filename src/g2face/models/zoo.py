"""Named models: build a G2FaceModel from a configuration name, or load one from a weights file.

A weights file is what `save_g2face` writes (safetensors with the network configuration as
metadata); the configuration name inside it says which priors (identity, geometry, generator) the
network was trained with, so loading rebuilds exactly those.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from g2face.models.anonymizer import G2FaceModel
from g2face.models.checkpoints import load_g2face
from g2face.models.config import PRESETS, G2FaceNetConfig
from g2face.models.g2face import G2FaceNet
from g2face.payload import PayloadCodec

PACKAGED_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
"""Trained weights shipped inside the package, `<name>.safetensors` (with a model card)."""


class ModelNotAvailableError(RuntimeError):
    """A named model whose weights are not available here."""


def _priors(config: G2FaceNetConfig, seed: int = 0):
    """(identity encoder, geometry encoder) for the configuration's family of priors."""
    if config.name == "tiny":
        from g2face.priors.tiny import TinyGeometryEncoder, TinyIdentityEncoder

        geo_dim = config.gie.geometry_dim - 3
        return (
            TinyIdentityEncoder(config.gie.identity_dim, seed=seed),
            TinyGeometryEncoder(shape_dim=geo_dim // 2, expression_dim=geo_dim - geo_dim // 2, seed=seed + 1),
        )
    raise ModelNotAvailableError(f"no offline priors are wired for the {config.name!r} configuration yet")


def codec_for(config: G2FaceNetConfig) -> PayloadCodec:
    return PayloadCodec(embedding_dim=config.gie.identity_dim)


def tiny_config() -> G2FaceNetConfig:
    """The tiny test configuration, sized to carry a full payload of its identity dimension."""
    tiny = PRESETS["tiny"]
    return dataclasses.replace(tiny, n_bits=PayloadCodec(tiny.gie.identity_dim).n_bits)


def build_model(config: G2FaceNetConfig, *, seed: int = 0) -> G2FaceModel:
    """An untrained model (random new parts) of a configuration: for training and tests."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = G2FaceNet(config)
    identity, geometry = _priors(config, seed)
    return G2FaceModel(net.eval(), identity, geometry, codec_for(config))


def _weights_file(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".safetensors" or path.exists():
        if not path.is_file():
            raise ModelNotAvailableError(f"model weights file {path} does not exist")
        return path
    packaged = PACKAGED_WEIGHTS / f"{name_or_path}.safetensors"
    if packaged.is_file():
        return packaged
    shipped = sorted(p.stem for p in PACKAGED_WEIGHTS.glob("*.safetensors"))
    raise ModelNotAvailableError(
        f"no model named {str(name_or_path)!r} is shipped with this release "
        f"(shipped: {', '.join(shipped) or 'none yet'}); pass a weights file written by `g2face train`"
    )


def load_model(name_or_path: str | Path, *, device: str | torch.device = "cpu") -> G2FaceModel:
    """A trained model: a packaged name (e.g. "g2face-lite") or a weights file from training."""
    net = load_g2face(_weights_file(name_or_path), device=device)
    identity, geometry = _priors(net.config)
    return G2FaceModel(net.eval(), identity, geometry, codec_for(net.config)).to(device)
