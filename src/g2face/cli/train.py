"""`g2face train`: run one training stage from a YAML configuration (single process or torchrun).

Under torchrun every process runs the same command:
    torchrun --nproc-per-node 2 --no-python g2face train --config configs/lite.yaml --stage e2e
"""

from __future__ import annotations

from pathlib import Path

import click

STAGES = ("bank", "gie", "payload", "e2e")


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML configuration (only what differs from the defaults).",
)
@click.option("--stage", type=click.Choice(STAGES), required=True, help="Training stage to run or resume.")
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run folder [default: <runs_dir>/<config name>].",
)
@click.option(
    "--steps", type=int, help="Stop after this step (default: the stage's length); a later call continues."
)
@click.option(
    "--data",
    type=click.Path(exists=True, file_okay=False),
    help="Prepared dataset folder (overrides the config).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help="Faces per step for this stage (overrides the config; with grad_accumulation k the "
    "optimiser sees k × this).",
)
@click.option(
    "--activation-checkpointing/--no-activation-checkpointing",
    default=None,
    help="Recompute activations in backward instead of keeping them: same gradients, ~1.3× the "
    "time, a fraction of the memory (overrides the config).",
)
@click.option("--device", help="cpu, cuda, cuda:1 … (overrides the config).")
@click.option(
    "--max-minutes",
    type=click.FloatRange(min=0, min_open=True),
    help="Stop and checkpoint after this much wall-clock time; a later call continues.",
)
@click.option(
    "--init-from",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Start a stage that has no checkpoint yet from an exported model file (model.safetensors).",
)
@click.option(
    "--dry-run", is_flag=True, help="Print the resolved configuration and parameter counts, then stop."
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(
    config_path: Path | None,
    stage: str,
    run_dir: Path | None,
    steps: int | None,
    data: str | None,
    batch_size: int | None,
    activation_checkpointing: bool | None,
    device: str | None,
    max_minutes: float | None,
    init_from: Path | None,
    dry_run: bool,
    quiet: bool,
) -> None:
    """Train G2Face in stages: bank → gie → payload → e2e. Each stage writes its folder in the run
    (config, metrics.jsonl, image grids, checkpoints) and resumes from its last checkpoint."""
    from g2face import training

    overrides = {
        k: v
        for k, v in (
            ("data", data),
            ("device", device),
            ("activation_checkpointing", activation_checkpointing),
        )
        if v is not None
    }
    try:
        config = training.load_config(config_path, overrides)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--config") from None
    if batch_size is not None:
        try:
            config = training.override_stage(config, stage, batch_size=batch_size)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--batch-size") from None
    if dry_run:
        click.echo(training.describe(config, stage))
        return
    folder = run_dir or Path(config.runs_dir) / (config_path.stem if config_path else config.model)
    try:
        result = training.train(
            config,
            stage,
            folder,
            steps=steps,
            progress=not quiet,
            max_minutes=max_minutes,
            init_from=init_from,
        )
    except training.IncompatibleWeightsError as e:
        raise click.BadParameter(str(e), param_hint="--init-from") from None
    if result.step:
        click.echo(f"{stage}: step {result.step}, {result.seconds_per_step:.3f} s/step, run folder {folder}")


if __name__ == "__main__":  # `torchrun -m g2face.cli.train …`
    train()
