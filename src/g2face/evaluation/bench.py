"""`g2face bench`: time (and peak memory of) every stage of anonymize/recover at batch 1 and 8, and
the whole face pipeline on a 12-megapixel photo with several faces."""

from __future__ import annotations

import math
import os
import platform
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from g2face.align import align_face, paste_faces
from g2face.detection.base import FaceDetector
from g2face.evaluation.methods import Anonymizer, is_reversible
from g2face.io import read_image
from g2face.models.anonymizer import G2FaceModel
from g2face.models.fusion_anonymizer import FusionAnonymizer
from g2face.nn.crops import crops_to_tensor, tensor_to_crops
from g2face.payload import Secret, kdf
from g2face.payload.codec import SALT_BYTES
from g2face.pipeline.g2face import G2FacePipeline, default_batch_size
from g2face.priors.backends import use_backend


@dataclass(frozen=True)
class Timing:
    subject: str
    stage: str
    batch: int
    ms_per_item: float
    """Median over repeats, per face (per photo for the photo stages)."""
    peak_memory_mb: float
    """CUDA: peak allocated during the stage; CPU: the process's peak resident set so far."""
    device: str
    threads: int


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


PEAK_GEMM_SIZE = 2048
"""Side of the square fp32 matrix product whose rate stands for the machine's peak (`fp32_peak`)."""


def fp32_peak(device: torch.device, repeats: int = 5) -> float:
    """The machine's fp32 rate in FLOP/s at the current thread count: the best of `repeats`
    products of two `PEAK_GEMM_SIZE`² matrices (BLAS at its most efficient shape, the yardstick
    issue 17's FLOP floor is measured against)."""
    n = PEAK_GEMM_SIZE
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    out = torch.empty(n, n, device=device)
    torch.mm(a, b, out=out)  # warm-up
    best = math.inf
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def torch_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the PyTorch operations `fn` runs (`torch.utils.flop_counter`: matrix products and
    convolutions; NumPy/OpenCV work such as the fusion is not counted)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


@torch.no_grad()
def g2face_parts(model: G2FaceModel, x: Tensor, device: torch.device, repeats: int) -> dict[str, float]:
    """Where one face's anonymization spends its time (seconds per part, batch of `x`)."""
    secret = Secret.from_password("g2face-bench")
    identity = model.identity(x)
    embedding = identity.float().cpu().numpy()[0]
    geometry = model.geometry(x).as_vector()
    wplus = model.net.styles(identity, geometry)
    bits = torch.zeros(len(x), model.net.config.n_bits, device=device)
    # A fresh salt per face means one scrypt per face: the codec's cost is mostly the KDF.
    return {
        "identity encoder": _time(lambda: model.identity(x), device, repeats),
        "payload encode (scrypt+cipher+ECC)": _time(
            lambda: model.codec.encode(embedding, secret), device, repeats
        ),
        "geometry encoder": _time(lambda: model.geometry(x), device, repeats),
        "f_mlp": _time(lambda: model.net.styles(identity, geometry), device, repeats),
        "E_face": _time(lambda: model.net.pyramid(x), device, repeats),
        "synthesis (E_face+fusion+generator)": _time(
            lambda: model.net.synthesize(x, wplus, bits), device, repeats
        ),
        "payload read (E_p, recover)": _time(lambda: model.net.extract(x), device, repeats),
    }


def fusion_parts(model: FusionAnonymizer, x: Tensor, device: torch.device, repeats: int) -> dict[str, float]:
    """Milliseconds of each part of one face's anonymization by the geometric-fusion default."""
    from g2face.nn.crops import tensor_to_crops as to_crops

    secret = Secret.from_password("g2face-benchmark")
    image_salt = kdf.new_image_salt()  # the pipeline's: the password is stretched once per image
    identity = model.identity(x)
    embedding = identity[0].float().cpu().numpy()
    geometry = model.geometry(x)
    vector = model.geometry_vector(geometry)
    dummy = model.dummy_identities([1], x.dtype)
    wplus = model.gie.styles(dummy, vector)
    render = model.generator(wplus).clamp(-1, 1)
    original = to_crops(x)[0]
    points = (geometry.landmarks[0, :, :2] * model.image_size - 0.5).cpu().numpy()
    parts = {
        "identity encoder (SFace)": _time(lambda: model.identity(x), device, repeats),
        "password stretch (scrypt, once per image)": _time(
            lambda: kdf.master_key(  # a fresh Secret and salt: nothing cached
                Secret.from_password("g2face-benchmark"),
                kdf.new_salt(SALT_BYTES, kdf.new_image_salt()),
                kdf.PASSWORD_KDF_ID,
            ),
            device,
            repeats,
        ),
        "payload encode (cipher + ECC, per face)": _time(
            lambda: model.codec.encode(embedding, secret, salt=kdf.new_salt(SALT_BYTES, image_salt)),
            device,
            repeats,
        ),
        "geometry (MediaPipe)": _time(lambda: model.geometry(x), device, repeats),
        "GIE (f_dummy + f_mlp)": _time(
            lambda: model.gie.styles(model.dummy_identities([1], x.dtype), vector), device, repeats
        ),
        "generator (per candidate)": _time(lambda: model.generator(wplus), device, repeats),
        "fusion incl. render mesh (per candidate)": _time(
            lambda: model.fuse_renders(original, points, render), device, repeats
        ),
    }
    if model.attributes is not None:
        parts["attributes (per candidate)"] = _time(lambda: model.attributes(x), device, repeats)
    if model.second_identity is not None:
        parts[f"second judge ({model.candidates.second_judge}, per candidate)"] = _time(
            lambda: model.second_identity(x), device, repeats
        )
    search = model.candidates
    rounds = f"up to {search.max_rounds} rounds (+{search.attribute_rounds} while attributes would change)"
    parts[f"candidates rendered per face: {search.count} per round, {rounds}"] = 0.0
    return parts


def group_photo(faces: Sequence[np.ndarray], size: tuple[int, int] = (4000, 3000)) -> np.ndarray:
    """A `size` (width, height) photo — 12 MP by default — with the given portraits tiled across a grey
    background, each a quarter of the height, so detection sees several faces at once."""
    width, height = size
    canvas = np.full((height, width, 3), 110, np.uint8)
    side = height // 4
    for i, face in enumerate(faces):
        row, col = divmod(i, max(1, width // (side + side // 2)))
        x, y = col * (side + side // 2) + side // 4, row * (side + side // 4) + side // 4
        if y + side <= height and x + side <= width:
            canvas[y : y + side, x : x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    return canvas


def bench_photo(path: Path) -> np.ndarray:
    """A photo file as it is, or a folder of portraits tiled into a 12 MP group photo."""
    if path.is_file():
        return read_image(path).rgb
    portraits = sorted(p for p in path.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not portraits:
        raise ValueError(f"{path}: no .jpg or .png portraits to tile")
    return group_photo([read_image(p).rgb for p in portraits])


@torch.no_grad()
def bench(
    methods: Sequence[Anonymizer],
    detector: FaceDetector,
    photo: np.ndarray,
    *,
    device: str = "cpu",
    batches: Sequence[int] = (1, 8),
    repeats: int = 3,
    backend: str = "torch",
) -> list[Timing]:
    """`backend`: where each model's generator runs (g2face.priors.backends)."""
    dev = torch.device(device)
    for method in methods:
        model = getattr(method, "model", None)
        if model is not None:
            use_backend(model, backend)
    threads = torch.get_num_threads()
    out: list[Timing] = []

    def record(subject: str, stage: str, batch: int, seconds: float, items: int) -> None:
        out.append(Timing(subject, stage, batch, 1e3 * seconds / items, _peak_mb(dev), str(dev), threads))

    peak: float | None = None  # the machine's fp32 rate (`fp32_peak`), measured once when needed
    detections = detector.detect(photo)
    if not detections:
        raise ValueError("the benchmark photo has no detectable face")
    record("pipeline", "detect", 1, _time(lambda: detector.detect(photo), dev, repeats), 1)
    aligned = [align_face(photo, d) for d in detections]
    record(
        "pipeline",
        "align",
        len(aligned),
        _time(lambda: [align_face(photo, d) for d in detections], dev, repeats),
        len(aligned),
    )
    crops = [a.crop for a in aligned]
    record(
        "pipeline",
        "paste",
        len(aligned),
        _time(lambda: paste_faces(photo, crops, aligned), dev, repeats),
        len(aligned),
    )
    for method in methods:
        for batch in batches:
            x = crops_to_tensor([crops[i % len(crops)] for i in range(batch)], device=dev)
            seeds = list(range(batch))
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            record(
                method.name,
                "anonymize",
                batch,
                _time(lambda m=method, x=x, s=seeds: m.anonymize(x, s), dev, repeats),
                batch,
            )
            if batch == 1 and getattr(method, "model", None) is not None:
                # the work one face's anonymization does, against what this machine can compute
                measured = out[-1].ms_per_item / 1e3
                # (one more anonymization: counting the operations slows the timed ones)
                flops = torch_flops(lambda m=method, x=x, s=seeds: m.anonymize(x, s))
                if peak is None:
                    peak = fp32_peak(dev)
                floor = flops / peak
                record(
                    method.name,
                    f"anonymize: FLOP floor ({flops / 1e9:.1f} GFLOP of torch ops at the {peak / 1e9:.0f} "
                    f"GFLOP/s of a {PEAK_GEMM_SIZE}² sgemm; measured {measured / floor:.1f}x it)",
                    1,
                    floor,
                    1,
                )
            if is_reversible(method):
                y = method.anonymize(x, seeds)
                record(
                    method.name,
                    "recover",
                    batch,
                    _time(lambda m=method, y=y: m.recover(y, m.password), dev, repeats),
                    batch,
                )

        model = getattr(method, "model", None)
        if isinstance(model, G2FaceModel):
            x = crops_to_tensor([crops[0]], device=dev)
            for part, seconds in g2face_parts(model, x, dev, repeats).items():
                record(method.name, f"anonymize: {part}", 1, seconds, 1)

        if isinstance(model, FusionAnonymizer):
            x = crops_to_tensor([crops[0]], device=dev)
            for part, seconds in fusion_parts(model, x, dev, repeats).items():
                record(method.name, f"anonymize: {part}", 1, seconds, 1)

        def whole_photo(m: Anonymizer = method, model=model) -> np.ndarray:
            if model is not None:  # the real thing: detection, model, paste, both recovery carriers
                pipeline = G2FacePipeline(model, detector, device=dev)
                return pipeline.anonymize(photo, m._secret(m.password)).image
            faces = [align_face(photo, d) for d in detector.detect(photo)]
            step = default_batch_size(dev)  # as the pipeline batches faces
            out = []
            for start in range(0, len(faces), step):
                chunk = faces[start : start + step]
                x = crops_to_tensor([f.crop for f in chunk], device=dev)
                out.extend(tensor_to_crops(m.anonymize(x, list(range(start, start + len(chunk))))))
            return paste_faces(photo, out, faces)

        megapixels = photo.shape[0] * photo.shape[1] / 1e6
        record(
            method.name,
            f"photo ({megapixels:.0f} MP, {len(detections)} faces)",
            1,
            _time(whole_photo, dev, repeats),
            1,
        )
    return out


def environment(device: str, backend: str = "torch") -> dict:
    return {
        "device": device if device == "cpu" else torch.cuda.get_device_name(torch.device(device)),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "backend": backend,
        "load_average": os.getloadavg()[0],
    }


def as_rows(timings: Sequence[Timing]) -> list[dict]:
    return [asdict(t) for t in timings]
