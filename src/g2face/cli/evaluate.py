"""`g2face eval` (anonymity, recovery, robustness, utility, diversity and speed of anonymizers, side
by side, into a run folder) and `g2face bench` (time and memory per stage)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from g2face.cli.options import backend_option

_METHODS_HELP = "Comma-separated methods (none, blur, pixelate, box, …)."


@click.command("eval")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML with any of the settings below (flags override it).",
)
@click.option("--methods", help=_METHODS_HELP + "  [default: none,blur,pixelate,box]")
@click.option(
    "--data",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder holding lfw/ and celeba/ (e.g. ../shared/data).",
)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="Run folder (resumes if it exists)."
)
@click.option(
    "--limit", type=click.IntRange(min=20), help="About N LFW pairs (all folds) and N CelebA probes."
)
@click.option("--protocols", help="Comma-separated subset of lfw,celeba,utility,diversity,recovery,speed.")
@click.option("--device", help="cpu, cuda or cuda:N.  [default: cpu]")
@click.option("--no-geometry", is_flag=True, help="Skip MediaPipe landmark/pose/expression utility metrics.")
def evaluate(config_path, methods, data, out, limit, protocols, device, no_geometry) -> None:
    """Evaluate anonymizers on LFW (10-fold re-identification) and CelebA (rank-1) through the full
    detect → align → anonymize → paste-back path; writes metrics.json, report.md, ROC curves and a grid."""
    from g2face.evaluation.runner import run_evaluation
    from g2face.evaluation.settings import default_toolkit, load_config

    try:
        config, anonymizers = load_config(
            config_path, methods=methods, data=data, out=out, limit=limit, protocols=protocols, device=device
        )
    except (ValueError, KeyError) as e:
        raise click.UsageError(str(e).strip('"')) from None
    toolkit = default_toolkit(config.device, geometry=not no_geometry)
    run_evaluation(config, toolkit, anonymizers)
    click.echo(f"wrote {config.out / 'report.md'} and {config.out / 'metrics.json'}")


def _batch_sizes(value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(b) for b in value.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"expected positive integers separated by commas, got {value!r}")
    return sizes


@click.group(invoke_without_command=True)
@click.option("--methods", default="none,blur,pixelate,box", show_default=True, help=_METHODS_HELP)
@click.option(
    "--photo",
    type=click.Path(exists=True, path_type=Path),
    help="A photo to time the whole pipeline on, or a folder of portraits to tile into a 12 MP group photo.",
)
@click.option(
    "--model",
    help="Weights of the g2face method (a packaged name or a `g2face train` file); adds it to --methods.",
)
@click.option(
    "--video",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Time tracked anonymization of this clip instead (--model, default g2face-lite): frames per "
    "second and seconds per face-frame.",
)
@click.option("--frames", type=click.IntRange(min=1), help="With --video: only the first N frames.")
@click.option(
    "--height", type=click.IntRange(min=16), help="With --video: resize frames to this height (e.g. 720)."
)
@click.option("--device", default="cpu", show_default=True)
@backend_option
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--batches",
    default="1,8",
    show_default=True,
    callback=lambda ctx, param, value: _batch_sizes(value),
    help="Comma-separated batch sizes (`--batches 1` for a large model on a CPU).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the table as JSON.",
)
@click.pass_context
def bench(
    ctx, methods, photo, model, video, frames, height, device, backend, repeats, batches, json_path
) -> None:
    """Milliseconds per face (batch 1 and 8) and peak memory of every stage, and of the whole
    pipeline on a 12-megapixel photo with several faces (needs --photo).

    `--video CLIP` times tracked video anonymization instead; `g2face bench priors` the pretrained
    priors.
    """
    if ctx.invoked_subcommand is not None:
        return
    if video is not None:
        _bench_video(video, model or "g2face-lite", device, frames, height, json_path)
        return
    if photo is None:
        raise click.UsageError("--photo is required (a photo, or a folder of portraits to tile)")
    from g2face.detection.yunet import YuNetDetector
    from g2face.evaluation.bench import as_rows, bench_photo, environment
    from g2face.evaluation.bench import bench as run_bench
    from g2face.evaluation.settings import parse_methods
    from g2face.models.zoo import ModelNotAvailableError
    from g2face.priors.backends import BackendError
    from g2face.types import InputError

    spec: list = [m.strip() for m in methods.split(",") if m.strip()]
    if model is not None:
        spec = [m for m in spec if m != "g2face"] + [{"g2face": {"model": model, "device": device}}]
    try:
        anonymizers = parse_methods(spec)
    except KeyError as e:
        raise click.UsageError(str(e).strip('"')) from None
    except ModelNotAvailableError as e:
        raise click.BadParameter(str(e), param_hint="--model") from None
    try:
        image = bench_photo(photo)
    except (ValueError, InputError) as e:
        raise click.UsageError(str(e)) from None
    try:
        timings = run_bench(
            anonymizers,
            YuNetDetector(device=device),
            image,
            device=device,
            batches=batches,
            repeats=repeats,
            backend=backend,
        )
    except BackendError as e:
        raise click.UsageError(str(e)) from None
    env = environment(device, backend)
    click.echo(
        f"device {env['device']}, {env['threads']} threads, torch {env['torch']}, generator on {backend}, "
        f"load average {env['load_average']:.1f}"
    )
    click.echo(f"{'subject':10} {'stage':42} {'batch':>5} {'ms/item':>9} {'peak MB':>8}")
    for t in timings:
        click.echo(f"{t.subject:10} {t.stage:42} {t.batch:5d} {t.ms_per_item:9.1f} {t.peak_memory_mb:8.0f}")
    if json_path is not None:
        json_path.write_text(json.dumps({"environment": env, "timings": as_rows(timings)}, indent=1))


def _bench_video(clip: Path, model: str, device: str, frames, height, json_path) -> None:
    import secrets

    from g2face.cli.anonymize import _pipeline
    from g2face.evaluation.bench import environment
    from g2face.io import printable
    from g2face.payload import Secret
    from g2face.pipeline.g2face import CarrierSettings
    from g2face.types import InputError
    from g2face.video.bench import bench_video

    pipeline = _pipeline(model, device, carriers=CarrierSettings(container=False, pixel_payload=False))
    try:
        result = bench_video(
            pipeline, clip, Secret(secrets.token_bytes(32), "key"), limit=frames, height=height
        )
    except (ValueError, InputError) as e:
        raise click.ClickException(printable(str(e))) from None
    env = environment(device)
    (width, high), scaled = result.size, result.scaled_from
    click.echo(f"device {env['device']}, {env['threads']} threads, torch {env['torch']}")
    click.echo(
        f"{clip}: {result.frames} frames at {width}x{high}"
        + (f" (scaled from {scaled[0]}x{scaled[1]})" if scaled else "")
        + f", {result.face_frames} face-frames, {result.search_frames} with a new track's dummy search"
    )
    steady = result.frames - result.search_frames
    click.echo(
        f"{result.frames_per_second:.3f} frames/s, {result.seconds_per_face_frame:.3f} s per face-frame"
        + (f"; without searches {result.steady_seconds / steady:.3f} s per frame" if steady else "")
    )
    if json_path is not None:
        json_path.write_text(json.dumps({"environment": env, "video": result.to_dict()}, indent=1))


@bench.command("priors")
@click.option("--only", help="Comma-separated subset of the priors (default: all).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: torch's default).")
@click.option("--batches", default="1,8", show_default=True, help="Comma-separated batch sizes.")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the table as JSON.",
)
def bench_priors_command(only, device, repeats, threads, batches, json_path) -> None:
    """Forward and forward+backward ms per image at batch 1 and 8, and peak memory, per prior."""
    from dataclasses import asdict

    from g2face.evaluation.bench_priors import PRIORS, bench_priors

    try:
        sizes = tuple(int(b) for b in batches.split(","))
        rows = bench_priors(
            only.split(",") if only else PRIORS,
            batches=sizes,
            device=device,
            repeats=repeats,
            threads=threads,
        )
    except KeyError as e:
        raise click.UsageError(str(e).strip('"')) from None
    click.echo(
        f"{'prior':20} {'batch':>5} {'fwd ms/img':>11} {'fwd+bwd ms/img':>15} {'peak MB':>8} {'params M':>9}"
    )
    for r in rows:
        both = "-" if r.forward_backward_ms is None else f"{r.forward_backward_ms:.1f}"
        timing = f"{r.forward_ms:11.1f} {both:>15}"
        click.echo(f"{r.prior:20} {r.batch:5d} {timing} {r.peak_rss_mb:8.0f} {r.parameters_m:9.2f}")
    click.echo(
        f"device {rows[0].device}, {rows[0].threads} threads; facenet-casia is evaluation-only (no backward)"
    )
    if json_path is not None:
        json_path.write_text(json.dumps([asdict(r) for r in rows], indent=1))
