"""`g2face bench priors`: forward and forward+backward time per image at batch 1 and 8, and peak
memory, of every offline prior. Each prior runs in a fresh process so its peak resident memory is
its own (the figure includes the Python + torch runtime, about 300 MB on CPU)."""

from __future__ import annotations

import multiprocessing
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class PriorTiming:
    prior: str
    batch: int
    forward_ms: float  # per image, median of repeats
    forward_backward_ms: float | None  # None: the prior must never be differentiated (evaluation only)
    peak_rss_mb: float
    parameters_m: float
    device: str
    threads: int


def _crops(batch: int, device: str) -> Tensor:
    return torch.rand(batch, 3, 256, 256, generator=torch.Generator().manual_seed(0)).to(device) * 2 - 1


def _builders() -> dict[str, Callable[[str], tuple[nn.Module, Callable[[int], tuple], Callable]]]:
    """name -> (device -> (module, make inputs for a batch, reduce the output to a scalar))."""

    def generator(device):
        from g2face.priors.mobilestylegan import load_mobilestylegan

        g = load_mobilestylegan(256, device=device, progress=False)
        wplus = lambda b: (g.sample_wplus(b, seed=0, truncation_psi=0.7).to(device),)  # noqa: E731
        return g, wplus, lambda out: out.mean()

    def sface(device):
        from g2face.priors.sface import SFaceEncoder

        return SFaceEncoder().to(device), lambda b: (_crops(b, device),), lambda out: out.sum()

    def facenet(device):
        from g2face.priors.facenet import FaceNetEncoder

        return FaceNetEncoder().to(device), lambda b: (_crops(b, device),), None

    def geometry(device):
        from g2face.priors.mediapipe_geometry import MediaPipeGeometry

        return MediaPipeGeometry(device=device), lambda b: (_crops(b, device),), lambda g: g.as_vector().sum()

    def lpips(device):
        from g2face.priors.lpips_hed import LpipsHED

        return (
            LpipsHED().to(device),
            lambda b: (_crops(b, device), _crops(b, device).flip(0)),
            lambda out: out.sum(),
        )

    return {
        "mobilestylegan-256": generator,
        "sface": sface,
        "facenet-casia": facenet,
        "mediapipe-geometry": geometry,
        "lpips_hed": lpips,
    }


PRIORS = tuple(_builders())


def _median_seconds(fn: Callable[[], object], device: str, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _measure(name: str, batches: Sequence[int], device: str, repeats: int, threads: int) -> list[dict]:
    torch.set_num_threads(threads)
    module, make_inputs, reduce = _builders()[name](device)
    params = sum(p.numel() for p in module.parameters()) / 1e6
    rows = []
    for batch in batches:
        inputs = make_inputs(batch)
        with torch.no_grad():
            forward = _median_seconds(lambda x=inputs: module(*x), device, repeats)
        both = None
        if reduce is not None:
            grad_inputs = [x.detach().requires_grad_(True) for x in inputs]
            both = _median_seconds(lambda x=grad_inputs: reduce(module(*x)).backward(), device, repeats)
        peak = (
            torch.cuda.max_memory_allocated() / 2**20
            if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )
        rows.append(
            asdict(
                PriorTiming(
                    name,
                    batch,
                    1e3 * forward / batch,
                    None if both is None else 1e3 * both / batch,
                    peak,
                    params,
                    device,
                    threads,
                )
            )
        )
    return rows


def bench_priors(
    names: Sequence[str] = PRIORS,
    *,
    batches: Sequence[int] = (1, 8),
    device: str = "cpu",
    repeats: int = 3,
    threads: int | None = None,
) -> list[PriorTiming]:
    unknown = set(names) - set(PRIORS)
    if unknown:
        raise KeyError(f"unknown prior {', '.join(sorted(unknown))}; known: {', '.join(PRIORS)}")
    threads = threads or torch.get_num_threads()
    context = multiprocessing.get_context("spawn")
    out: list[PriorTiming] = []
    for name in names:
        with context.Pool(1) as pool:
            rows = pool.apply(_measure, (name, tuple(batches), device, repeats, threads))
        out.extend(PriorTiming(**r) for r in rows)
    return out
