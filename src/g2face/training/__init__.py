"""Staged training of G2Face (DESIGN.md §6): bank → gie → payload → e2e, each resumable."""

from g2face.training.api import describe, train
from g2face.training.config import (
    STAGES,
    StageConfig,
    TrainConfig,
    config_from_dict,
    dump_config,
    load_config,
    override_stage,
)
from g2face.training.engine import IncompatibleWeightsError, StageResult

__all__ = [
    "STAGES",
    "IncompatibleWeightsError",
    "StageConfig",
    "StageResult",
    "TrainConfig",
    "config_from_dict",
    "describe",
    "dump_config",
    "load_config",
    "override_stage",
    "train",
]
