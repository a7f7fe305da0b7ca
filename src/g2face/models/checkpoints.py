"""Weights in and out: the official G2Face / rosinality checkpoints (read with `weights_only`
semantics), and our own safetensors files (plain tensors + the JSON config in the metadata)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from g2face.models.config import G2FaceNetConfig
from g2face.models.g2face import G2FaceNet
from g2face.models.generator_api import GenerativePrior

OFFICIAL_PARTS = ("anonymous_net", "style_mlp", "map_2_id", "hiding_extractor")
# Buffers of G2FaceNet that the reference does not have (f_mlp's input standardisation); loading an
# official checkpoint keeps their defaults, which make them identity transforms.
EXTENSION_KEYS = ("style_mlp.input_mean", "style_mlp.input_std")
# Parts of the reference `anonymous_net` that are DPIM modules of G2FaceNet; the rest is the prior.
DPIM_PARTS = ("pyramid.", "fusion_mask.", "hiding_injects.")


def _load_official(path: str | Path) -> dict[str, Tensor]:
    """Flat `part.key` tensors from a `.safetensors` file or a `G2Face.pth`-style {part: state} dict."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_file(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return {f"{part}.{k}": v for part in OFFICIAL_PARTS for k, v in checkpoint[part].items()}


def official_to_g2face(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename official `G2Face.pth` keys (prefixes `anonymous_net.`, `style_mlp.`, `map_2_id.`,
    `hiding_extractor.`) to `G2FaceNet` keys; other keys (e.g. fixture inputs) are dropped."""
    renamed = {}
    for key, value in state.items():
        part, _, rest = key.partition(".")
        if part == "anonymous_net":
            renamed[rest if rest.startswith(DPIM_PARTS) else f"generator.{rest}"] = value
        elif part in OFFICIAL_PARTS:
            renamed[key] = value
    return renamed


def load_official_g2face(net: G2FaceNet, path: str | Path) -> G2FaceNet:
    """Load the authors' `G2Face.pth` (or the same keys as safetensors) into a matching network."""
    state = official_to_g2face(_load_official(path))
    defaults = net.state_dict()
    state.update({key: defaults[key] for key in EXTENSION_KEYS if key not in state})
    net.load_state_dict(state)
    return net


def load_rosinality_g_ema(generator: nn.Module, path: str | Path) -> nn.Module:
    """Load the synthesis part of a rosinality StyleGAN2 training checkpoint (e.g. `550000.pt`):
    `g_ema` without its mapping network (`style.*`) and fixed noise buffers (`noises.*`)."""
    # The checkpoint also pickles the training `args` namespace; allow just that type.
    with torch.serialization.safe_globals([argparse.Namespace]):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in checkpoint["g_ema"].items() if not k.startswith(("style.", "noises."))}
    generator.load_state_dict(state)
    return generator


def save_g2face(net: G2FaceNet, path: str | Path) -> None:
    """All weights and buffers as safetensors, with the configuration as JSON metadata."""
    state = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    save_file(state, str(tmp), metadata={"format": "g2face", "config": json.dumps(net.config.to_dict())})
    os.replace(tmp, path)  # never leave a half-written weights file under the real name


class WeightsFileError(ValueError):
    """A file that is not a usable g2face weights file: not safetensors, no or a broken
    configuration, tensors missing or of the wrong shape. The message is one line."""


def read_g2face_config(path: str | Path) -> G2FaceNetConfig:
    """The network configuration stored in a file written by `save_g2face` (header only)."""
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise WeightsFileError(f"{path} is not a safetensors weights file ({_first_line(e)})") from None
    if meta.get("format") != "g2face" or "config" not in meta:
        raise WeightsFileError(f"{path} is not a g2face weights file (no g2face configuration inside)")
    try:
        return G2FaceNetConfig.from_dict(json.loads(meta["config"]))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise WeightsFileError(
            f"{path} holds a broken network configuration ({type(e).__name__}: {_first_line(e)})"
        ) from None


def load_g2face(
    path: str | Path, generator: GenerativePrior | None = None, device: torch.device | str = "cpu"
) -> G2FaceNet:
    """Rebuild a network saved by `save_g2face` (pass `generator` for priors not built from config).
    A file whose tensors do not fit its configuration raises `WeightsFileError`."""
    config = read_g2face_config(path)
    try:
        net = G2FaceNet(config, generator)
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise WeightsFileError(f"{path}: its configuration builds no network ({_first_line(e)})") from None
    try:
        state = load_file(path)
    except (SafetensorError, OSError) as e:
        raise WeightsFileError(f"{path}: cannot read its tensors ({_first_line(e)})") from None
    expected = net.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    misshapen = sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    for problem, keys in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("of the wrong shape", misshapen),
    ):
        if keys:
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            raise WeightsFileError(f"{path}: tensors {problem} for its configuration: {shown}")
    net.load_state_dict(state)
    return net.to(device)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


FUSION_FORMAT = "g2face-fusion"
GIE_PREFIXES = ("map_2_id.", "style_mlp.")


def weights_format(path: str | Path) -> str | None:
    """The `format` recorded in a g2face weights file ("g2face" or "g2face-fusion"), or None."""
    try:
        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get("format")
    except Exception as e:  # safetensors raises its own error types for files that are not safetensors
        raise WeightsFileError(f"{path} is not a safetensors weights file ({_first_line(e)})") from None


def save_fusion_model(
    state: Mapping[str, Tensor], settings: Mapping[str, object], path: str | Path, half: bool = True
) -> None:
    """A geometric-fusion model: the GIE tensors of a trained network (`map_2_id.*`, `style_mlp.*`;
    other keys are dropped) and its settings (GIE config, prior family, fusion settings) as JSON.
    Weight matrices are stored in float16 when `half` (buffers and norms stay float32)."""
    tensors = gie_tensors(state, half)
    _write_fusion_file(tensors, {"format": FUSION_FORMAT, "config": json.dumps(dict(settings))}, path)


def gie_tensors(state: Mapping[str, Tensor], half: bool = True) -> dict[str, Tensor]:
    """The GIE part of a trained network's state as a geometric-fusion file stores it."""
    tensors = {}
    for key, value in state.items():
        if not key.startswith(GIE_PREFIXES):
            continue
        value = value.detach().cpu().contiguous()
        is_weight_matrix = value.ndim == 2 and value.is_floating_point()
        tensors[key] = value.half() if half and is_weight_matrix else value
    if not any(k.startswith("style_mlp.") for k in tensors):
        raise ValueError("no GIE tensors (style_mlp.*) in the given state")
    return tensors


def _write_fusion_file(tensors: Mapping[str, Tensor], metadata: dict[str, str], path: str | Path) -> None:
    """Write a safetensors file atomically (a temporary beside it, then renamed over it)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    save_file(dict(tensors), str(tmp), metadata=metadata)
    os.replace(tmp, path)


def add_fusion_tensors(path: str | Path, tensors: Mapping[str, Tensor]) -> None:
    """Add (or replace) tensors in a geometric-fusion file in place, everything else in it kept as
    stored (the fitted attribute probe, the pose correction); written atomically."""
    load_fusion_model(path)  # refuses anything but a geometric-fusion model file
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    stored = load_file(str(path))
    stored.update({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    _write_fusion_file(stored, metadata, path)


def load_fusion_model(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """The GIE tensors (float32) and settings of a file written by `save_fusion_model`."""
    if weights_format(path) != FUSION_FORMAT:  # (also refuses what is not safetensors at all)
        raise WeightsFileError(f"{path} is not a g2face geometric-fusion weights file")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        raise WeightsFileError(f"{path} is not a g2face geometric-fusion weights file")
    tensors = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(path)).items()}
    return tensors, json.loads(meta["config"])


def update_fusion_settings(path: str | Path, section: str, changes: Mapping[str, object]) -> None:
    """Change fields of one settings section (e.g. "candidates") of a geometric-fusion file in
    place, its tensors and every other setting kept as stored; written atomically."""
    _, settings = load_fusion_model(path)  # refuses anything but a geometric-fusion model file
    with safe_open(str(path), "pt") as f:
        metadata = dict(f.metadata())
    settings[section] = dict(settings.get(section, {})) | dict(changes)
    metadata["config"] = json.dumps(settings)
    _write_fusion_file(load_file(str(path)), metadata, path)
