"""A run folder: resolved config, `metrics.jsonl`, optional TensorBoard scalars and image grids.

Only the main process writes; other ranks get a RunLog with `enabled=False` that does nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from g2face.training.config import TrainConfig, dump_config


class RunLog:
    def __init__(self, folder: Path, config: TrainConfig, stage: str, enabled: bool = True) -> None:
        self.folder = Path(folder)
        self.stage = stage
        self.enabled = enabled
        self._tensorboard = None
        if not enabled:
            return
        (self.folder / "samples").mkdir(parents=True, exist_ok=True)
        (self.folder / "config.yaml").write_text(dump_config(config))
        try:  # TensorBoard is optional (the `train` extra); metrics.jsonl is always written
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            pass
        else:
            self._tensorboard = SummaryWriter(str(self.folder / "tensorboard"))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"stage": self.stage, "step": step, "time": round(time.time(), 3)}
        record.update({k: round(float(v), 6) for k, v in values.items()})
        with open(self.folder / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tensorboard is not None:
            for key, value in values.items():
                self._tensorboard.add_scalar(f"{self.stage}/{key}", value, step)

    def image_grid(self, step: int, columns: Sequence[torch.Tensor], name: str = "grid") -> Path | None:
        """Save columns of [B, 3, H, W] images in [-1, 1] side by side, one row per sample."""
        if not self.enabled:
            return None
        grid = torch.cat(
            [torch.cat(list(c.detach().float().cpu().clamp(-1, 1)), dim=1) for c in columns], dim=2
        )
        pixels = ((grid.permute(1, 2, 0) + 1) * 127.5).round().to(torch.uint8).numpy()
        path = self.folder / "samples" / f"{self.stage}_{name}_{step:07d}.png"
        Image.fromarray(np.ascontiguousarray(pixels)).save(path)
        return path

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
