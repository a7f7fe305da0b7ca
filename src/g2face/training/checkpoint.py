"""Checkpoints: weights as safetensors, training state (optimizers, schedulers, step, RNG) as a
tensor-only file read with `torch.load(weights_only=True)`.

`step_0001234.safetensors` holds every module's weights under "<module>.<parameter>" (including
the EMA copy, which is what inference uses); `step_0001234.state.pt` the rest. Both are written to
temporary names and renamed, the state file last, so a checkpoint counts only once it is whole.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

_NAME = re.compile(r"step_(\d{7,})\.state\.pt$")


@dataclass(frozen=True)
class Checkpoint:
    step: int
    weights: Path
    state: Path


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def module_weights(modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{key}": value.detach().cpu().contiguous().clone()
        for name, module in modules.items()
        for key, value in module.state_dict().items()
    }


def save_checkpoint(
    folder: Path, step: int, modules: dict[str, nn.Module], state: dict[str, Any], keep: int = 3
) -> Checkpoint:
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpoint(step, folder / f"step_{step:07d}.safetensors", folder / f"step_{step:07d}.state.pt")
    save_file(module_weights(modules), str(ckpt.weights) + ".tmp", metadata={"step": str(step)})
    os.replace(str(ckpt.weights) + ".tmp", ckpt.weights)
    torch.save({**state, "step": step}, str(ckpt.state) + ".tmp")
    os.replace(str(ckpt.state) + ".tmp", ckpt.state)
    for old in list_checkpoints(folder)[:-keep]:
        old.weights.unlink(missing_ok=True)
        old.state.unlink(missing_ok=True)
    return ckpt


def list_checkpoints(folder: Path) -> list[Checkpoint]:
    found = []
    for path in Path(folder).glob("step_*.state.pt"):
        match = _NAME.search(path.name)
        weights = path.with_name(path.name.replace(".state.pt", ".safetensors"))
        if match and weights.is_file():
            found.append(Checkpoint(int(match.group(1)), weights, path))
    return sorted(found, key=lambda c: c.step)


def latest_checkpoint(folder: Path) -> Checkpoint | None:
    found = list_checkpoints(folder)
    return found[-1] if found else None


def load_module_weights(path: Path, modules: dict[str, nn.Module], strict: bool = True) -> None:
    tensors = load_file(str(path))
    for name, module in modules.items():
        prefix = f"{name}."
        module.load_state_dict(
            {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=strict
        )


def load_state(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)
