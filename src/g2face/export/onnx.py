"""`g2face export --format onnx`: the shipped default's networks as ONNX files with a manifest.

What is exported is what `FusionAnonymizer` runs per face (models/fusion_anonymizer.py):

    z ──gie_dummy──▶ dummy identity ──┐
                                      ├─gie_styles─▶ W+ ──generator──▶ 256² face
    geometry vector (see manifest) ───┘
    aligned crop ──identity──▶ unit SFace embedding      aligned crop ──geometry──▶ mesh, codes

The geometric fusion itself (mesh fit, warp, colour transfer, blending), detection, alignment and
the payload carriers are NumPy/OpenCV code, not networks; the manifest names them. The generator
is exported in its constant-weight form (`ConstantWeightSynthesis`): styles scale the conv inputs,
so graph runtimes can fold and pre-pack every weight and the batch size stays free.

Every file is checked against its PyTorch module with ONNX Runtime when it is installed
(`pip install 'g2face[parity]'`); the maximum absolute difference is written to the manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

import g2face
from g2face.models.fusion_anonymizer import FusionAnonymizer, smile_of
from g2face.models.zoo import load_model
from g2face.priors.mobilestylegan import ConstantWeightSynthesis, MobileStyleGAN

OPSET = 20  # affine_grid (the identity prior's fixed warp to its template) needs 20
MANIFEST = "manifest.json"
PARITY_TOLERANCE = 1e-4
"""Largest accepted |ONNX Runtime − PyTorch| on the generator's images in [-1, 1] (issue #17)."""


class ExportError(Exception):
    """A one-line reason the export cannot be made (bad model, existing output, failed parity)."""


@dataclass(frozen=True)
class Graph:
    """One network to export: a module, named example inputs, output names, what feeds it."""

    name: str
    module: nn.Module
    inputs: dict[str, Tensor]
    outputs: tuple[str, ...]
    preprocessing: str
    dynamic: dict[str, dict[int, str]] = field(default_factory=dict)
    reference: nn.Module | None = None
    """The PyTorch module the parity check compares with (default: `module` itself)."""


class _Landmarks(nn.Module):
    """The geometry prior's networks (MediaPipe face mesh, then blendshapes); the pose and shape fit
    that follows (a weighted Procrustes fit, SVD) stays outside the graph."""

    def __init__(self, geometry: nn.Module):
        super().__init__()
        self.face = geometry.face

    def forward(self, crops: Tensor) -> tuple[Tensor, Tensor]:
        landmarks, _ = self.face.landmarks(crops)
        return landmarks, self.face.expression(landmarks)


class _Styles(nn.Module):
    """f_mlp, then the model's pose and expression corrections (when it has them and follows the
    pose and the expression). The corrections are affine in W+, so applying them before a dummy's
    spread (a lerp with the average identity's W+, itself corrected) gives what
    `FusionAnonymizer.styles` computes after it."""

    def __init__(self, model: FusionAnonymizer):
        super().__init__()
        self.gie = model.gie
        self.pose_correction = model.pose_correction if model.fusion.follow_pose else None
        self.expression_correction = model.expression_correction if model.fusion.follow_expression else None
        self.rendered_at = model._expression_input  # (FusionSettings.expression_input)

    def forward(self, identity: Tensor, geometry: Tensor) -> Tensor:
        wplus = self.gie.styles(identity, self.rendered_at(geometry))
        if self.pose_correction is not None:
            wplus = self.pose_correction(wplus, geometry[:, -3:-1])
        if self.expression_correction is not None:
            wplus = self.expression_correction(wplus, smile_of(geometry))
        return wplus


def default_graphs(model: FusionAnonymizer, batch: int = 2) -> list[Graph]:
    """The networks of a geometric-fusion model, with seeded example inputs."""
    if not isinstance(model.generator, MobileStyleGAN):
        raise ExportError(f"only the MobileStyleGAN generator exports, not {type(model.generator).__name__}")
    g = torch.Generator().manual_seed(0)
    size = model.image_size
    config = model.gie.config
    geometry_dim = model.gie.style_mlp.input_mean.numel() - config.identity_dim
    identity = nn.functional.normalize(torch.randn(batch, config.identity_dim, generator=g), dim=1)
    geometry = model.gie.style_mlp.input_mean[config.identity_dim :].expand(batch, -1).clone()
    with torch.no_grad():
        wplus = model.gie.styles(identity, geometry)
    crops = model.generator(wplus).clamp(-1, 1)  # real faces: the geometry prior needs one to lock on
    both = {0: "batch"}
    return [
        Graph(
            "generator",
            ConstantWeightSynthesis(model.generator.synthesis, size),
            {"wplus": wplus},
            ("image",),
            f"W+ [B, {wplus.shape[1]}, {wplus.shape[2]}] (gie_styles) → RGB [B, 3, {size}, {size}] in about "
            "[-1, 1]; the pipeline clamps it to [-1, 1]",
            {"wplus": both, "image": both},
            reference=model.generator,  # the reference modules, not the constant-weight form
        ),
        Graph(
            "gie_dummy",
            model.gie.map_2_id,
            {"z": torch.randn(batch, config.z_dim, generator=g)},
            ("identity",),
            f"z ~ N(0, I) [B, {config.z_dim}], drawn with torch.Generator().manual_seed(seed) per face "
            "(seed from the key and salt: g2face.payload.kdf.dummy_seed) → dummy identity [B, "
            f"{config.identity_dim}]",
            {"z": both, "identity": both},
        ),
        Graph(
            "gie_styles",
            _Styles(model),
            {"identity": identity, "geometry": geometry},
            ("wplus",),
            f"identity [B, {config.identity_dim}] (dummy, or a decoded SFace embedding for recovery), "
            f"geometry [B, {geometry_dim}] = shape ⊕ expression ⊕ pose of the original face, with the "
            "shape part set to the model's average face (FusionAnonymizer.geometry_vector) → W+, "
            "turned to the geometry's yaw and pitch when the model has a pose correction "
            "(models.gie.PoseCorrection, included) and made to smile as the geometry's blendshapes "
            "say when it has an expression correction (models.gie.ExpressionCorrection, included); "
            "a dummy's W+ is then lerp(W+ of the average "
            "identity (style_mlp.input_mean) at the same geometry, its W+, candidates.spread), a "
            "decoded identity's is used as it is",
            {"identity": both, "geometry": both, "wplus": both},
        ),
        Graph(
            "identity",
            model.identity,
            {"crops": crops},
            ("embedding",),
            f"aligned crops [B, 3, {size}, {size}] RGB in [-1, 1] (g2face.align.align_face, FFHQ framing) "
            "→ unit SFace embedding [B, 128]",
            {"crops": both, "embedding": both},
        ),
        Graph(
            "geometry",
            _Landmarks(model.geometry),
            {"crops": crops},
            ("landmarks", "expression"),
            f"aligned crops [B, 3, {size}, {size}] RGB in [-1, 1] → MediaPipe landmarks [B, 478, 3] in unit "
            "crop coordinates and the 52 blendshape scores; pose (yaw, pitch, roll) comes from a weighted "
            "similarity fit of the canonical mesh to the landmarks "
            "(g2face.priors.mediapipe_geometry: fit_pose, rotation_to_euler), outside the graph",
            {"crops": both, "landmarks": both, "expression": both},
        ),
    ]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _spec(tensors: dict[str, Tensor], dynamic: dict[str, dict[int, str]]) -> list[dict]:
    return [
        {
            "name": name,
            "shape": [dynamic.get(name, {}).get(i, n) for i, n in enumerate(t.shape)],
            "dtype": str(t.dtype).removeprefix("torch."),
        }
        for name, t in tensors.items()
    ]


def _as_tuple(result) -> tuple[Tensor, ...]:
    return result if isinstance(result, tuple) else (result,)


def onnxruntime_difference(path: Path, graph: Graph) -> float:
    """Max |ONNX Runtime − PyTorch| over every output of `graph` on its example inputs."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {k: v.numpy() for k, v in graph.inputs.items()}
    got = session.run(list(graph.outputs), feeds)
    with torch.no_grad():
        want = _as_tuple((graph.reference or graph.module)(*graph.inputs.values()))
    return max(float((torch.from_numpy(a) - b).abs().max()) for a, b in zip(got, want, strict=True))


def _have_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_onnx(
    model_name: str | Path = "g2face-lite",
    out_dir: str | Path = "g2face-lite-onnx",
    *,
    force: bool = False,
    progress: Callable[[str], None] = lambda _: None,
) -> dict:
    """Write every network of a geometric-fusion model and `manifest.json` into `out_dir`
    (atomically: a temporary folder beside it, renamed at the end). Returns the manifest."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise ExportError(f"{out_dir} exists; pass --force to replace it")
    model = load_model(model_name)
    if not isinstance(model, FusionAnonymizer):
        raise ExportError(f"{model_name} is not a geometric-fusion model; only the default exports")
    check = _have_onnxruntime()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        entries = []
        for graph in default_graphs(model):
            progress(f"exporting {graph.name}")
            path = staging / f"{graph.name}.onnx"
            # The TorchScript exporter warns about its own deprecation and constant folding: noise
            # for a user (the parity check below is what says the file is right).
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    graph.module.eval(),
                    tuple(graph.inputs.values()),
                    str(path),
                    input_names=list(graph.inputs),
                    output_names=list(graph.outputs),
                    dynamic_axes=graph.dynamic,
                    opset_version=OPSET,
                    dynamo=False,  # the TorchScript exporter: no onnxscript dependency
                )
            with torch.no_grad():
                outputs = dict(
                    zip(graph.outputs, _as_tuple(graph.module(*graph.inputs.values())), strict=True)
                )
            entry = {
                "name": graph.name,
                "file": path.name,
                "sha256": _sha256(path),
                "inputs": _spec(graph.inputs, graph.dynamic),
                "outputs": _spec(outputs, graph.dynamic),
                "preprocessing": graph.preprocessing,
            }
            if check:
                difference = onnxruntime_difference(path, graph)
                entry["onnxruntime_max_abs_difference"] = difference
                if graph.name == "generator" and difference > PARITY_TOLERANCE:
                    raise ExportError(f"generator parity {difference:.2e} > {PARITY_TOLERANCE:g}")
            entries.append(entry)
        source = Path(model_name) if Path(model_name).is_file() else None
        manifest = {
            "format": "g2face-onnx-export",
            "version": 1,
            "g2face": g2face.__version__,
            "model": str(model_name),
            "model_sha256": _sha256(source) if source else None,
            "opset": OPSET,
            "image_size": model.image_size,
            "parity_checked_with": "onnxruntime" if check else None,
            # How the graphs are used: candidate count, spread, similarity bar; fusion knobs.
            "candidates": dataclasses.asdict(model.candidates),
            "fusion": dataclasses.asdict(model.fusion),
            "networks": entries,
            "not_networks": (
                "face detection (YuNet, OpenCV), alignment and paste-back (g2face.align), the geometric "
                "fusion (g2face.models.fusion: mesh fit, partial warp, colour transfer, soft mask), the "
                "apparent age/gender check of candidates, and the payload carriers (g2face.payload)"
            ),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the export is an ordinary folder
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
