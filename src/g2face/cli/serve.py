"""`g2face serve`: the local web page (parsing only; the server is `g2face.web`)."""

from __future__ import annotations

import click

from g2face import hub
from g2face.cli.options import validate_device
from g2face.io import printable


@click.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback only by default)."
)
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on."
)
@click.option("--model", default="g2face-lite", show_default=True, help="Model name or weights file.")
@click.option(
    "--device", default="cpu", show_default=True, callback=validate_device, help="cpu, cuda or cuda:N."
)
@click.option(
    "--max-upload-mb",
    default=40.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Largest photo file accepted.",
)
@click.option(
    "--max-pixels",
    default=50_000_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Largest photo accepted, in pixels (width × height).",
)
def serve(host, port, model, device, max_upload_mb, max_pixels) -> None:
    """Open a local web page to anonymize and recover photos: drop photos, choose a password,
    compare before and after, download (the recovery container stays in each file).

    Photos and passwords stay on this computer: uploads are held in memory only while processed,
    temp files are removed at once, and nothing is logged but the paths requested.
    """
    try:
        from g2face.web import SharedPipelines, WebSettings, is_loopback
        from g2face.web import serve as run_server
    except ImportError as e:
        raise click.ClickException(
            f"the web page needs the `web` extra ({e.name} is missing): pip install 'g2face[web]'"
        ) from None
    from g2face.models.zoo import ModelNotAvailableError

    if not is_loopback(host):
        click.secho(
            f"WARNING: listening on {host}, not on this computer only: anyone who can reach this address "
            "can upload photos and download results. Use the default 127.0.0.1 unless you mean it.",
            fg="red",
            bold=True,
            err=True,
        )
    settings = WebSettings(host=host, port=port, max_upload_mb=max_upload_mb, max_pixels=max_pixels)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"loading {model}; then open http://{shown}:{port}/ in a browser (Ctrl+C stops)", err=True)
    try:
        run_server(settings, SharedPipelines.from_pretrained(model, device=device))
    except (ModelNotAvailableError, hub.HubError) as e:
        raise click.ClickException(printable(str(e))) from None
