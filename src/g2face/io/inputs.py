"""Turning command-line inputs (files, folders, globs) into a list of image files.

Each file keeps its path relative to the folder or glob root it came from, so outputs can mirror
the input tree. Problems (missing paths, folders without images) are collected, not raised, so
one bad argument never stops the others.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from g2face.io.images import IMAGE_SUFFIXES

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class InputFile:
    path: Path
    relative: Path
    """Where the file sits below its folder or glob root (just the name for a file given directly)."""

    def output_path(self, out_dir: str | Path, suffix: str | None = None) -> Path:
        """Mirror of this input under `out_dir`, optionally with another suffix (".png")."""
        target = Path(out_dir) / self.relative
        return target.with_suffix(suffix) if suffix else target


@dataclass(frozen=True)
class InputProblem:
    spec: str
    message: str


@dataclass(frozen=True)
class ExpandedInputs:
    files: tuple[InputFile, ...]
    problems: tuple[InputProblem, ...]

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(f.path for f in self.files)


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _images_below(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, skipping hidden files and folders, sorted."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and _is_image_name(p)
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _glob_root(pattern: str) -> Path:
    """The deepest folder of a glob pattern that has no wildcard in it."""
    parts = Path(pattern).parts
    plain = parts[: next(i for i, p in enumerate(parts) if _GLOB_CHARS & set(p))]
    return Path(*plain) if plain else Path(".")


def expand_inputs(specs: Iterable[str | Path]) -> ExpandedInputs:
    """Files as given; folders recursively (image suffixes only); globs (`*`, `?`, `[…]`, `**`)."""
    files: list[InputFile] = []
    problems: list[InputProblem] = []
    seen: set[Path] = set()

    def add(path: Path, relative: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            files.append(InputFile(path, relative))

    for spec in map(str, specs):
        path = Path(spec)
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        if path.is_file():
            add(path, Path(path.name))
        elif path.is_dir():
            found = _images_below(path)
            if not found:
                problems.append(InputProblem(spec, f"{spec}: folder has no images (looked for {suffixes})"))
            for p in found:
                add(p, p.relative_to(path))
        elif _GLOB_CHARS & set(spec):
            root = _glob_root(spec)
            matches = [Path(m) for m in sorted(glob.glob(spec, recursive=True))]
            found = [(m, m.relative_to(root)) for m in matches if m.is_file() and _is_image_name(m)]
            for folder in (m for m in matches if m.is_dir()):
                found += [(p, p.relative_to(root)) for p in _images_below(folder)]
            if not found:
                problems.append(InputProblem(spec, f"{spec}: pattern matches no images"))
            for p, rel in found:
                add(p, rel)
        else:
            problems.append(InputProblem(spec, f"{spec}: no such file or folder"))
    return ExpandedInputs(tuple(files), tuple(problems))
