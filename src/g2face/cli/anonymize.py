"""`g2face anonymize` and `g2face recover`: whole photos, folders or globs, with a password or key."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click
from tqdm.auto import tqdm

from g2face import hub
from g2face.cli.options import backend_option, refine_option, validate_device
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
    @backend_option
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


def _pipeline(model: str, device: str, backend: str = "torch", **options):
    from g2face.models.zoo import ModelNotAvailableError
    from g2face.pipeline.g2face import G2FacePipeline
    from g2face.priors.backends import BackendError

    try:
        pipeline = G2FacePipeline.from_pretrained(model, device=device, backend=backend, **options)
    except (ModelNotAvailableError, hub.HubError, BackendError) as e:
        raise click.ClickException(printable(str(e))) from None
    return pipeline


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
    click.echo(report.summary() + _faces_to_review(report), err=True)
    if report.failed:
        raise SystemExit(1)


def _faces_to_review(report) -> str:
    """How many faces of the whole run the search could not make meet all its goals (each file's
    line names them): a folder of thousands of photos is not read line by line."""
    count = sum(
        bool(face.get("review"))
        for outcome in report.outcomes
        if outcome.ok
        for face in (outcome.result.details or {}).get("faces", [])
    )
    return f"; {_plural(count)} to review (named on their files' lines and in --report)" if count else ""


def _one_video(inputs: tuple[str, ...]) -> bool:
    """A single video clip is handled by the video path (tracking, sidecar container)."""
    from g2face.io.video import is_video

    return len(inputs) == 1 and is_video(inputs[0])


def _plural(n: int) -> str:
    return f"{n} face{'s' if n != 1 else ''}"


def _describe_anonymized(r) -> str:
    faces = (r.details or {}).get("faces", [])
    if not faces:
        return f"{r.input}: no face found; copied unchanged -> {r.output}"
    counts: dict[str, int] = {}
    for face in faces:
        counts[face["action"]] = counts.get(face["action"], 0) + 1
    done = ", ".join(
        f"{_plural(n)} anonymized" if action == "anonymized" else f"{n} {action}"
        for action, n in counts.items()
    )
    flagged = [f"#{i} {'; '.join(face['review'])}" for i, face in enumerate(faces) if face.get("review")]
    if flagged:  # the best fake the search found misses some of its goals: a person should look
        done += f" (to review: {', '.join(flagged)})"
    return f"{r.input}: {done} -> {r.output}"


SMALL_FACE_CHOICES = ("blur", "pixelate", "box")  # g2face.pipeline.selection.SMALL_FACE_METHODS
KEEP_CHOICES = ("eyes", "brows", "nose", "mouth")  # g2face.models.fusion.KEEP_REGIONS


def _parse_keep(ctx, param, value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    names = tuple(dict.fromkeys(n.strip().lower() for n in value.split(",") if n.strip()))
    unknown = [n for n in names if n not in KEEP_CHOICES]
    if unknown:
        known = ", ".join(KEEP_CHOICES)
        raise click.BadParameter(f"unknown region {', '.join(unknown)}; choose from {known}")
    return names


def _selector(pipeline, exempt_refs: tuple[str, ...], only_refs: tuple[str, ...], device: str):
    """The per-face identity decision from reference photos, or None without references."""
    if not exempt_refs and not only_refs:
        return None
    from g2face.pipeline.selection import FaceSelector, ReferenceError, sface_embedder

    mode, photos = ("exempt", exempt_refs) if exempt_refs else ("only", only_refs)
    try:
        return FaceSelector.from_photos(photos, mode, pipeline.detector, sface_embedder(device))
    except ReferenceError as e:
        raise click.UsageError(printable(str(e))) from None


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
    help="Fake faces rendered per round to choose from (more: more anonymous, slower); a second round "
    "runs when none qualifies [model default: 2].",
)
@click.option(
    "--away-steps",
    type=click.IntRange(0, 50),
    help="Optimisation steps that move a fake face still too like the original further from it "
    "(the apparent attributes held); 0: none [model default: 5].",
)
@click.option(
    "--skin-tone",
    type=click.Choice(["features", "colour"]),
    help="features: the fake person is drawn with the original's skin tone, so its features go with "
    "it (a dark-skinned person's fake is not a light-skinned face darkened; the fake is then a "
    "little more alike to the recogniser); colour: the tone is matched by colour only "
    "[model default: features].",
)
@click.option(
    "--warp",
    type=click.FloatRange(0, 1),
    help="How far the fake face is warped onto the original's face shape, 0..1; higher keeps the "
    "expression closer but copies more of the original's facial geometry "
    "[stored in the model; g2face-lite: 0.2].",
)
@click.option(
    "--keep",
    callback=_parse_keep,
    help="Face regions kept from the original, comma-separated: eyes, brows, nose, mouth "
    "(--method g2face only). Kept regions carry identity.",
)
@click.option(
    "--exempt",
    "exempt_refs",
    multiple=True,
    help="A photo (or folder) of a person whose faces are left untouched; repeat for more people.",
)
@click.option(
    "--only",
    "only_refs",
    multiple=True,
    help="A photo (or folder) of a person to anonymize: everyone else is left untouched; repeatable.",
)
@click.option(
    "--min-face",
    type=click.FloatRange(0),
    default=0,
    show_default=True,
    help="Faces narrower than this (pixels) get the --small-faces filter instead of the generator.",
)
@click.option(
    "--small-faces",
    type=click.Choice(SMALL_FACE_CHOICES),
    default="blur",
    show_default=True,
    help="Filter for faces below --min-face (reversible like the rest).",
)
@click.option(
    "--review",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write a contact sheet per image into this folder: numbered boxes coloured by action.",
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
    backend,
    method,
    seed,
    no_container,
    no_pixel_payload,
    attributes,
    candidates,
    away_steps,
    skin_tone,
    warp,
    keep,
    exempt_refs,
    only_refs,
    min_face,
    small_faces,
    review,
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
    if keep and method != "g2face":
        raise click.UsageError(f"--keep needs --method g2face (the {method} filter has no face regions)")
    if exempt_refs and only_refs:
        raise click.UsageError("give --exempt or --only, not both")
    selective = keep or exempt_refs or only_refs or min_face or review
    secret = _resolve(secret_sources, confirm=True)
    if _one_video(inputs):
        if backend != "torch":
            raise click.UsageError("--backend works on images; a video runs the generator in PyTorch")
        if selective:
            raise click.UsageError(
                "--keep, --exempt, --only, --min-face and --review work on images, not on a video"
            )
        from g2face.cli.video import anonymize_video_command

        return anonymize_video_command(
            Path(inputs[0]),
            output,
            secret=secret,
            model=model,
            device=device,
            method=method,
            no_container=no_container,
            # Off for video (it adds flicker, and coding harder than CRF 18 destroys it: docs/video.md);
            # the sidecar carries recovery. `g2face video anonymize --pixel-payload` turns it on.
            pixel_payload=False,
            report=report,
            force=force,
        )
    carriers = CarrierSettings(container=not no_container, pixel_payload=not no_pixel_payload)
    options: dict = {"attributes": attributes}
    # Field updates of the model's stored settings (a replaced settings object would drop them).
    candidate_updates = ({} if candidates is None else {"count": candidates}) | (
        {} if away_steps is None else {"away_steps": away_steps}
    )
    if skin_tone == "colour":  # the dummies are neither ranked nor steered by tone
        candidate_updates["skin_tone_weight"] = 0.0
    if candidate_updates:
        options["candidates"] = candidate_updates
    if warp is not None or keep:
        options["fusion"] = {"keep": keep} | ({} if warp is None else {"warp_strength": warp})
    if keep:
        click.echo(
            f"warning: the kept regions ({', '.join(keep)}) are the original's and carry identity: "
            "the person may stay recognisable",
            err=True,
        )
    pipeline = _pipeline(model, device, backend, method=method, carriers=carriers, model_options=options)
    if keep and getattr(pipeline.model, "fusion", None) is None:
        raise click.UsageError(f"--keep needs a geometric-fusion model (g2face-lite); {model} is not one")
    selector = _selector(pipeline, exempt_refs, only_refs, device)
    _run(
        lambda expanded, show: anonymize_files(
            pipeline,
            expanded,
            output,
            secret,
            seed=seed,
            suffix=f".{fmt}",
            force=force,
            selector=selector,
            min_face=min_face,
            small_faces=small_faces,
            review=review,
            on_outcome=show,
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
@refine_option("no container")
@_secret_options
def recover(
    inputs, output, model, device, fmt, force, report, backend, allow_unverified, refine, secret_sources
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
        if backend != "torch":
            raise click.UsageError("--backend works on images; a video runs the generator in PyTorch")
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
            refine=refine,
        )
    pipeline = _pipeline(model, device, backend)
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
