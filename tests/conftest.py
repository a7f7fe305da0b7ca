"""Shared test fixtures: paths to committed fixtures and to the optional ../shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def shared_root() -> Path:
    return Path(os.environ.get("G2FACE_SHARED", REPO.parent / "shared"))


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip the test with a reason when it is absent."""
    root = Path(os.environ.get("G2FACE_SHARED_DATA", shared_root() / "data"))
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root} (set G2FACE_SHARED_DATA)")
    return root


@pytest.fixture
def shared_fixtures() -> Path:
    """../shared/fixtures (official checkpoint schemas and parity tensors), or skip."""
    root = shared_root() / "fixtures"
    if not root.is_dir():
        pytest.skip(f"shared fixtures not found at {root} (set G2FACE_SHARED)")
    return root
