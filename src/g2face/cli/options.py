"""Checks of option values shared by several commands."""

from __future__ import annotations

import re

import click

_DEVICE = re.compile(r"cpu|cuda(:\d+)?|mps")


def validate_device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A click callback: `cpu`, `cuda`, `cuda:N` or `mps`, else a usage error (instead of a
    traceback later, or a silent fall-back to the CPU)."""
    if not _DEVICE.fullmatch(value):
        raise click.BadParameter(f"{value!r} is not a device; use cpu, cuda, cuda:N or mps")
    return value
