"""Running one step over many input files, collecting a per-file outcome instead of stopping at the
first bad input."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from g2face.io import IMAGE_SUFFIXES, ExpandedInputs, InputFile, check_output_free
from g2face.io.video import is_video
from g2face.types import InputError

T = TypeVar("T")


@dataclass(frozen=True)
class FileOutcome(Generic[T]):
    """What happened to one input: `result` when it succeeded, else a one-line `error`."""

    source: str
    result: T | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class BatchReport(Generic[T]):
    outcomes: tuple[FileOutcome[T], ...]

    @property
    def succeeded(self) -> tuple[FileOutcome[T], ...]:
        return tuple(o for o in self.outcomes if o.ok)

    @property
    def failed(self) -> tuple[FileOutcome[T], ...]:
        return tuple(o for o in self.outcomes if not o.ok)

    def summary(self) -> str:
        n = len(self.outcomes)
        return f"{n} input{'s' if n != 1 else ''}: {len(self.succeeded)} done, {len(self.failed)} failed"


def process_each(
    inputs: ExpandedInputs,
    handle: Callable[..., T],
    on_outcome: Callable[[FileOutcome[T]], None] | None = None,
    *,
    prepare: Callable[[InputFile], Any] | None = None,
) -> BatchReport[T]:
    """Call `handle` on every input file, in order. Input problems from the expansion and
    `InputError`s raised by `handle` become failed outcomes. Any other exception is a bug, but one
    input must not take the rest of the batch down with it: it becomes a failed outcome whose
    one-line error says "internal error" (tests look for that phrase). Interrupts propagate.

    `prepare(item)` (decode, detect: work that needs no model) then runs one file ahead on a
    second thread and `handle(item, prepared)` receives its result: the two cores overlap the next
    file's decoding and detection with this file's model, and at most two files are in memory.
    An error in `prepare` is raised by `handle`'s turn of that file, so it is reported the same way."""
    outcomes: list[FileOutcome[T]] = []

    def record(outcome: FileOutcome[T]) -> None:
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    for problem in inputs.problems:
        record(FileOutcome(problem.spec, error=problem.message))
    files = list(inputs.files)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="g2face-prepare") as ahead:
        upcoming: Future | None = ahead.submit(prepare, files[0]) if prepare and files else None
        for n, item in enumerate(files):
            current, upcoming = upcoming, None
            if prepare is not None and n + 1 < len(files):
                upcoming = ahead.submit(prepare, files[n + 1])
            try:
                result = handle(item) if current is None else handle(item, current.result())
                record(FileOutcome(str(item.path), result=result))
            except InputError as e:
                record(FileOutcome(str(item.path), error=str(e)))
            except Exception as e:  # noqa: BLE001 - see the docstring
                message = f"{item.path}: internal error ({type(e).__name__}: {e}); please report it"
                record(FileOutcome(str(item.path), error=" ".join(message.split())))
            except BaseException:
                if upcoming is not None:
                    upcoming.cancel()
                raise
    return BatchReport(tuple(outcomes))


def names_file(target: Path) -> bool:
    """Whether an output argument names one image file (else it is a folder mirroring the inputs)."""
    return target.suffix.lower() in IMAGE_SUFFIXES and not target.is_dir()


def check_output_target(target: Path, inputs: ExpandedInputs, suffix: str | None = None) -> None:
    """Raise `ValueError` when `target` names one image file but several inputs were given, or when
    two inputs would write the same output (e.g. `a/x.jpg` and `b/x.jpg` given as files)."""
    if names_file(target) and len(inputs.files) > 1:
        raise ValueError(f"{target} names one file but {len(inputs.files)} images were given; name a folder")
    if is_video(target) and not target.is_dir():
        # else a folder named like a video would be made to hold the image outputs
        raise ValueError(
            f"{target} names a video but the inputs are images; name an image file or a folder "
            "(a video is anonymized into a video when it is the one input)"
        )
    planned: dict[Path, Path] = {}
    for item in inputs.files:
        out = output_target(target, item, suffix)
        if out in planned:
            other = planned[out]
            # outputs take one format's suffix, so `x.tiff` and `x.webp` in one folder collide too
            advice = (
                "rename one of them"
                if other.with_suffix("") == item.path.with_suffix("")
                else "pass their common folder instead"
            )
            raise ValueError(
                f"{other} and {item.path} would both be written to {out}; "
                f"{advice}, or process them in separate runs"
            )
        planned[out] = item.path


def output_target(target: Path, item: InputFile, suffix: str | None = None) -> Path:
    """Where `item`'s output goes: `target` itself when it names an image file (see
    `check_output_target`), else `target` as a folder mirroring the input tree."""
    return target if names_file(target) else item.output_path(target, suffix)


def free_output_target(
    target: Path, item: InputFile, inputs: ExpandedInputs, suffix: str | None = None, *, force: bool = False
) -> Path:
    """`output_target(target, item, suffix)`, after checking that nothing is there yet (unless
    `force`): call it before the expensive work on `item`, so an existing output fails the input
    at once (`OutputExistsError`, an `InputError`) instead of after the model ran."""
    out = output_target(target, item, suffix)
    check_output_free(out, protected=inputs.paths, force=force)
    return out
