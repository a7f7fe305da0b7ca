"""Import the authors' released files (the paper configuration) into the g2face cache.

The user supplies the five files; they are read (never copied into the repository), every tensor
is checked against the released schema (`assets/official_checkpoint_schemas.json`: name, shape,
dtype), and converted to safetensors under `hub.imported_dir("g2face-paper")`:

    g2face.safetensors     the G2Face network (`save_g2face` format, configuration "paper")
    stylegan2.safetensors  the rosinality FFHQ-256 synthesis network (the prior training fine-tunes)
    arcface.safetensors    ArcFace iresnet50
    deep3d.safetensors     Deep3DFaceRecon ReconNet
    bfm.safetensors        BFM09 front model (0-based indices, re-centred mean shape)
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor

from g2face import hub
from g2face.models.checkpoints import EXTENSION_KEYS, official_to_g2face, save_g2face
from g2face.models.config import PAPER, G2FaceNetConfig
from g2face.models.g2face import G2FaceNet

PAPER_MODEL = "g2face-paper"
SCHEMAS = Path(__file__).resolve().parents[1] / "assets" / "official_checkpoint_schemas.json"
G2FACE_PARTS = ("anonymous_net", "style_mlp", "map_2_id", "hiding_extractor")
BFM_N_VERTICES, BFM_N_TRIANGLES = 35709, 70789


class OfficialImportError(ValueError):
    """A supplied file is missing, unreadable or does not match the released schema (one line)."""


@dataclass(frozen=True)
class OfficialFile:
    filename: str
    schema_prefix: str | None  # key of its entry in the schema file (None: the .mat, checked here)
    licence: str


OFFICIAL_FILES = {
    "g2face": OfficialFile(
        "G2Face.pth", "G2Face.pth", "G2Face authors' release (github.com/Harxis/G2Face): see its LICENSE"
    ),
    "stylegan2": OfficialFile(
        "550000.pt",
        "550000.pt",
        "rosinality/stylegan2-pytorch (MIT code); trained on FFHQ (CC BY-NC-SA 4.0): non-commercial",
    ),
    "arcface": OfficialFile(
        "ms1mv3_arcface_r50.pth",
        "ms1mv3_arcface_r50.pth",
        "insightface arcface_torch model: non-commercial research use only",
    ),
    "deep3d": OfficialFile(
        "epoch_20.pth",
        "epoch_20.pth",
        "Deep3DFaceRecon_pytorch (Microsoft, MIT code); weights for research use",
    ),
    "bfm": OfficialFile(
        "BFM_model_front.mat",
        None,
        "Basel Face Model 2009 (University of Basel): registration, non-commercial research only",
    ),
}


def _schemas() -> dict[str, dict]:
    schemas = json.loads(SCHEMAS.read_text())
    return {
        role: next(v for k, v in schemas.items() if k.startswith(f.schema_prefix))
        for role, f in OFFICIAL_FILES.items()
        if f.schema_prefix
    }


def locate(paths: Iterable[str | Path]) -> dict[str, Path]:
    """The five files by role, from files and folders (searched recursively by file name)."""
    found: dict[str, Path] = {}
    names = {f.filename: role for role, f in OFFICIAL_FILES.items()}
    for path in map(Path, paths):
        if not path.exists():
            raise OfficialImportError(f"{path} does not exist")
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        for candidate in candidates:
            role = names.get(candidate.name)
            if role and candidate.is_file():
                found.setdefault(role, candidate)
    missing = [OFFICIAL_FILES[r].filename for r in OFFICIAL_FILES if r not in found]
    if missing:
        raise OfficialImportError(f"not found among the given paths: {', '.join(missing)}")
    return found


def _torch_load(path: Path) -> dict:
    try:
        # 550000.pt also pickles the training `args` namespace; allow just that type.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors of many kinds: the file is not a usable checkpoint
        raise OfficialImportError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__})") from None


def check_state(
    state: dict[str, Tensor], schema: dict[str, dict], where: str, optional: bool = False
) -> None:
    """Every schema tensor present with its shape and dtype; raises on the first mismatch."""
    for name, spec in schema.items():
        if name not in state:
            raise OfficialImportError(f"{where}: tensor {name} is missing")
        tensor = state[name]
        if not isinstance(tensor, Tensor):
            raise OfficialImportError(f"{where}: {name} is not a tensor")
        if list(tensor.shape) != spec["shape"]:
            raise OfficialImportError(
                f"{where}: tensor {name} has shape {list(tensor.shape)}, expected {spec['shape']}"
            )
        if str(tensor.dtype).removeprefix("torch.") != spec["dtype"]:
            raise OfficialImportError(
                f"{where}: tensor {name} has dtype {tensor.dtype}, expected {spec['dtype']}"
            )


def _section(checkpoint: dict, key: str, path: Path) -> dict:
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get(key), dict):
        raise OfficialImportError(f"{path}: no {key!r} state dict inside")
    return checkpoint[key]


def read_checked(files: dict[str, Path]) -> dict[str, dict]:
    """Load and validate every file; returns {role: flat tensors} (BFM: the raw .mat arrays)."""
    schemas = _schemas()
    g2face = _torch_load(files["g2face"])
    flat = {}
    for part in G2FACE_PARTS:
        state = _section(g2face, part, files["g2face"])
        check_state(state, schemas["g2face"][part], f"{files['g2face']} [{part}]")
        flat.update({f"{part}.{k}": v for k, v in state.items()})
    g_ema = _section(_torch_load(files["stylegan2"]), "g_ema", files["stylegan2"])
    check_state(g_ema, schemas["stylegan2"], f"{files['stylegan2']} [g_ema]")
    arcface = _torch_load(files["arcface"])
    check_state(arcface, schemas["arcface"], str(files["arcface"]))
    recon = _section(_torch_load(files["deep3d"]), "net_recon", files["deep3d"])
    check_state(recon, schemas["deep3d"], f"{files['deep3d']} [net_recon]")
    return {
        "g2face": flat,
        "stylegan2": g_ema,
        "arcface": arcface,
        "deep3d": recon,
        "bfm": read_bfm(files["bfm"]),
    }


BFM_SHAPES: dict[str, Callable[[int, int], tuple[int, ...]]] = {
    "meanshape": lambda n, f: (1, 3 * n),
    "idBase": lambda n, f: (3 * n, 80),
    "exBase": lambda n, f: (3 * n, 64),
    "meantex": lambda n, f: (1, 3 * n),
    "texBase": lambda n, f: (3 * n, 80),
    "point_buf": lambda n, f: (n, 8),
    "tri": lambda n, f: (f, 3),
    "keypoints": lambda n, f: (1, 68),
}


def read_bfm(path: Path) -> dict[str, np.ndarray]:
    from scipy.io import loadmat  # a dependency of the `paper` extra

    try:
        mat = loadmat(str(path))
    except Exception as e:  # scipy raises several types for files that are not MATLAB v5
        raise OfficialImportError(f"{path}: not a readable MATLAB file ({type(e).__name__})") from None
    for name, shape in BFM_SHAPES.items():
        if name not in mat:
            raise OfficialImportError(f"{path}: array {name} is missing")
        expected = shape(BFM_N_VERTICES, BFM_N_TRIANGLES)
        got = mat[name].shape
        if got != expected and not (name in ("meanshape", "meantex", "keypoints") and got[::-1] == expected):
            raise OfficialImportError(
                f"{path}: array {name} has shape {list(got)}, expected {list(expected)}"
            )
    return mat


def paper_network(g2face_state: dict[str, Tensor], config: G2FaceNetConfig = PAPER) -> G2FaceNet:
    """The G2Face network from official tensors. Our Geometry gives pose in degrees, the official
    f_mlp was trained on radians: its input scaling takes the conversion (exact up to float)."""
    with torch.random.fork_rng(devices=[]):
        net = G2FaceNet(config)
    state = official_to_g2face(g2face_state)
    defaults = net.state_dict()
    state.update({key: defaults[key] for key in EXTENSION_KEYS})
    pose = config.gie.identity_dim + config.gie.geometry_dim - 3
    state["style_mlp.input_std"] = state["style_mlp.input_std"].clone()
    state["style_mlp.input_std"][pose:] = 180 / math.pi
    net.load_state_dict(state)
    return net.eval()


def import_official(paths: Iterable[str | Path], echo: Callable[[str], None] = print) -> Path:
    """Validate, convert and register the released files as `g2face-paper`; returns its folder."""
    from g2face.priors.deep3d import bfm_tensors_from_mat

    files = locate(paths)
    for role, path in files.items():
        echo(f"{OFFICIAL_FILES[role].filename}: {path}\n  licence: {OFFICIAL_FILES[role].licence}")
    tensors = read_checked(files)

    def build(folder: Path) -> dict:
        save_g2face(paper_network(tensors["g2face"]), folder / "g2face.safetensors")
        synthesis = {
            k: v.contiguous()
            for k, v in tensors["stylegan2"].items()
            if not k.startswith(("style.", "noises."))
        }
        save_file(synthesis, str(folder / "stylegan2.safetensors"))
        save_file(
            {k: v.contiguous() for k, v in tensors["arcface"].items()}, str(folder / "arcface.safetensors")
        )
        save_file(
            {k: v.contiguous() for k, v in tensors["deep3d"].items()}, str(folder / "deep3d.safetensors")
        )
        save_file(bfm_tensors_from_mat(tensors["bfm"]), str(folder / "bfm.safetensors"))
        return {
            "name": PAPER_MODEL,
            "sources": {
                role: {"path": str(p.resolve()), "size": p.stat().st_size} for role, p in files.items()
            },
            "licences": {role: f.licence for role, f in OFFICIAL_FILES.items()},
        }

    return hub.store_imported(PAPER_MODEL, build)


def _synthetic_tensor(name: str, spec: dict, generator: torch.Generator) -> Tensor:
    """A random tensor of a schema entry that keeps a forward pass finite: unit BatchNorm
    variances and scales, small weights."""
    shape, dtype = spec["shape"], getattr(torch, spec["dtype"])
    if not dtype.is_floating_point:
        return torch.zeros(shape, dtype=dtype)
    if name.endswith("running_var") or (len(shape) == 1 and name.endswith("weight")):
        return torch.ones(shape, dtype=dtype)
    fan_in = max(1, math.prod(shape[1:]))
    return (torch.randn(shape, generator=generator) / math.sqrt(fan_in)).to(dtype)


def write_synthetic_release(folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """Random files with exactly the released names, shapes and dtypes (about 0.8 GB), for tests
    and benchmarks of the paper configuration where the real files are absent."""
    from scipy.io import savemat

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    schemas = _schemas()

    def states(schema: dict) -> dict[str, Tensor]:
        return {name: _synthetic_tensor(name, spec, g) for name, spec in schema.items()}

    paths = {role: folder / f.filename for role, f in OFFICIAL_FILES.items()}
    torch.save({part: states(schemas["g2face"][part]) for part in G2FACE_PARTS}, paths["g2face"])
    torch.save({"g_ema": states(schemas["stylegan2"])}, paths["stylegan2"])
    torch.save(states(schemas["arcface"]), paths["arcface"])
    torch.save({"net_recon": states(schemas["deep3d"])}, paths["deep3d"])
    rng = np.random.default_rng(seed)
    n, f = BFM_N_VERTICES, BFM_N_TRIANGLES
    savemat(
        paths["bfm"],
        {
            "meanshape": rng.normal(0, 50, (1, 3 * n)).astype(np.float32),
            "idBase": rng.normal(0, 1e-1, (3 * n, 80)).astype(np.float32),
            "exBase": rng.normal(0, 1e-1, (3 * n, 64)).astype(np.float32),
            "meantex": rng.uniform(0, 255, (1, 3 * n)).astype(np.float32),
            "texBase": rng.normal(0, 1, (3 * n, 80)).astype(np.float32),
            "point_buf": rng.integers(1, f + 2, (n, 8)).astype(np.float64),  # 1-based; f + 1 pads
            "tri": rng.integers(1, n + 1, (f, 3)).astype(np.float64),
            "keypoints": rng.integers(1, n + 1, (1, 68)).astype(np.float64),
        },
    )
    return paths
