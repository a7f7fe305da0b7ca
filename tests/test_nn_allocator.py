"""The malloc tuning for CPU inference: applied on glibc, and the opt-out is honoured."""

from __future__ import annotations

import platform
import sys

import pytest

from g2face.nn.allocator import tune_cpu_allocator


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="needs glibc"
)
def test_allocator_tuning_applies_on_glibc_and_can_be_turned_off(monkeypatch):
    monkeypatch.delenv("G2FACE_MALLOC", raising=False)
    assert tune_cpu_allocator() is True
    monkeypatch.setenv("G2FACE_MALLOC", "system")
    assert tune_cpu_allocator() is False
