"""Turning command-line inputs (files, folders, globs) into a list of image files.

Each file keeps its path relative to the folder or glob root it came from, so outputs can mirror
the input tree. Problems (missing paths, folders without images, unreadable folders) are
collected, not raised, so one bad argument never stops the others; image files that g2face cannot
read (HEIC, raw) are counted in notices instead of being skipped silently.
"""

from __future__ import annotations

import glob
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from g2face.io.images import IMAGE_SUFFIXES

_GLOB_CHARS = frozenset("*?[")
# image formats people keep next to their photos that Pillow cannot decode here
UNREADABLE_IMAGE_SUFFIXES = (
    frozenset({".heic", ".heif", ".avif", ".jxl", ".svg", ".psd", ".dng", ".cr2", ".cr3", ".nef", ".arw"})
    - IMAGE_SUFFIXES
)


def printable(text: str) -> str:
    """`text` made safe for one line of terminal output: control characters (newlines, escape
    sequences) and undecodable file-name bytes (`surrogateescape`) are shown as backslash escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(c: str) -> str:
    if "\udc80" <= c <= "\udcff":  # a byte that was not valid UTF-8 in the file name
        return f"\\x{ord(c) - 0xDC00:02x}"
    return ascii(c)[1:-1]


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
    notices: tuple[str, ...] = ()
    """Not failures: e.g. image files of a format g2face cannot read, left out of a folder."""

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(f.path for f in self.files)


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


class _Walk:
    """Image files below folders, with the problems (unreadable sub-folders) and the skipped
    unreadable formats recorded along the way."""

    def __init__(self) -> None:
        self.problems: list[InputProblem] = []
        self.unreadable_formats: Counter[str] = Counter()

    def images_below(self, folder: Path, spec: str) -> list[Path]:
        """Image files under `folder`, recursively, skipping hidden files and folders, sorted.
        Symbolic links to folders are not followed (no loops)."""

        def unreadable(e: OSError) -> None:
            self.problems.append(
                InputProblem(
                    spec, f"{e.filename}: cannot list this folder ({e.strerror}); its images are skipped"
                )
            )

        found = []
        for root, dirs, names in os.walk(folder, onerror=unreadable):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in names:
                path = Path(root) / name
                suffix = path.suffix.lower()
                if suffix in UNREADABLE_IMAGE_SUFFIXES and not name.startswith("."):
                    self.unreadable_formats[suffix] += 1
                elif _is_image_name(path) and _is_file(path):
                    found.append(path)
        return sorted(found)

    def notices(self) -> tuple[str, ...]:
        if not self.unreadable_formats:
            return ()
        counts = ", ".join(f"{n} {suffix}" for suffix, n in sorted(self.unreadable_formats.items()))
        return (f"skipped {counts} file(s): a format g2face cannot read; convert them to JPEG or PNG",)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _glob_root(pattern: str) -> Path:
    """The deepest folder of a glob pattern that has no wildcard in it."""
    parts = Path(pattern).parts
    plain = parts[: next(i for i, p in enumerate(parts) if _GLOB_CHARS & set(p))]
    return Path(*plain) if plain else Path(".")


def expand_inputs(specs: Iterable[str | Path]) -> ExpandedInputs:
    """Files as given; folders recursively (image suffixes only); globs (`*`, `?`, `[…]`, `**`)."""
    files: list[InputFile] = []
    walk = _Walk()
    problems = walk.problems
    seen: set[Path] = set()

    def add(path: Path, relative: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            files.append(InputFile(path, relative))

    for spec in map(str, specs):
        path = Path(spec)
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        try:
            if path.is_file():
                add(path, Path(path.name))
            elif path.is_dir():
                found = walk.images_below(path, spec)
                if not found:
                    problems.append(
                        InputProblem(spec, f"{spec}: folder has no images (looked for {suffixes})")
                    )
                for p in found:
                    add(p, p.relative_to(path))
            elif _GLOB_CHARS & set(spec):
                root = _glob_root(spec)
                matches = [Path(m) for m in sorted(glob.glob(spec, recursive=True))]
                found = [(m, m.relative_to(root)) for m in matches if _is_image_name(m) and _is_file(m)]
                for folder in (m for m in matches if m.is_dir()):
                    found += [(p, p.relative_to(root)) for p in walk.images_below(folder, spec)]
                if not found:
                    problems.append(InputProblem(spec, f"{spec}: pattern matches no images"))
                for p, rel in found:
                    add(p, rel)
            else:
                problems.append(InputProblem(spec, f"{spec}: no such file or folder"))
        except OSError as e:  # e.g. a path inside a folder we may not enter
            problems.append(InputProblem(spec, f"{spec}: cannot access ({e.strerror})"))
    return ExpandedInputs(tuple(files), tuple(problems), walk.notices())
