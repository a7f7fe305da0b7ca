"""Training configuration: typed, frozen, read from YAML and saved (resolved) with every run.

A YAML file only lists what differs from the defaults; `load_config` fills in the rest and rejects
unknown keys, so a typo never silently trains with a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from g2face.losses.distortion import DistortionConfig
from g2face.losses.terms import LossWeights

STAGES = ("bank", "gie", "payload", "e2e")


@dataclass(frozen=True)
class StageConfig:
    """Length, batch and learning-rate schedule of one stage. The learning rate warms up linearly
    over `warmup_steps`, then decays by `decay` every `decay_every` steps (the paper: ×0.95 per
    epoch after a 10-epoch warm-up)."""

    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-3
    warmup_steps: int = 100
    decay: float = 0.95
    decay_every: int = 1000


def _default_stages() -> dict[str, StageConfig]:
    return {
        "bank": StageConfig(steps=10_000, batch_size=16),  # steps = number of generator samples
        # f_mlp's layers have lr_mul 0.01 (parameters stored 100× larger), so Adam's steps, which are
        # ~lr in parameter units, need a large lr: at 1e-3 the regression barely moves in 300 steps
        # (lite, 192-sample bank: loss 0.20 → 0.20), at 0.5 it goes 0.19 → 0.06 in 150.
        "gie": StageConfig(steps=20_000, batch_size=256, lr=0.5, warmup_steps=500, decay_every=2000),
        "payload": StageConfig(steps=20_000, batch_size=8, warmup_steps=500, decay_every=2000),
        "e2e": StageConfig(steps=100_000, batch_size=8, warmup_steps=1000, decay_every=5000),
    }


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs. `model` names a G2Face network preset (tiny, lite, paper) and
    `priors` the set of pretrained priors (tiny = random stand-ins for tests)."""

    model: str = "tiny"
    priors: str = "tiny"
    data: str | None = None  # folder prepared by `g2face data prepare`
    runs_dir: str = "runs"
    seed: int = 0
    device: str = "auto"  # auto: CUDA when available (one GPU per process under torchrun)
    amp: bool = True  # bfloat16/float16 autocast on CUDA only
    stages: dict[str, StageConfig] = field(default_factory=_default_stages)
    betas: tuple[float, float] = (0.0, 0.999)
    generator_lr_scale: float = 0.1  # pretrained synthesis layers learn at 0.1× the new parts
    grad_accumulation: int = 1
    ema_decay: float = 0.999
    generator_finetune: bool = True  # e2e: fine-tune the synthesis layers (light, at the scaled lr)
    # Recompute each block's activations in backward instead of keeping them (training.memory):
    # same gradients, ~1.3x the time, a fraction of the memory (the paper network on a CPU).
    activation_checkpointing: bool = False
    # GIE: how many of the bank's last samples are never trained on (val_loss); None: 5 %. A fixed
    # number lets runs on banks of different sizes share one held-out set (bank-size studies).
    gie_held_out: int | None = None
    log_every: int = 10
    sample_every: int = 500
    checkpoint_every: int = 500
    losses: LossWeights = field(default_factory=LossWeights)
    distortion: DistortionConfig = field(default_factory=DistortionConfig)

    def __post_init__(self) -> None:
        e2e = self.stages.get("e2e")
        # f_dummy ends in BatchNorm1d, which trains on batch statistics: one face is no statistic.
        if e2e is not None and e2e.batch_size < 2:
            raise ValueError("stages.e2e.batch_size must be at least 2 (f_dummy's BatchNorm needs a batch)")

    def stage(self, name: str) -> StageConfig:
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
        return self.stages[name]


def _build(kind: Any, value: Any, where: str) -> Any:
    """Convert plain YAML data to the annotated type (dataclasses, dicts, tuples, unions)."""
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        hints = typing.get_type_hints(kind)
        names = {f.name for f in dataclasses.fields(kind)}
        unknown = set(value) - names
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(names)}")
        return kind(**{k: _build(hints[k], v, f"{where}.{k}") for k, v in value.items()})
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        return _build(next(a for a in typing.get_args(kind) if a is not type(None)), value, where)
    if origin is dict:
        key_type, value_type = typing.get_args(kind)
        return {key_type(k): _build(value_type, v, f"{where}.{k}") for k, v in value.items()}
    if origin is tuple:
        return tuple(_build(a, v, where) for a, v in zip(typing.get_args(kind), value, strict=True))
    if kind is float and isinstance(value, int):
        return float(value)
    if kind in (int, float, str, bool) and not isinstance(value, kind):
        raise ValueError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Defaults overridden by `data`; a partial `stages` entry keeps the other stages' defaults."""
    data = dict(data)
    stages = _default_stages()
    for name, values in (data.pop("stages", None) or {}).items():
        if name not in STAGES:
            raise ValueError(f"stages: unknown stage {name!r}; stages: {', '.join(STAGES)}")
        stages[name] = _build(StageConfig, {**dataclasses.asdict(stages[name]), **values}, f"stages.{name}")
    return dataclasses.replace(_build(TrainConfig, data, "config"), stages=stages)


def override_stage(config: TrainConfig, stage: str, **changes: Any) -> TrainConfig:
    """`config` with some of one stage's settings replaced (e.g. `batch_size` from the command line)."""
    updated = dataclasses.replace(config.stage(stage), **changes)
    return dataclasses.replace(config, stages={**config.stages, stage: updated})


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    data = yaml.safe_load(Path(path).read_text()) if path is not None else {}
    return config_from_dict({**(data or {}), **(overrides or {})})


def dump_config(config: TrainConfig) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)
