"""Checks of option values shared by several commands."""

from __future__ import annotations

import re

import click

BACKENDS = ("torch", "onnxruntime", "openvino", "auto")
"""`g2face.priors.backends.CHOICES`, written out so that the CLI imports no torch to show its help."""

_DEVICE = re.compile(r"cpu|cuda(:\d+)?|mps")


def validate_device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A click callback: `cpu`, `cuda`, `cuda:N` or `mps`, else a usage error (instead of a
    traceback later, or a silent fall-back to the CPU)."""
    if not _DEVICE.fullmatch(value):
        raise click.BadParameter(f"{value!r} is not a device; use cpu, cuda, cuda:N or mps")
    return value


def backend_option(command):
    """`--backend`: where the generator runs (g2face.priors.backends)."""
    return click.option(
        "--backend",
        type=click.Choice(BACKENDS),
        default="torch",
        show_default=True,
        help="Run the generator in PyTorch, or its exported graph in ONNX Runtime or OpenVINO "
        "(pip install 'g2face[runtime]'); auto: the fastest here, measured once and cached.",
    )(command)


REFINE_STEPS = 20
"""Default refinement steps of identity-level recovery (photos and clips). On the 150-pair protocols
FaceNet recognised 0.520 (LFW) / 0.433 (CelebA) of recovered faces after 20 steps, 0.400 / 0.387
after 10 (session 32, `scripts/evaluate_default.py --refine N`), for about twice the wait (14.8
against 7.9 s an identity on two CPU threads): recovery is rare, and a user waits for it once."""


def refine_option(what: str):
    """`--refine N` for a recover command; `what` names where identity-level recovery happens."""
    return click.option(
        "--refine",
        type=click.IntRange(0, 200),
        default=REFINE_STEPS,
        show_default=True,
        help=f"Identity-level recovery only ({what}): optimisation steps of the rendered face towards the "
        "decoded identity, about 0.7 s each on two CPU threads, once per identity; 0 renders it once (on 150 "
        "LFW pairs FaceNet recognised 0.520 of faces after 20 steps, 0.400 after 10, 0.053 without; "
        "CelebA 0.433, 0.387 and 0.027).",
    )
