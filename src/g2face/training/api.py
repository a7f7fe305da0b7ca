"""Entry points behind `g2face train`: run one stage, or describe a configuration (dry run)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from g2face.models.discriminator import Discriminator
from g2face.models.g2face import G2FaceNet
from g2face.training.config import TrainConfig, dump_config
from g2face.training.distributed import setup, teardown
from g2face.training.engine import StageResult, model_config
from g2face.training.stages import STAGE_CLASSES


def train(
    config: TrainConfig,
    stage: str,
    run_dir: Path,
    steps: int | None = None,
    progress: bool = True,
    max_minutes: float | None = None,
    init_from: Path | None = None,
) -> StageResult:
    """Run (or resume) one stage in `run_dir`; under torchrun every process calls this.
    `max_minutes` stops (and checkpoints) after that much wall-clock time; `init_from` starts a stage
    that has no checkpoint yet from an exported model file instead of the previous stage."""
    config.stage(stage)
    env = setup(config.device)
    try:
        runner = STAGE_CLASSES[stage](config, env, Path(run_dir))
        runner.init_from = None if init_from is None else Path(init_from)
        return runner.run(steps, progress, None if max_minutes is None else 60 * max_minutes)
    finally:
        teardown()


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _generator_for(name: str) -> nn.Module | None:
    """An unweighted instance of a non-StyleGAN2 prior, enough to size the network around it."""
    if name == "mobilestylegan":
        from g2face.priors.mobilestylegan import MobileStyleGAN

        return MobileStyleGAN()
    return None


def describe(config: TrainConfig, stage: str | None = None) -> str:
    """The resolved configuration as YAML and the parameter count of every module (no weights are
    loaded and nothing is downloaded)."""
    model = model_config(config.model)
    with torch.device("meta"):
        net = G2FaceNet(model, generator=_generator_for(model.prior))
        discriminator = Discriminator(model.discriminator)
    rows = [(f"net.{name}", _count(m)) for name, m in net.named_children()]
    rows += [("net (total)", _count(net)), ("discriminator (e2e only)", _count(discriminator))]
    lines = [
        dump_config(config).rstrip(),
        "",
        f"# model configuration {model.name!r} (image {net.image_size} px, "
        f"{model.n_bits} payload bits); priors: {config.priors}",
    ]
    if stage is not None:
        s = config.stage(stage)
        lines.append(
            f"# stage {stage}: {s.steps} steps, batch {s.batch_size} × {config.grad_accumulation} accumulated"
        )
    lines += [f"{name:28} {count:>13,}" for name, count in rows]
    return "\n".join(lines)
