"""`g2face anonymize` and `g2face recover`: whole photos, folders or globs, with a password or key."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click
from tqdm.auto import tqdm

from g2face import hub
from g2face.io import expand_inputs
from g2face.payload import PASSWORD_ENV, Secret, SecretError, resolve_secret


def _secret_options(command):
    @click.option("--password", help=f"Password (visible in shell history: prefer ${PASSWORD_ENV}).")
    @click.option("--password-file", type=click.Path(dir_okay=False), help="Read the password from a file.")
    @click.option("--key-file", type=click.Path(dir_okay=False), help="A key file from `g2face keygen`.")
    @functools.wraps(command)
    def wrapper(*args, password, password_file, key_file, **kwargs):
        return command(*args, secret_sources=(password, password_file, key_file), **kwargs)

    return wrapper


def _common_options(command):
    @click.argument("inputs", nargs=-1, required=True)
    @click.option(
        "-o",
        "--output",
        required=True,
        type=click.Path(path_type=Path),
        help="An image file for one input, else a folder that mirrors the inputs.",
    )
    @click.option("--model", default="g2face-lite", show_default=True, help="Model name or weights file.")
    @click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
    @click.option(
        "--format",
        "fmt",
        type=click.Choice(["png", "jpg", "webp"]),
        default="png",
        show_default=True,
        help="Output format inside a folder (PNG is lossless, so the payload arrives exactly).",
    )
    @click.option("--force", is_flag=True, help="Allow outputs to overwrite input files.")
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        return command(*args, **kwargs)

    return wrapper


def _resolve(sources: tuple[str | None, str | None, str | None], confirm: bool) -> Secret:
    password, password_file, key_file = sources
    try:
        return resolve_secret(
            password=password, password_file=password_file, key_file=key_file, confirm=confirm
        )
    except SecretError as e:
        raise click.UsageError(str(e)) from None


def _pipeline(model: str, device: str):
    from g2face.models.zoo import ModelNotAvailableError
    from g2face.pipeline.g2face import G2FacePipeline

    try:
        return G2FacePipeline.from_pretrained(model, device=device)
    except (ModelNotAvailableError, hub.HubError) as e:
        raise click.ClickException(str(e)) from None


def _run(job, inputs: tuple[str, ...], describe) -> None:
    expanded = expand_inputs(inputs)
    total = len(expanded.files) + len(expanded.problems)
    with tqdm(total=total, unit="file", disable=None) as bar:

        def show(outcome) -> None:
            if outcome.ok:
                tqdm.write(describe(outcome.result))
            else:
                tqdm.write(f"error: {outcome.error}", file=sys.stderr)
            bar.update(1)

        try:
            report = job(expanded, show)
        except ValueError as e:
            raise click.UsageError(str(e)) from None
    click.echo(report.summary(), err=True)
    if report.failed:
        raise SystemExit(1)


def _plural(n: int) -> str:
    return f"{n} face{'s' if n != 1 else ''}"


@click.command()
@_common_options
@click.option("--seed", type=int, help="Fix the fake identities (face i gets seed + i) instead of the key.")
@_secret_options
def anonymize(inputs, output, model, device, fmt, force, seed, secret_sources) -> None:
    """Replace every face in INPUTS with a realistic face of another identity.

    The original identity is encrypted into the image; `g2face recover` with the same password
    or key file brings it back. Metadata (EXIF, GPS, XMP) is not copied to the outputs.
    """
    from g2face.pipeline.g2face import anonymize_files

    secret = _resolve(secret_sources, confirm=True)
    pipeline = _pipeline(model, device)
    _run(
        lambda expanded, show: anonymize_files(
            pipeline, expanded, output, secret, seed=seed, suffix=f".{fmt}", force=force, on_outcome=show
        ),
        inputs,
        lambda r: f"{r.input}: {_plural(r.faces)} anonymized -> {r.output}",
    )


@click.command()
@_common_options
@click.option(
    "--allow-unverified",
    is_flag=True,
    help="Write results that did not verify (wrong password or damaged payload show unrelated faces).",
)
@_secret_options
def recover(inputs, output, model, device, fmt, force, allow_unverified, secret_sources) -> None:
    """Bring back the original faces of images anonymized by g2face.

    A wrong password or key is detected: nothing is written for that image (exit status 1)
    unless --allow-unverified.
    """
    from g2face.pipeline.g2face import recover_files

    secret = _resolve(secret_sources, confirm=False)
    pipeline = _pipeline(model, device)
    _run(
        lambda expanded, show: recover_files(
            pipeline,
            expanded,
            output,
            secret,
            allow_unverified=allow_unverified,
            suffix=f".{fmt}",
            force=force,
            on_outcome=show,
        ),
        inputs,
        lambda r: (
            f"{r.input}: {_plural(r.faces)} recovered"
            + ("" if r.verified else " (NOT verified)")
            + f" -> {r.output}"
        ),
    )
