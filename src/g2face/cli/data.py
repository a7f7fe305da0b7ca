"""`g2face data …`: prepare cached datasets of aligned face crops for training and evaluation."""

from __future__ import annotations

from pathlib import Path

import click

from g2face.cli.options import validate_device


@click.group()
def data() -> None:
    """Datasets of aligned face crops, cached outside the repository."""


@data.command()
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("destination", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--aligned", is_flag=True, help="SOURCE already holds FFHQ-aligned crops (FFHQ, CelebA-HQ): no detection."
)
@click.option(
    "--size",
    default=256,
    show_default=True,
    type=click.IntRange(32, 1024),
    help="Side of the cached crops in pixels.",
)
@click.option(
    "--min-face",
    default=48.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Skip faces whose box side is smaller (pixels).",
)
@click.option(
    "--max-faces",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Largest faces kept per image.",
)
@click.option("--limit", type=click.IntRange(min=0), help="Only the first N images (sorted by path).")
@click.option(
    "--device", default="cpu", show_default=True, callback=validate_device, help="Device for the detector."
)
@click.option("--force", is_flag=True, help="Write into a DESTINATION that holds other files.")
def prepare(
    source: Path,
    destination: Path | None,
    aligned: bool,
    size: int,
    min_face: float,
    max_faces: int,
    limit: int | None,
    device: str,
    force: bool,
) -> None:
    """Detect, align and cache the faces of every image under SOURCE as SIZE px PNG crops with a
    manifest. DESTINATION defaults to the g2face cache; an interrupted run resumes. Sources that
    cannot be decoded are listed, one line each, and skipped."""
    from g2face.data import prepare_dataset
    from g2face.io import printable

    detector = None
    if not aligned:
        from g2face.detection import YuNetDetector

        detector = YuNetDetector(device=device).detect
    try:
        report = prepare_dataset(
            source,
            destination,
            detector=detector,
            size=size,
            min_face=min_face,
            max_faces=max_faces,
            limit=limit,
            force=force,
        )
    except ValueError as e:
        raise click.UsageError(printable(str(e))) from None
    except OSError as e:
        raise click.ClickException(f"{e.filename}: {e.strerror or e}") from None
    for problem in report.problems:
        click.echo(f"error: {printable(problem)}", err=True)
    click.echo(
        f"{report.folder}: {report.crops} crops from {report.sources} images "
        f"({report.skipped} already done, {report.without_face} without a face, "
        f"{report.unreadable} unreadable)"
    )
    if report.problems:
        raise SystemExit(1)
