"""`g2face keygen PATH`: create a random key file to use instead of a password."""

from __future__ import annotations

from pathlib import Path

import click

from g2face.payload import Secret, SecretError


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def keygen(path: Path) -> None:
    """Write a new random 32-byte key to PATH, readable by you only.

    Use it with --key-file when anonymizing and recovering. Keep a backup: without it the
    original faces cannot be recovered. An existing file is never overwritten.
    """
    try:
        Secret.generate_key_file(path)
    except (SecretError, OSError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"wrote a new key to {path} (permissions 0600); back it up somewhere safe")
