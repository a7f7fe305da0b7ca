"""Geometric prior (lite): MediaPipe FaceLandmarker's networks as differentiable PyTorch modules.

The `face-landmarker` asset (.task bundle) holds three things used here:
* face_landmarks_detector.tflite -> `FaceMeshNet`: a 256 px RGB face crop in [0, 1] -> 478 3D
  landmarks (crop pixels; z on the x scale, smaller = nearer) and a face-presence logit.
* face_blendshapes.tflite -> `BlendshapeNet`: 146 of those landmarks (x, y) -> 52 ARKit-style scores.
* geometry_pipeline_metadata_landmarks.binarypb -> the canonical face mesh (468 vertices, cm) and
  the 33 weighted landmarks MediaPipe fits head pose with.
Weights are converted once (fp16 -> fp32, NHWC -> NCHW) and cached as safetensors by the hub.

`MediaPipeGeometry` turns an aligned G2Face crop into `Geometry`: landmarks, expression (the 52
blendshapes), pose (yaw, pitch, roll from a weighted similarity Procrustes fit to the canonical
mesh) and shape (whitened PCA coefficients of pose-normalised landmarks, basis built by
scripts/build_shape_basis.py). Everything is differentiable with respect to the input crop.
"""

from __future__ import annotations

import math
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from g2face import hub
from g2face.priors.base import Geometry, freeze, owned_tensor

ASSET = "face-landmarker"
CONVERTED_FILE = "face_landmarker.safetensors"
CONVERTER_TAG = "v1"
SHAPE_BASIS_FILE = "mediapipe_shape_basis.safetensors"

MESH_INPUT_SIZE = 256
NUM_LANDMARKS = 478
NUM_MESH_VERTICES = 468  # the 10 remaining landmarks are irises, which follow gaze, not shape

# From MediaPipe's face_blendshapes_graph.cc: the landmarks the blendshape network reads, and the
# names of its outputs ("_neutral" is a catch-all score MediaPipe tells users to ignore).
BLENDSHAPE_LANDMARKS = (
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66,
    67, 70, 78, 80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145,
    146, 148, 149, 150, 152, 153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176,
    178, 181, 185, 191, 195, 197, 234, 246, 249, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285,
    288, 291, 293, 295, 296, 297, 300, 308, 310, 311, 312, 314, 317, 318, 321, 323, 324, 332, 334,
    336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381, 382, 384, 385, 386, 387,
    388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454, 466, 468, 469, 470, 471, 472, 473, 474,
    475, 476, 477,
)  # fmt: skip
BLENDSHAPE_NAMES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft",
    "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight",
    "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)  # fmt: skip

# The square region of a G2Face (FFHQ-framed) crop that the landmark network sees, in unit crop
# coordinates: centre (x, y) and side. MediaPipe tracks a face with the box of its landmarks,
# widened 1.5x to a square; this is that box averaged over 5,248 aligned CelebA faces
# (scripts/build_shape_basis.py measured centre (0.4992, 0.5869), side 0.9514; docs/geometry.md).
MESH_ROI_CENTER = (0.5, 0.585)
MESH_ROI_SIZE = 0.95


# ------------------------------------------------------------------------------- landmark network


class MeshBlock(nn.Module):
    """Residual bottleneck: reduce -> PReLU -> depthwise 3x3 -> expand, plus skip, then PReLU.

    A downsampling block reduces with a 2x2 stride-2 conv and its skip is a 2x2 max-pool with zero
    channels appended up to the output width (TFLite's PAD on the channel axis).
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, downsample: bool = False):
        super().__init__()
        kernel = 2 if downsample else 1
        self.downsample = downsample
        self.extra_channels = out_channels - in_channels
        self.reduce = nn.Conv2d(in_channels, mid_channels, kernel, stride=kernel)
        self.reduce_act = nn.PReLU(mid_channels)
        self.depthwise = nn.Conv2d(mid_channels, mid_channels, 3, padding=1, groups=mid_channels)
        self.expand = nn.Conv2d(mid_channels, out_channels, 1)
        self.act = nn.PReLU(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        skip = F.max_pool2d(x, 2) if self.downsample else x
        if self.extra_channels:
            skip = F.pad(skip, (0, 0, 0, 0, 0, self.extra_channels))
        return self.act(skip + self.expand(self.depthwise(self.reduce_act(self.reduce(x)))))


class FaceMeshNet(nn.Module):
    """MediaPipe FaceMesh v2 landmark network (face_landmarks_detector.tflite), 1.2 M parameters.

    Stem 3x3/2 conv at 128 px, then 7 stages (128 -> 2 px) of 4 bottlenecks each, a downsampling
    block opening every stage after the first; 2x2 convs read the final 2x2x128 map.
    """

    # (in, mid, out) channels of each stage's downsampling block; the stage's 4 blocks are (out, mid, out).
    STAGES = ((16, 8, 16), (16, 16, 32), (32, 32, 64), (64, 64, 128), (128, 64, 128), (128, 64, 128),
              (128, 64, 128))  # fmt: skip
    BLOCKS_PER_STAGE = 4

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2)
        self.stem_act = nn.PReLU(16)
        blocks = []
        for i, (cin, mid, cout) in enumerate(self.STAGES):
            if i > 0:
                blocks.append(MeshBlock(cin, mid, cout, downsample=True))
            blocks += [MeshBlock(cout, mid, cout) for _ in range(self.BLOCKS_PER_STAGE)]
        self.blocks = nn.Sequential(*blocks)
        self.landmarks_head = nn.Conv2d(128, NUM_LANDMARKS * 3, 2)
        self.presence_head = nn.Conv2d(128, 1, 2)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """[B, 3, 256, 256] RGB in [0, 1] -> landmarks [B, 478, 3] in input pixels, presence logit [B]."""
        x = F.pad(images, (0, 1, 0, 1))  # TFLite SAME padding for stride 2 on an even size: after only
        x = self.blocks(self.stem_act(self.stem(x)))
        landmarks = self.landmarks_head(x).reshape(len(images), NUM_LANDMARKS, 3)
        return landmarks, self.presence_head(x).flatten()


# ----------------------------------------------------------------------------- blendshape network


class MixerBlock(nn.Module):
    """MLP-Mixer block: token-mixing MLP then channel-mixing MLP, each pre-LayerNorm (no bias) + residual."""

    def __init__(self, tokens: int, channels: int, token_hidden: int, channel_hidden: int, eps: float):
        super().__init__()
        self.token_norm = nn.LayerNorm(channels, eps=eps, bias=False)
        self.token_mlp = nn.Sequential(
            nn.Linear(tokens, token_hidden), nn.ReLU(), nn.Linear(token_hidden, tokens)
        )
        self.channel_norm = nn.LayerNorm(channels, eps=eps, bias=False)
        self.channel_mlp = nn.Sequential(
            nn.Linear(channels, channel_hidden), nn.ReLU(), nn.Linear(channel_hidden, channels)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.token_mlp(self.token_norm(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.channel_norm(x))


class BlendshapeNet(nn.Module):
    """MediaPipe's blendshape network (face_blendshapes.tflite, "GhumMarkerPoserMlpMixer").

    146 points are centred and scaled to unit mean radius (x0.5), projected to 96 tokens, embedded to
    64 channels, prefixed with a learned class token, mixed by 4 Mixer blocks; the class token gives
    52 sigmoid scores. Only the points' aspect matters, so any pixel-proportional units work.
    """

    INPUT_SCALE = 0.5
    LAYER_NORM_EPS = 1.013279e-06  # 1e-6 as stored (fp16) in the graph

    def __init__(self, tokens: int = 96, channels: int = 64, depth: int = 4):
        super().__init__()
        self.token_proj = nn.Linear(len(BLENDSHAPE_LANDMARKS), tokens)
        self.embed = nn.Linear(2, channels)
        self.class_token = nn.Parameter(torch.zeros(1, 1, channels))
        self.blocks = nn.Sequential(
            *[MixerBlock(tokens + 1, channels, 384, 256, self.LAYER_NORM_EPS) for _ in range(depth)]
        )
        self.head = nn.Linear(channels, len(BLENDSHAPE_NAMES))

    def forward(self, points: Tensor) -> Tensor:
        """[B, 146, 2] landmark (x, y) -> blendshape scores [B, 52] in (0, 1)."""
        centred = points - points.mean(dim=1, keepdim=True)
        radius = centred.norm(dim=2).mean(dim=1)[:, None, None]
        x = self.token_proj((centred / radius * self.INPUT_SCALE).transpose(1, 2)).transpose(1, 2)
        x = torch.cat([self.class_token.expand(len(x), -1, -1), self.embed(x)], dim=1)
        return torch.sigmoid(self.head(self.blocks(x)[:, 0]))


# ------------------------------------------------------------------------------------- conversion


def _read_proto(data: bytes) -> list[tuple[int, int, bytes | int]]:
    """Protobuf wire format -> [(field, wire type, value)]: enough to read GeometryPipelineMetadata."""
    fields, i = [], 0

    def varint() -> int:
        nonlocal i
        value = shift = 0
        while True:
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            value = varint()
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, i = data[i : i + size], i + size
        elif wire == 2:
            size = varint()
            value, i = data[i : i + size], i + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        fields.append((number, wire, value))
    return fields


def _floats(fields: list, number: int) -> np.ndarray:
    """A repeated float field, packed (wire type 2) or not (wire type 5)."""
    raw = b"".join(v for n, w, v in fields if n == number and w in (2, 5))
    return np.frombuffer(raw, "<f4")


def parse_geometry_metadata(data: bytes) -> dict[str, np.ndarray]:
    """GeometryPipelineMetadata -> canonical vertices [468, 3] (cm, y up, z towards the viewer),
    triangles [898, 3], and the Procrustes landmark ids [33] with their weights [33]."""
    top = _read_proto(data)
    mesh = _read_proto(next(v for n, _, v in top if n == 1))
    vertex_type = next((v for n, w, v in mesh if n == 1 and w == 0), 0)
    if vertex_type != 0:  # VERTEX_PT: x, y, z, u, v per vertex
        raise ValueError(f"unexpected canonical mesh vertex type {vertex_type}")
    vertices = _floats(mesh, 3).reshape(-1, 5)[:, :3]
    if any(n == 4 and w == 2 for n, w, _ in mesh):
        raise ValueError("packed canonical mesh index buffers are not supported")
    indices = [v for n, w, v in mesh if n == 4 and w == 0]
    ids, weights = [], []
    for n, _, v in top:
        if n == 2:
            ref = _read_proto(v)
            ids.append(next((x for k, w, x in ref if k == 1), 0))
            weights.append(_floats(ref, 2)[0] if any(k == 2 for k, _, _ in ref) else 0.0)
    return {
        "canonical_vertices": vertices.astype(np.float32),
        "triangles": np.asarray(indices, np.int64).reshape(-1, 3),
        "procrustes_ids": np.asarray(ids, np.int64),
        "procrustes_weights": np.asarray(weights, np.float32),
    }


def _conv_weight(graph, op) -> tuple[Tensor, Tensor]:
    weight, bias = graph.const(op.inputs[1]), graph.const(op.inputs[2])
    # TFLite kernels are [out, h, w, in] (depthwise: [1, h, w, channels]); torch wants [out, in, h, w].
    order = (3, 0, 1, 2) if op.kind == "DEPTHWISE_CONV_2D" else (0, 3, 1, 2)
    return torch.from_numpy(weight.transpose(order).copy()), torch.from_numpy(bias.copy())


def convert_mesh_net(graph) -> dict[str, Tensor]:
    """State dict of `FaceMeshNet` from the parsed face_landmarks_detector.tflite."""
    model = FaceMeshNet()
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.PReLU))]
    body, heads = layers[:-2], dict(layers[-2:])
    ops = [op for op in graph.ops if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "PRELU")]
    head_ops = {
        op.outputs[0]: op
        for op in ops
        if op.kind == "CONV_2D" and graph.tensor_shapes[op.outputs[0]][1:3] == (1, 1)
    }
    ops = [op for op in ops if op not in head_ops.values()]
    if len(ops) != len(body):
        raise ValueError(f"landmark graph has {len(ops)} conv/PReLU layers, the port expects {len(body)}")
    state = {}
    for (name, module), op in zip(body, ops, strict=True):
        if isinstance(module, nn.PReLU):
            if op.kind != "PRELU":
                raise ValueError(f"{name}: expected PRELU, graph has {op.kind}")
            state[f"{name}.weight"] = torch.from_numpy(graph.const(op.inputs[1]).reshape(-1).copy())
            continue
        weight, bias = _conv_weight(graph, op)
        stride = op.options.get("StrideH", 1)
        if weight.shape != module.weight.shape or stride != module.stride[0]:
            raise ValueError(
                f"{name}: graph {tuple(weight.shape)}/{stride}, port {tuple(module.weight.shape)}"
            )
        state[f"{name}.weight"], state[f"{name}.bias"] = weight, bias
    landmarks_op = next(op for t, op in head_ops.items() if graph.tensor_shapes[t][-1] == NUM_LANDMARKS * 3)
    presence_op = head_ops[graph.outputs[1]]  # MediaPipe reads output 1 as the presence logit
    for name, op in (("landmarks_head", landmarks_op), ("presence_head", presence_op)):
        state[f"{name}.weight"], state[f"{name}.bias"] = _conv_weight(graph, op)
        if state[f"{name}.weight"].shape != heads[name].weight.shape:
            raise ValueError(f"{name}: unexpected kernel {tuple(state[name + '.weight'].shape)}")
    return state


def convert_blendshape_net(graph) -> dict[str, Tensor]:
    """State dict of `BlendshapeNet` from the parsed face_blendshapes.tflite."""
    model = BlendshapeNet()
    scalars = [float(graph.const(i)) for op in graph.ops if op.kind in ("MUL", "ADD") for i in op.inputs
               if i in graph.constants and graph.const(i).size == 1]  # fmt: skip
    if not math.isclose(scalars[0], BlendshapeNet.INPUT_SCALE) or not all(
        math.isclose(s, BlendshapeNet.LAYER_NORM_EPS, rel_tol=1e-5) for s in scalars[1:]
    ):
        raise ValueError(f"blendshape graph constants {scalars[:3]}... differ from the port's")
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    convs = graph.ops_of("CONV_2D")
    norms = [name for name, m in model.named_modules() if isinstance(m, nn.LayerNorm)]
    gammas = [
        op
        for op in graph.ops_of("MUL")
        if any(graph.constants.get(i, np.empty(0)).shape == (64,) for i in op.inputs)
    ]
    if len(convs) != len(linears) or len(gammas) != len(norms):
        raise ValueError("blendshape graph layout differs from the port")
    state = {}
    for name, op in zip(linears, convs, strict=True):
        weight = graph.const(op.inputs[1])
        state[f"{name}.weight"] = torch.from_numpy(weight.reshape(weight.shape[0], -1).copy())
        state[f"{name}.bias"] = torch.from_numpy(graph.const(op.inputs[2]).copy())
    for name, op in zip(norms, gammas, strict=True):
        gamma = next(graph.const(i) for i in op.inputs if i in graph.constants)
        state[f"{name}.weight"] = torch.from_numpy(gamma.copy())
    concat = graph.ops_of("CONCATENATION")[0]
    token = next(graph.const(i) for i in concat.inputs if i in graph.constants)
    state["class_token"] = torch.from_numpy(token.reshape(1, 1, -1).copy())
    expected = model.state_dict()
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise ValueError(f"{key}: graph {tuple(value.shape)}, port {tuple(expected[key].shape)}")
    return state


def build_converted_weights(task_path: Path, out_path: Path) -> None:
    """Convert the .task bundle's two networks and canonical mesh into one safetensors file."""
    from g2face.priors.tflite_reader import read_tflite

    with zipfile.ZipFile(task_path) as bundle:
        mesh_graph = read_tflite(bundle.read("face_landmarks_detector.tflite"))
        blend_graph = read_tflite(bundle.read("face_blendshapes.tflite"))
        metadata = parse_geometry_metadata(bundle.read("geometry_pipeline_metadata_landmarks.binarypb"))
    tensors = {f"mesh.{k}": v for k, v in convert_mesh_net(mesh_graph).items()}
    tensors |= {f"blendshapes.{k}": v for k, v in convert_blendshape_net(blend_graph).items()}
    tensors |= {f"canonical.{k}": owned_tensor(v) for k, v in metadata.items()}
    save_file(
        {k: v.contiguous() for k, v in tensors.items()}, str(out_path), metadata={"source": task_path.name}
    )


def converted_weights_path() -> Path:
    """Cached safetensors of the converted networks (built from the verified asset on first use)."""
    return hub.converted_path(
        ASSET,
        CONVERTED_FILE,
        lambda out: build_converted_weights(hub.asset_path(ASSET), out),
        tag=CONVERTER_TAG,
    )


def _split(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


# ---------------------------------------------------------------------------------- geometry


def rotation_to_euler(rotation: Tensor) -> Tensor:
    """Rotations [B, 3, 3] (x right, y up, z towards the viewer) -> (yaw, pitch, roll) in degrees [B, 3].

    rotation = Ry(yaw) @ Rx(-pitch) @ Rz(roll): yaw > 0 turns the face towards the image's right,
    pitch > 0 lifts the chin, roll > 0 tilts the head counter-clockwise as the viewer sees it.
    Mirroring the image left-right negates yaw and roll and keeps pitch.
    """
    yaw = torch.atan2(rotation[:, 0, 2], rotation[:, 2, 2])
    pitch = torch.atan2(rotation[:, 1, 2], torch.hypot(rotation[:, 1, 0], rotation[:, 1, 1]))
    roll = torch.atan2(rotation[:, 1, 0], rotation[:, 1, 1])
    return torch.rad2deg(torch.stack([yaw, pitch, roll], dim=1))


def weighted_similarity_fit(source: Tensor, target: Tensor, weights: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Weighted Umeyama fit: scale [B], rotation [B, 3, 3], translation [B, 3] minimising
    sum_i w_i |s R source_i + t - target_i|^2 for source [N, 3] (or [B, N, 3]), target [B, N, 3]."""
    w = (weights / weights.sum())[None, :, None]
    source = source.expand_as(target)
    mu_s, mu_t = (w * source).sum(1, keepdim=True), (w * target).sum(1, keepdim=True)
    s, t = source - mu_s, target - mu_t
    cov = (w * t).transpose(1, 2) @ s
    u, sigma, vt = torch.linalg.svd(cov)
    sign = torch.sign(torch.linalg.det(u @ vt))  # no reflections
    fix = torch.ones_like(sigma)
    fix = torch.cat([fix[:, :2], sign[:, None]], dim=1)
    rotation = u @ torch.diag_embed(fix) @ vt
    scale = (sigma * fix).sum(1) / (w * s.square()).sum((1, 2))
    translation = mu_t[:, 0] - scale[:, None] * (rotation @ mu_s.transpose(1, 2))[:, :, 0]
    return scale, rotation, translation


class MediaPipeFaceModel(nn.Module):
    """Landmarks, blendshapes and head pose of aligned G2Face crops (no shape basis needed)."""

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        roi_center: tuple[float, float] = MESH_ROI_CENTER,
        roi_size: float = MESH_ROI_SIZE,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        tensors = load_file(str(weights or converted_weights_path()))
        self.mesh = FaceMeshNet()
        self.mesh.load_state_dict(_split(tensors, "mesh."))
        self.blendshapes = BlendshapeNet()
        self.blendshapes.load_state_dict(_split(tensors, "blendshapes."))
        canonical = _split(tensors, "canonical.")
        pose_weights = torch.zeros(NUM_MESH_VERTICES)
        pose_weights[canonical["procrustes_ids"]] = canonical["procrustes_weights"]
        self.register_buffer("canonical_vertices", canonical["canonical_vertices"])
        self.register_buffer("pose_weights", pose_weights)
        self.roi_center, self.roi_size = roi_center, roi_size
        freeze(self).to(device=device, dtype=dtype)

    def landmarks(self, crops: Tensor) -> tuple[Tensor, Tensor]:
        """Crops [B, 3, S, S] in [-1, 1] -> landmarks [B, 478, 3] in unit crop coordinates (x, y in
        [0, 1] left-to-right, top-to-bottom; z on the x scale, smaller = nearer) and presence logits [B]."""
        (cx, cy), size = self.roi_center, self.roi_size
        # affine_grid maps the network input's [-1, 1] square onto the ROI in the crop's [-1, 1] frame
        theta = crops.new_tensor([[size, 0.0, 2 * cx - 1], [0.0, size, 2 * cy - 1]]).expand(len(crops), 2, 3)
        grid = F.affine_grid(theta, [len(crops), 3, MESH_INPUT_SIZE, MESH_INPUT_SIZE], align_corners=False)
        mesh_input = F.grid_sample(
            (crops + 1) / 2, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        pixels, presence = self.mesh(mesh_input)
        unit = pixels / MESH_INPUT_SIZE
        origin = crops.new_tensor([cx - size / 2, cy - size / 2, 0.0])
        return origin + unit * size, presence

    def expression(self, landmarks: Tensor) -> Tensor:
        """Landmarks [B, 478, 3] of a square crop -> the 52 blendshape scores [B, 52]."""
        return self.blendshapes(landmarks[:, BLENDSHAPE_LANDMARKS, :2])

    def fit_pose(self, landmarks: Tensor) -> tuple[Tensor, Tensor]:
        """Similarity fit of the canonical mesh to the landmarks, with MediaPipe's Procrustes weights.

        Returns the rotation [B, 3, 3] (x right, y up, z towards the viewer) and the mesh landmarks
        brought back into the canonical frame (pose and scale removed, cm) [B, 468, 3].
        """
        points = landmarks[:, :NUM_MESH_VERTICES] * landmarks.new_tensor([1.0, -1.0, -1.0])
        scale, rotation, translation = weighted_similarity_fit(
            self.canonical_vertices, points, self.pose_weights
        )
        normalised = ((points - translation[:, None]) @ rotation) / scale[:, None, None]
        return rotation, normalised


class MediaPipeGeometry(nn.Module):
    """`GeometryEncoder` of the lite configuration: MediaPipe landmarks -> shape, expression, pose.

    shape: `shape_dim` whitened PCA coefficients of pose-normalised landmarks (unit variance over the
    basis' training identities); expression: the 52 blendshape scores; pose: (yaw, pitch, roll) in
    degrees (see `rotation_to_euler`); landmarks: [B, 478, 3] in unit crop coordinates.
    """

    name = "mediapipe"
    expression_dim = len(BLENDSHAPE_NAMES)

    def __init__(
        self,
        shape_basis: str | Path | None = None,
        *,
        weights: str | Path | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.face = MediaPipeFaceModel(weights)
        basis_path = shape_basis or resources.files("g2face") / "assets" / SHAPE_BASIS_FILE
        basis = load_file(str(basis_path))
        self.register_buffer("shape_mean", basis["mean"])
        self.register_buffer("shape_components", basis["components"])
        self.register_buffer("shape_std", basis["std"])
        self.shape_dim = len(basis["std"])
        freeze(self).to(device=device, dtype=dtype)

    def shape_coefficients(self, normalised: Tensor) -> Tensor:
        """Pose-normalised mesh landmarks [B, 468, 3] -> whitened shape coefficients [B, shape_dim]."""
        return (normalised.flatten(1) - self.shape_mean) @ self.shape_components.T / self.shape_std

    def forward(self, crops: Tensor) -> Geometry:
        landmarks, _ = self.face.landmarks(crops)
        rotation, normalised = self.face.fit_pose(landmarks)
        return Geometry(
            shape=self.shape_coefficients(normalised),
            expression=self.face.expression(landmarks),
            pose=rotation_to_euler(rotation),
            landmarks=landmarks,
        )


def save_shape_basis(
    path: Path, mean: np.ndarray, components: np.ndarray, std: np.ndarray, info: dict
) -> None:
    """Write a shape basis (mean [1404], components [K, 1404], std [K]) with provenance metadata."""
    tensors = {"mean": mean, "components": components, "std": std}
    tensors = {k: owned_tensor(v, np.float32) for k, v in tensors.items()}
    save_file(tensors, str(path), metadata={k: str(v) for k, v in info.items()})
