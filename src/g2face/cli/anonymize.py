"""`g2face anonymize` and `g2face recover`: whole photos, folders or globs, with a password or key."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click
from tqdm.auto import tqdm

from g2face import hub
from g2face.cli.options import validate_device
from g2face.io import ImageWriteError, check_output_free, expand_inputs, printable, write_json
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
    @click.option(
        "--device", default="cpu", show_default=True, callback=validate_device, help="cpu, cuda or cuda:N."
    )
    @click.option(
        "--format",
        "fmt",
        type=click.Choice(["png", "jpg", "webp"]),
        default="png",
        show_default=True,
        help="Output format inside a folder (PNG is lossless, so the payload arrives exactly).",
    )
    @click.option("--force", is_flag=True, help="Allow outputs to overwrite existing files, inputs included.")
    @click.option(
        "--report",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write a JSON report: every input, every face and what was done.",
    )
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


def _pipeline(model: str, device: str, **options):
    from g2face.models.zoo import ModelNotAvailableError
    from g2face.pipeline.g2face import G2FacePipeline

    try:
        return G2FacePipeline.from_pretrained(model, device=device, **options)
    except (ModelNotAvailableError, hub.HubError) as e:
        raise click.ClickException(printable(str(e))) from None


def _run(job, inputs: tuple[str, ...], describe, report_path: Path | None, force: bool) -> None:
    if report_path is not None:
        try:
            check_output_free(report_path, force=force)
        except ImageWriteError as e:
            raise click.UsageError(printable(str(e))) from None
    expanded = expand_inputs(inputs)
    for notice in expanded.notices:
        click.echo(f"note: {printable(notice)}", err=True)
    total = len(expanded.files) + len(expanded.problems)
    with tqdm(total=total, unit="file", disable=None) as bar:

        def show(outcome) -> None:
            if outcome.ok:
                tqdm.write(printable(describe(outcome.result)))
            else:
                tqdm.write(f"error: {printable(outcome.error)}", file=sys.stderr)
            bar.update(1)

        try:
            report = job(expanded, show)
        except ValueError as e:
            raise click.UsageError(printable(str(e))) from None
    if report_path is not None:
        document = {
            "notices": list(expanded.notices),
            "inputs": [
                {"input": o.source, "ok": o.ok, "error": o.error}
                | ({"output": str(o.result.output)} | (o.result.details or {}) if o.ok else {})
                for o in report.outcomes
            ],
        }
        try:
            write_json(report_path, document, force=force)
        except ImageWriteError as e:
            raise click.ClickException(printable(str(e))) from None
    click.echo(report.summary(), err=True)
    if report.failed:
        raise SystemExit(1)


def _one_video(inputs: tuple[str, ...]) -> bool:
    """A single video clip is handled by the video path (tracking, sidecar container)."""
    from g2face.io.video import is_video

    return len(inputs) == 1 and is_video(inputs[0])


def _plural(n: int) -> str:
    return f"{n} face{'s' if n != 1 else ''}"


def _describe_anonymized(r) -> str:
    if r.faces == 0:
        return f"{r.input}: no face found; copied unchanged -> {r.output}"
    return f"{r.input}: {_plural(r.faces)} anonymized -> {r.output}"


@click.command()
@_common_options
@click.option(
    "--method",
    type=click.Choice(["g2face", "blur", "pixelate", "box"]),
    default="g2face",
    show_default=True,
    help="g2face: a realistic face of another identity; blur / pixelate / box: classic filters, "
    "reversible too (the same recovery carriers).",
)
@click.option("--seed", type=int, help="Fix the fake identities (face i gets seed + i) instead of the key.")
@click.option(
    "--no-container",
    is_flag=True,
    help="Leave out the exact-recovery container (the encrypted original pixels inside the file); "
    "recovery then relies on the in-pixel identity payload.",
)
@click.option(
    "--no-pixel-payload",
    is_flag=True,
    help="Leave out the in-pixel identity payload (recovery then needs the container).",
)
@click.option(
    "--attributes",
    type=click.Choice(["keep", "free"]),
    default="keep",
    show_default=True,
    help="keep: the fake person has the original's apparent gender and age; free: any.",
)
@click.option(
    "--candidates",
    type=click.IntRange(1, 32),
    help="Fake faces rendered per face to choose from (more: more anonymous, slower) [model default: 4].",
)
@click.option(
    "--warp",
    type=click.FloatRange(0, 1),
    help="How far the fake face is warped onto the original's face shape, 0..1; higher keeps the "
    "expression closer but copies more of the original's facial geometry [model default: 0.5].",
)
@_secret_options
def anonymize(
    inputs,
    output,
    model,
    device,
    fmt,
    force,
    report,
    method,
    seed,
    no_container,
    no_pixel_payload,
    attributes,
    candidates,
    warp,
    secret_sources,
) -> None:
    """Replace every face in INPUTS with a realistic face of another identity.

    The original is encrypted into the output file (exact pixels) and into the face's own pixels
    (its identity, which survives recompression); `g2face recover` with the same password or key
    file brings it back. Metadata (EXIF, GPS, XMP, colour profiles) is not copied to the outputs.
    """
    from g2face.pipeline.g2face import CarrierSettings, anonymize_files

    if no_container and no_pixel_payload:
        raise click.UsageError("--no-container with --no-pixel-payload leaves nothing to recover from")
    secret = _resolve(secret_sources, confirm=True)
    if _one_video(inputs):
        from g2face.cli.video import anonymize_video_command

        return anonymize_video_command(
            Path(inputs[0]),
            output,
            secret=secret,
            model=model,
            device=device,
            method=method,
            no_container=no_container,
            no_pixel_payload=no_pixel_payload,
            report=report,
            force=force,
        )
    carriers = CarrierSettings(container=not no_container, pixel_payload=not no_pixel_payload)
    options: dict = {"attributes": attributes}
    if candidates is not None:
        from g2face.models.fusion_anonymizer import CandidateSettings

        options["candidates"] = CandidateSettings(count=candidates)
    if warp is not None:
        from g2face.models.fusion import FusionSettings

        options["fusion"] = FusionSettings(warp_strength=warp)
    pipeline = _pipeline(model, device, method=method, carriers=carriers, model_options=options)
    _run(
        lambda expanded, show: anonymize_files(
            pipeline, expanded, output, secret, seed=seed, suffix=f".{fmt}", force=force, on_outcome=show
        ),
        inputs,
        _describe_anonymized,
        report,
        force,
    )


@click.command()
@_common_options
@click.option(
    "--allow-unverified",
    is_flag=True,
    help="Write results that did not verify (wrong password or damaged payload show unrelated faces).",
)
@click.option(
    "--refine",
    type=click.IntRange(0, 200),
    default=0,
    show_default=True,
    help="Identity-level recovery only: optimisation steps of the rendered face towards the decoded "
    "identity (about 1 s each on a CPU).",
)
@_secret_options
def recover(
    inputs, output, model, device, fmt, force, report, allow_unverified, refine, secret_sources
) -> None:
    """Bring back the original faces of images anonymized by g2face.

    From the file's exact-recovery container when it is intact (the original pixels); otherwise
    from each face's in-pixel payload (the original identity, rendered back at the anonymized
    face's pose and expression). A wrong password or key is detected: nothing is written for that
    image (exit status 1) unless --allow-unverified.
    """
    from g2face.pipeline.g2face import recover_files

    secret = _resolve(secret_sources, confirm=False)
    if _one_video(inputs):
        from g2face.cli.video import recover_video_command

        return recover_video_command(
            Path(inputs[0]),
            output,
            secret=secret,
            model=model,
            device=device,
            allow_unverified=allow_unverified,
            report=report,
            force=force,
        )
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
            refine=refine,
            on_outcome=show,
        ),
        inputs,
        _describe_recovered,
        report,
        force,
    )


def _describe_recovered(r) -> str:
    exact = sum(p == "exact" for p in r.paths)
    identity = sum(p == "identity" for p in r.paths)
    how = []
    if exact:
        how.append(f"{exact} region{'s' if exact != 1 else ''} exactly (container)")
    if identity:
        how.append(f"{_plural(identity)} at identity level (in-pixel payload)")
    missing = len(r.paths) - exact - identity
    if missing:
        how.append(f"{_plural(missing)} not recovered")
    verified = "" if r.verified else " (NOT verified)"
    return f"{r.input}: {'; '.join(how)}{verified} -> {r.output}"
