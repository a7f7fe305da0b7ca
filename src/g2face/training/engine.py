"""The machinery every training stage shares: building the network and priors, the run folder,
optimisers with the paper's schedule, gradient accumulation, AMP, data-parallel gradient averaging,
EMA, checkpoints with resume, metrics, image grids and the progress bar.

Data parallelism averages gradients explicitly (one flattened all-reduce per optimiser step) rather
than wrapping modules in DistributedDataParallel: the GAN step freezes and unfreezes the
discriminator between passes and the payload stage calls the network functionally, both of which
DDP's hooks do not allow. Buffers (BatchNorm statistics) are broadcast from rank 0 after each step,
so every rank holds identical weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from g2face.models.checkpoints import read_g2face_config, save_g2face
from g2face.models.config import PRESETS, G2FaceNetConfig
from g2face.models.g2face import G2FaceNet
from g2face.models.zoo import Priors, build_priors
from g2face.training import checkpoint as ckpt
from g2face.training.config import STAGES, StageConfig, TrainConfig
from g2face.training.distributed import (
    DistEnv,
    any_rank,
    gather_objects,
    is_distributed,
    mean_over_ranks,
)
from g2face.training.memory import checkpoint_activations
from g2face.training.runlog import RunLog
from g2face.training.schedule import make_optimizer
from g2face.training.sources import DatasetFaces, GeneratedFaces


def model_config(name: str) -> G2FaceNetConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model configuration {name!r}; known: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


@dataclass(frozen=True)
class StageResult:
    stage: str
    folder: Path
    step: int
    metrics: dict[str, float]
    seconds_per_step: float


def average_gradients(params: list[nn.Parameter]) -> None:
    """Mean of every gradient over ranks (a missing gradient counts as zero)."""
    if not is_distributed() or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def sync_from_rank0(module: nn.Module, buffers_only: bool = False) -> None:
    if not is_distributed():
        return
    for t in list(module.buffers()) if buffers_only else list(module.state_dict().values()):
        dist.broadcast(t.data, src=0)


def warmup_ema(decay: float):
    """EMA update (a `multi_avg_fn` of AveragedModel) whose decay ramps up as
    min(decay, (1 + n) / (10 + n)) over the first n updates: a short run's averaged model, the one
    exported, then follows training instead of staying near the initial weights."""

    @torch.no_grad()
    def update(averaged: list[Tensor], current: list[Tensor], n_averaged: Tensor) -> None:
        n = float(n_averaged)
        d = min(decay, (1 + n) / (10 + n))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1 - d)
        else:  # integer buffers (BatchNorm counters)
            for a, c in zip(averaged, current, strict=True):
                a.copy_(a * d + c * (1 - d))

    return update


class IncompatibleWeightsError(ValueError):
    """An --init-from model whose network configuration is not the run's."""


class Stage:
    """One resumable training stage. Subclasses set `name`, build their optimisers in `setup`, and
    implement `train_step` (one optimiser step over `grad_accumulation` micro-batches) and `samples`."""

    name = ""

    def __init__(
        self, config: TrainConfig, env: DistEnv, run_dir: Path, priors: Priors | None = None
    ) -> None:
        self.config = config
        self.env = env
        self.device = env.device
        self.run_dir = Path(run_dir)
        self.folder = self.run_dir / self.name
        self.stage: StageConfig = config.stage(self.name)
        self.model_config = model_config(config.model)
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        self.priors = (priors or build_priors(config.priors, self.model_config, config.seed)).to(self.device)
        self.net = G2FaceNet(self.model_config, generator=self.priors.trainable_generator()).to(self.device)
        # what of the generator may train (a prior can keep parts frozen, e.g. its mapping network)
        self.generator_trainable = {n for n, p in self.net.generator.named_parameters() if p.requires_grad}
        self.net.requires_grad_(False)
        self.ema = AveragedModel(self.net, multi_avg_fn=warmup_ema(config.ema_decay), use_buffers=True)
        self.optimizers: list[torch.optim.Optimizer] = []
        self.schedulers: list[torch.optim.lr_scheduler.LRScheduler] = []
        self.extra_modules: dict[str, nn.Module] = {}
        self.step = 0
        self.init_from: Path | None = None  # exported model to start from when nothing resumes
        self.amp = config.amp and self.device.type == "cuda"
        self.faces = (
            DatasetFaces(Path(config.data), self.net.image_size, config.seed)
            if config.data
            else GeneratedFaces(self.priors.generator, self.net.image_size, config.seed)
        )

    # ------------------------------------------------------------------ set-up and state

    def add_optimizer(self, groups: list[tuple[list[nn.Module], float]]) -> torch.optim.Optimizer:
        for modules, _ in groups:
            for m in modules:
                if m is self.net.generator:
                    for n, p in m.named_parameters():
                        p.requires_grad_(n in self.generator_trainable)
                else:
                    m.requires_grad_(True)
        optimizer, scheduler = make_optimizer(groups, self.stage, self.config.betas)
        self.optimizers.append(optimizer)
        self.schedulers.append(scheduler)
        return optimizer

    def setup(self) -> None:
        raise NotImplementedError

    def prepare(self) -> None:
        """`setup`, then activation checkpointing when configured (after setup, so the stage's own
        modules such as the discriminator are included; the EMA copy is never differentiated and
        keeps plain forwards)."""
        self.setup()
        if self.config.activation_checkpointing:
            # The frozen priors count too: the losses differentiate through them to the images.
            priors = (self.priors.identity, self.priors.geometry, self.priors.perceptual)
            checkpoint_activations(
                [self.net, *self.extra_modules.values(), *(p for p in priors if isinstance(p, nn.Module))]
            )

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net, "ema": self.ema.module, **self.extra_modules}

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for opt in self.optimizers for g in opt.param_groups for p in g["params"]]

    def initialise(self) -> None:
        """Resume this stage, or start from the latest checkpoint of the nearest earlier stage."""
        own = ckpt.latest_checkpoint(self.folder / "checkpoints")
        if own is not None:
            self.load(own)
            return
        if self.init_from is not None:
            # An exported model (e.g. from another machine, where only weights travelled): this
            # stage starts from its weights with a fresh optimiser.
            found = read_g2face_config(self.init_from)
            if found != self.model_config:
                raise IncompatibleWeightsError(
                    f"{self.init_from} holds a {found.name!r} network that differs from this run's "
                    f"{self.model_config.name!r} configuration"
                )
            self.net.load_state_dict(load_file(str(self.init_from)))
        else:
            self.load_earlier_stage()
        sync_from_rank0(self.net)
        self.ema.module.load_state_dict(self.net.state_dict())
        torch.manual_seed(self.config.seed * 1000 + self.env.rank + 1)  # per-rank noise, dummies, distortions

    def load_earlier_stage(self) -> None:
        for earlier in reversed(STAGES[: STAGES.index(self.name)]):
            found = ckpt.latest_checkpoint(self.run_dir / earlier / "checkpoints")
            if found is not None:
                ckpt.load_module_weights(found.weights, {"net": self.net})
                return

    def weights_digest(self) -> str:
        """sha256 of every weight and buffer, to prove that all ranks hold the same model."""
        digest = hashlib.sha256()
        for module in self.modules().values():
            for value in module.state_dict().values():
                digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def save(self) -> None:
        rng = gather_objects(ckpt.rng_state())
        digests = gather_objects(self.weights_digest()) if is_distributed() else []
        if len(set(digests)) > 1:
            raise RuntimeError(f"ranks hold different weights at step {self.step}: {digests}")
        if not self.env.is_main:
            return
        state = {
            "rank_digests": digests,
            "stage": self.name,
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "ema_n_averaged": self.ema.n_averaged.detach().cpu(),
            "rng": rng,
        }
        ckpt.save_checkpoint(self.folder / "checkpoints", self.step, self.modules(), state)
        # The EMA network in the inference format: `g2face anonymize --model <run>/model.safetensors`.
        save_g2face(self.ema.module, self.run_dir / "model.safetensors")

    def load(self, found: ckpt.Checkpoint) -> None:
        ckpt.load_module_weights(found.weights, self.modules())
        state = ckpt.load_state(found.state)
        for o, s in zip(self.optimizers, state["optimizers"], strict=True):
            o.load_state_dict(s)
        for sch, s in zip(self.schedulers, state["schedulers"], strict=True):
            sch.load_state_dict(s)
        self.ema.n_averaged.copy_(state["ema_n_averaged"])
        rng = state["rng"]
        if len(rng) == self.env.world_size:
            ckpt.set_rng_state(rng[self.env.rank])
        else:  # a different number of processes: the run continues, with fresh per-rank RNG
            torch.manual_seed(self.config.seed * 1000 + found.step * 7 + self.env.rank + 1)
        self.step = found.step

    # ------------------------------------------------------------------ the loop

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def micro_batches(self) -> Iterator[Tensor]:
        accumulation = self.config.grad_accumulation
        for micro in range(accumulation):
            yield self.faces.batch(
                self.step * accumulation + micro, self.stage.batch_size, self.env.rank, self.env.world_size
            ).to(self.device)

    def optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        params = [p for g in optimizer.param_groups for p in g["params"]]
        average_gradients(params)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def train_step(self) -> dict[str, float]:
        raise NotImplementedError

    @torch.no_grad()
    def samples(self) -> list[Tensor]:
        raise NotImplementedError

    def after_step(self) -> None:
        for scheduler in self.schedulers:
            scheduler.step()
        sync_from_rank0(self.net, buffers_only=True)
        self.ema.update_parameters(self.net)

    def run(
        self, steps: int | None = None, progress: bool = True, max_seconds: float | None = None
    ) -> StageResult:
        """Train up to `steps` (default: the stage's length) and checkpoint; resumes if it can.
        With `max_seconds`, stop at the first step that ends past that wall-clock budget (counted
        from here), checkpoint, and return: a later call continues where this one stopped."""
        deadline = None if max_seconds is None else time.perf_counter() + max_seconds
        self.prepare()
        self.initialise()
        total = self.stage.steps if steps is None else steps
        log = RunLog(self.folder, self.config, self.name, enabled=self.env.is_main)
        bar = tqdm(
            total=total,
            initial=self.step,
            desc=self.name,
            unit="step",
            disable=not (progress and self.env.is_main),
        )
        metrics: dict[str, float] = {}
        started, first = time.perf_counter(), self.step
        try:
            while self.step < total:
                metrics = self.train_step()
                self.after_step()
                self.step += 1
                bar.update(1)
                metrics = (
                    {**metrics, "lr": self.schedulers[0].get_last_lr()[0]} if self.schedulers else metrics
                )
                if self.step % self.config.log_every == 0 or self.step == total:
                    metrics = mean_over_ranks(metrics, self.device)
                    if self.device.type == "cuda":  # to size batches for the next run
                        metrics["max_mem_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
                    log.scalars(self.step, metrics)
                    bar.set_postfix(
                        {k: f"{v:.3g}" for k, v in metrics.items() if k in ("loss", "bit_acc", "lr")}
                    )
                if self.env.is_main and (self.step % self.config.sample_every == 0 or self.step == total):
                    log.image_grid(self.step, self.samples())
                out_of_time = deadline is not None and any_rank(time.perf_counter() > deadline, self.device)
                if self.step % self.config.checkpoint_every == 0 or self.step == total or out_of_time:
                    self.save()
                if out_of_time:
                    if self.env.is_main and self.step % self.config.sample_every and self.step != total:
                        log.image_grid(self.step, self.samples())
                    break
        finally:
            bar.close()
            log.close()
        elapsed = time.perf_counter() - started
        return StageResult(self.name, self.folder, self.step, metrics, elapsed / max(1, self.step - first))
