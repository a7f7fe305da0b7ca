"""`g2face detect`: boxes, 5 landmarks and scores of every face in images, folders or globs."""

from __future__ import annotations

from pathlib import Path

import click

from g2face import hub
from g2face.detection import YuNetDetector
from g2face.io import ImageWriteError, expand_inputs, write_json
from g2face.pipeline import DetectionReport, FileOutcome, detect_files, detections_json


def _show(outcome: FileOutcome[DetectionReport]) -> None:
    if not outcome.ok:
        click.echo(f"error: {outcome.error}", err=True)
        return
    faces = outcome.result.faces
    click.echo(f"{outcome.source}: {len(faces)} face{'s' if len(faces) != 1 else ''}")
    for i, face in enumerate(faces):
        box = ", ".join(f"{v:.0f}" for v in face.box)
        click.echo(f"  #{i} score {face.score:.2f} box ({box})")


@click.command()
@click.argument("images", nargs=-1, required=True)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every image's faces (box, landmarks, score) to this JSON file.",
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
    "--device", default="cpu", show_default=True, help="cpu or cuda (if OpenCV was built with CUDA)."
)
@click.option("--force", is_flag=True, help="Allow outputs to overwrite input files.")
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
    right and left mouth corners.
    """
    inputs = expand_inputs(images)
    try:
        detector = YuNetDetector(score_threshold=min_score, device=device)
    except hub.HubError as e:
        raise click.ClickException(str(e)) from None
    try:
        report = detect_files(detector, inputs, draw=draw, force=force, on_outcome=_show)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    if json_path is not None and report.succeeded:
        try:
            write_json(json_path, detections_json(report), protected=inputs.paths, force=force)
        except ImageWriteError as e:
            raise click.ClickException(str(e)) from None
    click.echo(report.summary(), err=True)
    if report.failed:
        raise SystemExit(1)
