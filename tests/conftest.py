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


@pytest.fixture
def small_filesystem(tmp_path):
    """A factory of real tiny file systems, for write failures that monkeypatching only imitates:
    `small_filesystem(kib, read_only=False)` mounts a tmpfs under tmp_path and returns its folder.
    Needs root and mount rights (a container may lack them): skips otherwise."""
    import subprocess

    mounted: list[Path] = []
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")

    def mount(kib: int, read_only: bool = False) -> Path:
        folder = tmp_path / f"fs{len(mounted)}"
        folder.mkdir()
        options = f"size={kib}k" + (",ro" if read_only else "")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> None:
    """Fill the file system of `folder` until it has no space left."""
    import errno

    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
