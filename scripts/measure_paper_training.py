"""Measure what one training step of a configuration holds in memory, component by component, and
how long it takes (docs/paper-config.md, "Training on a CPU").

    OMP_NUM_THREADS=2 G2FACE_HOME=/tmp/paper-home PYTHONPATH=src python \
        scripts/measure_paper_training.py --config configs/paper.yaml --batch-size 2 \
        --activation-checkpointing --steps 2

(`priors: paper` needs `g2face weights import-official`; synthetic files of the released shapes
come from `g2face.models.official.write_synthetic_release`.)

Reported:
* resident memory (RSS) after building the stage, and the process's peak RSS after each step;
* seconds per step (the first step allocates the optimiser states, so it is listed separately);
* activations saved for backward during the first step's generator pass, by the component that
  saved them (unique storages, so a tensor saved by two operations counts once).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections import defaultdict
from pathlib import Path

import psutil
import torch

from g2face.training import load_config, override_stage
from g2face.training.distributed import DistEnv
from g2face.training.stages import STAGE_CLASSES

GIB = 2**30


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


class SavedActivations:
    """Bytes saved for backward per component: forward pre/post hooks keep a stack of the
    component being run; the saved-tensor hook charges each new storage to the innermost one."""

    def __init__(self, components: dict[str, torch.nn.Module]):
        self.stack: list[str] = []
        self.bytes: dict[str, int] = defaultdict(int)
        self.seen: set[int] = set()
        self.handles = []
        for name, module in components.items():
            self.handles.append(module.register_forward_pre_hook(lambda m, a, n=name: self.enter(n)))
            self.handles.append(module.register_forward_hook(lambda m, a, o: self.leave()))

    def enter(self, name: str) -> None:
        self.stack.append(name)

    def leave(self) -> None:  # a forward hook that returns something replaces the output
        self.stack.pop()

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in self.seen:
            self.seen.add(key)
            self.bytes[self.stack[-1] if self.stack else "losses and glue"] += storage.nbytes()
        return tensor

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/paper.yaml"))
    parser.add_argument("--stage", default="e2e", choices=sorted(STAGE_CLASSES))
    parser.add_argument("--batch-size", type=int, help="override the stage's batch size")
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()

    config = load_config(
        args.config, {"device": "cpu", "activation_checkpointing": args.activation_checkpointing}
    )
    if args.batch_size is not None:
        config = override_stage(config, args.stage, batch_size=args.batch_size)
    process = psutil.Process()
    started = time.perf_counter()
    stage = STAGE_CLASSES[args.stage](config, DistEnv(0, 1, torch.device("cpu")), Path("/tmp/unused-run"))
    stage.prepare()
    built = {"rss_after_build_gib": process.memory_info().rss / GIB, "build_s": time.perf_counter() - started}
    print(json.dumps(built), flush=True)

    components = {
        "E_face (pyramid)": stage.net.pyramid,
        "fusion masks": stage.net.fusion_mask,
        "payload injections": stage.net.hiding_injects,
        "generator (synthesis)": stage.net.generator,
        "f_mlp / f_dummy": stage.net.style_mlp,
        "E_p (extractor)": stage.net.hiding_extractor,
        "identity prior": stage.priors.identity,
        "geometry prior": stage.priors.geometry,
        "discriminator": getattr(stage, "discriminator", torch.nn.Identity()),
    }
    if stage.priors.perceptual is not None:
        components["perceptual prior"] = stage.priors.perceptual
    saved = SavedActivations(components)
    # E_face, fusion and injections run inside the generator's hook: list them as their own.
    steps = []
    for step in range(args.steps):
        t = time.perf_counter()
        if step == 0:
            with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda x: x):
                metrics = stage.train_step()
            saved.remove()
        else:
            metrics = stage.train_step()
        stage.after_step()
        stage.step += 1
        steps.append({"step": step + 1, "seconds": time.perf_counter() - t, "peak_rss_gib": peak_rss_gib()})
        print(json.dumps({**steps[-1], "loss": metrics.get("loss")}), flush=True)
    activations = {k: round(v / GIB, 3) for k, v in sorted(saved.bytes.items(), key=lambda kv: -kv[1])}
    report = {
        "config": str(args.config),
        "stage": args.stage,
        "batch_size": stage.stage.batch_size,
        "activation_checkpointing": config.activation_checkpointing,
        "threads": torch.get_num_threads(),
        **built,
        "steps": steps,
        "saved_for_backward_gib": activations,
        "saved_total_gib": round(sum(saved.bytes.values()) / GIB, 3),
    }
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
