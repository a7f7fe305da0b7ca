"""`g2face detect`: boxes, 5 landmarks and scores of every face in images, folders or globs."""

from __future__ import annotations

from pathlib import Path

import click

from g2face import hub
from g2face.cli.options import validate_device
from g2face.detection import YuNetDetector
from g2face.io import ImageWriteError, check_output_free, expand_inputs, printable, write_json
from g2face.pipeline import DetectionReport, FileOutcome, detect_files, detections_json


def _show(outcome: FileOutcome[DetectionReport]) -> None:
    if not outcome.ok:
        click.echo(f"error: {printable(outcome.error)}", err=True)
        return
    faces = outcome.result.faces
    click.echo(f"{printable(outcome.source)}: {len(faces)} face{'s' if len(faces) != 1 else ''}")
    for i, face in enumerate(faces):
        box = ", ".join(f"{v:.0f}" for v in face.box)
        click.echo(f"  #{i} score {face.score:.2f} box ({box})")


@click.command()
@click.argument("images", nargs=-1, required=True)
@click.option(
    "--json",
    "--report",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every image's faces (box, landmarks, score) and every failure to this JSON file.",
)
@click.option(
    "--draw",
    type=click.Path(path_type=Path),
    help="Write images with the detections drawn: a file for one input, else a folder mirroring the inputs.",
)
@click.option(
    "--min-score", default=0.7, show_default=True, type=click.FloatRange(0, 1), help="Detection threshold."
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    callback=validate_device,
    help="cpu or cuda (if OpenCV was built with CUDA).",
)
@click.option("--force", is_flag=True, help="Allow outputs to overwrite existing files, inputs included.")
def detect(
    images: tuple[str, ...],
    json_path: Path | None,
    draw: Path | None,
    min_score: float,
    device: str,
    force: bool,
) -> None:
    """Find every face in IMAGES (files, folders searched recursively, or globs).

    Prints one line per image and per face; bad inputs are reported and skipped, and the exit
    status is 1 if any input failed. Landmarks are the subject's right eye, left eye, nose tip,
    right and left mouth corners. Existing output files are left alone unless --force.
    """
    inputs = expand_inputs(images)
    for notice in inputs.notices:
        click.echo(f"note: {printable(notice)}", err=True)
    try:
        if json_path is not None:  # before the work, not after it
            check_output_free(json_path, protected=inputs.paths, force=force)
        detector = YuNetDetector(score_threshold=min_score, device=device)
    except ImageWriteError as e:
        raise click.UsageError(printable(str(e))) from None
    except hub.HubError as e:
        raise click.ClickException(printable(str(e))) from None
    try:
        report = detect_files(detector, inputs, draw=draw, force=force, on_outcome=_show)
    except ValueError as e:
        raise click.UsageError(printable(str(e))) from None
    if json_path is not None:  # also when every input failed: the report says why
        try:
            document = detections_json(report, inputs.notices)
            write_json(json_path, document, protected=inputs.paths, force=force)
        except ImageWriteError as e:
            raise click.ClickException(printable(str(e))) from None
    click.echo(report.summary(), err=True)
    if report.failed:
        raise SystemExit(1)
