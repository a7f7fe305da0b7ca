"""Activation checkpointing: train a large configuration in little memory.

A training step of the paper configuration keeps about 5.7 GiB of activations per face for
backward (two generator passes, E_face, E_p, the discriminator and the frozen priors that the
losses differentiate through); on a CPU with 24 GB not even a batch of two fits. With
checkpointing, each repeated block (an element of an `nn.ModuleList` / `nn.Sequential`: StyleGAN2's
styled convs, E_face's residual blocks, E_p's inception blocks, ResNet bottlenecks, VGG stages,
discriminator blocks) keeps only its input and recomputes its inside during backward: the same
gradients, for about one more forward pass of time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

CONTAINERS = (nn.ModuleList, nn.Sequential)


def repeated_blocks(root: nn.Module) -> list[nn.Module]:
    """The outermost modules with parameters that are elements of a ModuleList or Sequential
    under `root` (a chosen block's own children are not searched again)."""
    found: list[nn.Module] = []

    def walk(module: nn.Module) -> None:
        for child in module.children():
            if isinstance(module, CONTAINERS) and any(True for _ in child.parameters()):
                found.append(child)
            else:
                walk(child)

    walk(root)
    return found


class _BatchNormStatisticsKept:
    """Undo the running-statistics update of a recomputed forward: a BatchNorm in training mode
    updates them on every call, and a recomputation must not count the batch again. Reusable,
    since a double backward (the R1 penalty) recomputes a block more than once."""

    def __init__(self, norms: list[_BatchNorm]):
        self.norms = [n for n in norms if n.training]
        self.saved: list[tuple[Tensor, ...]] = []

    def __enter__(self) -> None:
        self.saved = [
            (n.running_mean.clone(), n.running_var.clone(), n.num_batches_tracked.clone()) for n in self.norms
        ]

    def __exit__(self, *exc: object) -> None:
        with torch.no_grad():
            for norm, (mean, var, count) in zip(self.norms, self.saved, strict=True):
                norm.running_mean.copy_(mean)
                norm.running_var.copy_(var)
                norm.num_batches_tracked.copy_(count)


def _contexts(norms: list[_BatchNorm]) -> tuple[contextlib.AbstractContextManager, ...]:
    return contextlib.nullcontext(), _BatchNormStatisticsKept(norms)


def _checkpointed(forward: Callable[..., Any], norms: list[_BatchNorm], *args: Any, **kwargs: Any) -> Any:
    if not torch.is_grad_enabled():  # inference, EMA samples: nothing is kept anyway
        return forward(*args, **kwargs)
    # Non-reentrant checkpointing: keyword arguments, double backward (the R1 penalty) and
    # blocks whose inputs do not require grad all work; the RNG state is replayed (StyleGAN2's
    # noise), so the recomputed activations are the ones of the forward pass.
    return checkpoint(forward, *args, use_reentrant=False, context_fn=partial(_contexts, norms), **kwargs)


def checkpoint_activations(roots: Iterable[nn.Module | None]) -> int:
    """Make every repeated block under `roots` recompute its activations in backward instead of
    keeping them. Weights, state dicts and outputs are unchanged. Returns the number of blocks."""
    count = 0
    for root in roots:
        if root is None:
            continue
        for block in repeated_blocks(root):
            if isinstance(block.forward, partial) and block.forward.func is _checkpointed:
                continue  # a prior shared by two stages of one process
            norms = [m for m in block.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
            block.forward = partial(_checkpointed, block.forward, norms)
            count += 1
    return count
