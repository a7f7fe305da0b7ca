"""`g2face export`: the shipped default's networks as files another runtime can load."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True, help="Export format."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("g2face-lite-onnx"),
    show_default=True,
    help="Folder to write (the networks and manifest.json).",
)
@click.option(
    "--model", default="g2face-lite", show_default=True, help="A packaged name or a fusion weights file."
)
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
def export(fmt: str, out_dir: Path, model: str, force: bool) -> None:
    """Export the default model's networks (generator, GIE, identity and geometry priors) as ONNX,
    with a manifest of inputs, shapes, preprocessing and sha256, each checked against PyTorch with
    ONNX Runtime when it is installed (pip install 'g2face[parity]')."""
    from g2face.export.onnx import ExportError, export_onnx
    from g2face.models.zoo import ModelNotAvailableError

    try:
        manifest = export_onnx(model, out_dir, force=force, progress=lambda m: click.echo(m, err=True))
    except (ExportError, ModelNotAvailableError) as e:
        raise click.ClickException(str(e)) from None
    for entry in manifest["networks"]:
        difference = entry.get("onnxruntime_max_abs_difference")
        checked = "not checked" if difference is None else f"max |ONNX Runtime - PyTorch| {difference:.1e}"
        click.echo(f"{out_dir / entry['file']}: {checked}")
    count = len(manifest["networks"])
    click.echo(f"{out_dir / 'manifest.json'}: {count} networks ({fmt}, opset {manifest['opset']})")
