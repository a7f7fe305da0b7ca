"""Learning-rate schedule and optimiser construction (the paper: Adam β=(0, 0.999), new parts at
the base rate, pretrained generator layers at 0.1×, warm-up then exponential decay)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from g2face.training.config import StageConfig


def lr_factor(step: int, stage: StageConfig) -> float:
    """Linear warm-up to 1 over `warmup_steps`, then ×`decay` every `decay_every` steps."""
    if step < stage.warmup_steps:
        return (step + 1) / stage.warmup_steps
    return stage.decay ** ((step - stage.warmup_steps) / stage.decay_every)


def trainable(modules: Iterable[nn.Module]) -> list[nn.Parameter]:
    return [p for m in modules for p in m.parameters() if p.requires_grad]


def make_optimizer(
    groups: list[tuple[Iterable[nn.Module], float]], stage: StageConfig, betas: tuple[float, float]
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.LambdaLR]:
    """Adam over (modules, lr scale) groups, with the stage's warm-up/decay schedule."""
    params = [{"params": trainable(mods), "lr": stage.lr * scale} for mods, scale in groups]
    params = [g for g in params if g["params"]]
    optimizer = torch.optim.Adam(params, lr=stage.lr, betas=betas)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, stage))
    return optimizer, scheduler
