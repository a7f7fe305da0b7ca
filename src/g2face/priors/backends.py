"""Where the MobileStyleGAN generator runs: its PyTorch modules (the reference), or the exported
constant-weight graph (`ConstantWeightSynthesis`) in ONNX Runtime or OpenVINO (`pip install
'g2face[runtime]'`).

`use_backend(model, name)` swaps a model's `generator` for one that runs on `name`. The swapped
generator is still a `MobileStyleGAN` with the same (shared) weights: only its plain forward pass —
W+ [B, 16, 512] float32 on the CPU, no fuse hook, no gradient — goes to the runtime; everything
else (fuse hooks, gradients, other devices and dtypes, mapping, sampling) runs the PyTorch modules.

The ONNX graph is built from the weights on first use and cached in the asset cache under a hash of
those weights (`g2face.hub.converted_path`: built in a temporary folder, renamed into place), so a
changed or fine-tuned generator gets its own graph. `auto` times every installed backend on a few
renders, round-robin, and caches the choice beside the graph for this CPU, thread count and set of
runtime versions (`calibration.json`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import threading
import time
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from g2face import hub
from g2face.priors.base import FuseHook, freeze
from g2face.priors.mobilestylegan import ConstantWeightSynthesis, MobileStyleGAN

RUNTIMES = ("onnxruntime", "openvino")
BACKENDS = ("torch", *RUNTIMES)
CHOICES = (*BACKENDS, "auto")
GRAPH_TAG = "graph-v1"
"""Names the exported graph's form (ConstantWeightSynthesis, opset, exporter): bump it when that
changes, so a stale cached graph is not reused."""
OPSET = 20
CALIBRATION = "calibration.json"
CALIBRATION_RENDERS = 3
"""Timed renders per backend for `auto` (after one warm-up render each)."""

Runner = Callable[[np.ndarray], np.ndarray]


class BackendError(Exception):
    """A one-line reason a backend cannot run this generator (runtime not installed, wrong device)."""


def available_backends() -> tuple[str, ...]:
    """`torch` and every runtime whose Python package is installed."""
    return ("torch", *(r for r in RUNTIMES if _installed(r)))


def _installed(runtime: str) -> bool:
    try:
        __import__(runtime)
    except ImportError:
        return False
    return True


def weights_digest(generator: MobileStyleGAN) -> str:
    """sha256 of the generator's tensors (names, shapes, values) and its output resolution."""
    digest = hashlib.sha256(f"{generator.output_resolution}".encode())
    for name, tensor in sorted(generator.state_dict().items()):
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def graph_path(generator: MobileStyleGAN) -> Path:
    """The generator's exported ONNX graph (W+ [B, n_styles, 512] → image [B, 3, R, R]), built on
    first use (a few seconds) and cached under a hash of its weights."""
    tag = f"{GRAPH_TAG}-{weights_digest(generator)[:16]}"
    return hub.converted_path(
        "mobilestylegan",
        f"generator-{generator.output_resolution}.onnx",
        build=lambda out: _export(generator, out),
        tag=tag,
    )


def _export(generator: MobileStyleGAN, out: Path) -> None:
    graph = ConstantWeightSynthesis(generator.synthesis, generator.output_resolution).eval()
    example = generator.w_avg.detach().expand(1, generator.n_styles, -1)
    batch = {0: "batch"}
    # The TorchScript exporter warns about its own deprecation and constant folding: not the user's
    # concern (the parity tests are what say the graph is right).
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (example.contiguous(),),
            str(out),
            input_names=["wplus"],
            output_names=["image"],
            dynamic_axes={"wplus": batch, "image": batch},
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter: no onnxscript dependency
        )


def onnxruntime_runner(path: Path, threads: int) -> Runner:
    """An ONNX Runtime session on the CPU with `threads` intra-op threads (graph optimisations:
    all, which include its NCHWc layout for convolutions)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # no spinning between calls: its idle threads would take the cores from PyTorch's work that
    # follows each render (measured: a face took 1.6x the CPU time of the PyTorch generator with it on)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # its "some nodes were not assigned" notes are not the user's concern
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda wplus: session.run(["image"], {"wplus": wplus})[0]


def openvino_runner(path: Path, threads: int) -> Runner:
    """An OpenVINO CPU model compiled for latency on `threads` threads, in fp32 (OpenVINO would pick
    bf16 on CPUs that have it, which changes the numbers beyond the parity tolerance)."""
    import openvino

    core = openvino.Core()
    compiled = core.compile_model(
        str(path),
        "CPU",
        {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": "f32",
        },
    )
    request = compiled.create_infer_request()
    lock = threading.Lock()  # one infer request: calls from several threads take turns

    def run(wplus: np.ndarray) -> np.ndarray:
        with lock:
            # copy: the request's output buffer is overwritten by the next call
            return request.infer({"wplus": wplus})["image"].copy()

    return run


_RUNNERS: dict[str, Callable[[Path, int], Runner]] = {
    "onnxruntime": onnxruntime_runner,
    "openvino": openvino_runner,
}


class RuntimeGenerator(MobileStyleGAN):
    """A `MobileStyleGAN` whose plain forward pass runs its exported graph in a runtime.

    It shares the reference's weights. The runtime session is made on first use (and not copied or
    pickled with the module: a copy makes its own).
    """

    def __init__(self, reference: MobileStyleGAN, backend: str, graph: Path, threads: int):
        if backend not in RUNTIMES:
            raise BackendError(f"{backend!r} is not a graph runtime; use one of {', '.join(RUNTIMES)}")
        with torch.device("meta"):  # no random init: the reference's tensors are assigned below
            super().__init__(reference.output_resolution, reference.synthesis.channels, reference.style_dim)
        self.load_state_dict(reference.state_dict(), strict=True, assign=True)
        freeze(self)
        self.backend, self.graph, self.threads = backend, graph, threads
        self._runner: Runner | None = None

    def runner(self) -> Runner:
        if self._runner is None:
            self._runner = _RUNNERS[self.backend](self.graph, self.threads)
        return self._runner

    def forward(self, wplus: Tensor, fuse: FuseHook | None = None) -> Tensor:
        reference_only = (
            fuse is not None
            or wplus.device.type != "cpu"
            or wplus.dtype != torch.float32
            or (torch.is_grad_enabled() and wplus.requires_grad)
        )
        if reference_only:
            return super().forward(wplus, fuse)
        if wplus.ndim != 3 or wplus.shape[1:] != (self.n_styles, self.style_dim):
            raise ValueError(
                f"expected W+ of shape [B, {self.n_styles}, {self.style_dim}], got {list(wplus.shape)}"
            )
        return torch.from_numpy(self.runner()(np.ascontiguousarray(wplus.detach().numpy())))

    def reference(self) -> MobileStyleGAN:
        """The plain PyTorch generator with the same weights."""
        with torch.device("meta"):
            plain = MobileStyleGAN(self.output_resolution, self.synthesis.channels, self.style_dim)
        plain.load_state_dict(self.state_dict(), strict=True, assign=True)
        return freeze(plain)

    def trainable_copy(self) -> MobileStyleGAN:
        return self.reference().trainable_copy()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_runner"] = None
        return state

    def extra_repr(self) -> str:
        return f"backend={self.backend}, threads={self.threads}"


def generator_on(generator: MobileStyleGAN, backend: str, *, threads: int | None = None) -> MobileStyleGAN:
    """`generator` running on `backend` (`torch`, `onnxruntime`, `openvino` or `auto`)."""
    if backend not in CHOICES:
        raise BackendError(f"unknown backend {backend!r}; use one of {', '.join(CHOICES)}")
    reference = generator.reference() if isinstance(generator, RuntimeGenerator) else generator
    threads = threads or torch.get_num_threads()
    if backend == "auto":
        if reference.w_avg.device.type != "cpu" or len(available_backends()) == 1:
            return reference  # the runtimes here run on the CPU; with none installed, torch it is
        backend = calibrated_choice(reference, threads)
    if backend == "torch":
        return reference
    if not _installed(backend):
        raise BackendError(f"{backend} is not installed: pip install 'g2face[runtime]'")
    if reference.w_avg.device.type != "cpu":
        raise BackendError(f"the {backend} backend runs on the CPU; use --device cpu or --backend torch")
    return RuntimeGenerator(reference, backend, graph_path(reference), threads)


def use_backend(model: nn.Module, backend: str, *, threads: int | None = None) -> nn.Module:
    """Run `model.generator` (a MobileStyleGAN) on `backend`; returns `model`. Models without such a
    generator are returned as they are for `torch` and `auto`, and refused for a named runtime."""
    generator = getattr(model, "generator", None)
    if not isinstance(generator, MobileStyleGAN):
        if backend in ("torch", "auto"):
            return model
        raise BackendError(
            f"--backend {backend} needs a model with the MobileStyleGAN generator (g2face-lite)"
        )
    model.generator = generator_on(generator, backend, threads=threads)
    return model


# ---------------------------------------------------------------- auto: a measured choice


def _calibration_key(threads: int) -> str:
    versions = {b: metadata.version(b) for b in available_backends()}
    cpu = _cpu_model()
    return json.dumps({"cpu": cpu, "threads": threads, "versions": versions}, sort_keys=True)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def calibrate(
    reference: MobileStyleGAN, threads: int, renders: int = CALIBRATION_RENDERS
) -> dict[str, float]:
    """Median wall-clock ms of one render on every installed backend, timed round-robin (so a
    change in the machine's load hits every backend alike), after one warm-up render each."""
    graph = graph_path(reference)
    runs: dict[str, Callable[[], object]] = {}
    wplus = reference.w_avg.detach().to(torch.float32).expand(1, reference.n_styles, -1).contiguous()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for backend in available_backends():
            generator = (
                reference if backend == "torch" else RuntimeGenerator(reference, backend, graph, threads)
            )
            runs[backend] = lambda g=generator: g(wplus)
            with torch.no_grad():
                runs[backend]()  # warm-up (and the runtime's session or compilation)
        times: dict[str, list[float]] = {b: [] for b in runs}
        with torch.no_grad():
            for _ in range(renders):
                for backend, run in runs.items():
                    start = time.perf_counter()
                    run()
                    times[backend].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return {b: 1e3 * float(np.median(t)) for b, t in times.items()}


def calibrated_choice(reference: MobileStyleGAN, threads: int) -> str:
    """The fastest backend here for this generator, measured once (`calibrate`) and cached beside its
    graph per CPU, thread count and runtime versions."""
    path = graph_path(reference).with_name(CALIBRATION)
    key = _calibration_key(threads)
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    entry = cached.get(key)
    if not isinstance(entry, dict) or entry.get("choice") not in BACKENDS:
        ms = calibrate(reference, threads)
        entry = {"choice": min(ms, key=ms.get), "ms_per_render": ms}
        cached[key] = entry
        with contextlib.suppress(OSError):  # a read-only shared cache: measure again next time
            hub.store.atomic_write_bytes(path, (json.dumps(cached, indent=1) + "\n").encode())
    return entry["choice"]
