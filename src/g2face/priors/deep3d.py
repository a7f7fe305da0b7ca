"""Deep3DFaceRecon (ResNet-50 coefficient regressor, `epoch_20.pth[net_recon]`) + the BFM09 front
face model: the paper configuration's geometry prior, in plain PyTorch (no renderer).

The network maps an RGB face image in [0, 1] to 257 coefficients (`COEFFICIENTS` says which);
`Geometry` takes shape = identity coefficients, expression = expression coefficients, pose = the
three angles in degrees (the reference feeds radians to f_mlp; the importer folds the conversion
into f_mlp's input scaling). `BFM09.reconstruct` gives camera-space vertices, the 68 landmarks by
the reference's perspective projection, and the spherical-harmonics shading its losses use.

Framing: the secure default resizes the whole G2Face crop to Deep3DFaceRecon's 224 px input
(antialiased bilinear); `compat="reference"` feeds the 256 crop unresized, as the reference code
does (the ResNet ends in a global average pool, so any size runs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from g2face.priors.base import Geometry, freeze, owned_tensor

COEFFICIENTS = {
    "id": (0, 80),
    "exp": (80, 144),
    "tex": (144, 224),
    "angle": (224, 227),
    "gamma": (227, 254),
    "trans": (254, 257),
}
"""Index range [start, stop) of each coefficient group in the 257-vector (the `final_layers` order:
id, exp, tex, angle, gamma, then translation as (tx, ty) and tz)."""
N_COEFFICIENTS = 257
FINAL_LAYER_SIZES = (80, 64, 80, 3, 27, 2, 1)
RESNET50_BLOCKS = (3, 4, 6, 3)
INPUT_SIZE = 224
COMPAT_MODES = (None, "reference")

# The reference camera and lighting (Deep3DFaceRecon defaults, which G2Face keeps).
FOCAL, CENTER, CAMERA_DISTANCE = 1015.0, 112.0, 10.0
INITIAL_LIGHT = (0.8, 0, 0, 0, 0, 0, 0, 0, 0)
SH_A = (math.pi, 2 * math.pi / math.sqrt(3.0), 2 * math.pi / math.sqrt(8.0))
SH_C = (
    1 / math.sqrt(4 * math.pi),
    math.sqrt(3.0) / math.sqrt(4 * math.pi),
    3 * math.sqrt(5.0) / math.sqrt(12 * math.pi),
)

BFM_ARRAYS = ("mean_shape", "id_base", "exp_base", "mean_tex", "tex_base", "point_buf", "tri", "keypoints")
"""Tensors of a converted BFM09 file (0-based indices; `mean_shape` re-centred as the reference does)."""


def split_coefficients(coefficients: Tensor) -> dict[str, Tensor]:
    return {name: coefficients[:, a:b] for name, (a, b) in COEFFICIENTS.items()}


class Bottleneck(nn.Module):
    """torchvision's ResNet-50 v1.5 bottleneck (stride on the 3x3 conv), same parameter names."""

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = 4 * width
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet50Trunk(nn.Module):
    """ResNet-50 up to the global average pool: [B, 3, H, W] → [B, 2048, 1, 1]."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for i, (n, width) in enumerate(zip(RESNET50_BLOCKS, (64, 128, 256, 512), strict=True), start=1):
            stride = 1 if i == 1 else 2
            blocks = [Bottleneck(cin, width, stride)] + [
                Bottleneck(4 * width, width, 1) for _ in range(n - 1)
            ]
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
            cin = 4 * width

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return F.adaptive_avg_pool2d(x, 1)


class ReconNet(nn.Module):
    """Deep3DFaceRecon's ReconNetWrapper (use_last_fc=False): RGB [0, 1] → coefficients [B, 257]."""

    def __init__(self):
        super().__init__()
        self.backbone = ResNet50Trunk()
        self.final_layers = nn.ModuleList(nn.Conv2d(2048, n, 1) for n in FINAL_LAYER_SIZES)

    def forward(self, x: Tensor) -> Tensor:
        features = self.backbone(x)
        return torch.cat([layer(features) for layer in self.final_layers], dim=1).flatten(1)


def bfm_tensors_from_mat(mat: dict[str, np.ndarray]) -> dict[str, Tensor]:
    """The BFM arrays of a loaded `BFM_model_front.mat`, as the reference prepares them: float32,
    0-based indices, the mean shape re-centred on its centroid."""
    mean_shape = mat["meanshape"].astype(np.float32).reshape(-1, 3)
    mean_shape = mean_shape - mean_shape.mean(0, keepdims=True)
    arrays = {
        "mean_shape": mean_shape.reshape(-1),
        "id_base": mat["idBase"].astype(np.float32),
        "exp_base": mat["exBase"].astype(np.float32),
        "mean_tex": mat["meantex"].astype(np.float32).reshape(-1),
        "tex_base": mat["texBase"].astype(np.float32),
        "point_buf": mat["point_buf"].astype(np.int64) - 1,
        "tri": mat["tri"].astype(np.int64) - 1,
        "keypoints": np.squeeze(mat["keypoints"]).astype(np.int64) - 1,
    }
    return {k: owned_tensor(v) for k, v in arrays.items()}


@dataclass(frozen=True)
class Reconstruction:
    vertices: Tensor  # [B, N, 3] camera space
    landmarks: Tensor  # [B, 68, 2] pixels of the 224 input, y up (the reference's convention)
    texture: Tensor  # [B, N, 3] albedo in [0, 1]
    shading: Tensor  # [B, N, 3] SH irradiance
    color: Tensor  # [B, N, 3] texture · shading


class BFM09(nn.Module):
    """The BFM09 front model (35,709 vertices) with the reference's camera and SH lighting."""

    def __init__(self, tensors: dict[str, Tensor]):
        super().__init__()
        missing = [k for k in BFM_ARRAYS if k not in tensors]
        if missing:
            raise ValueError(f"BFM tensors missing: {', '.join(missing)}")
        for name in BFM_ARRAYS:
            self.register_buffer(name, tensors[name].clone())
        projection = torch.tensor([[FOCAL, 0, CENTER], [0, FOCAL, CENTER], [0, 0, 1]]).T
        self.register_buffer("projection", projection)
        self.register_buffer("initial_light", torch.tensor(INITIAL_LIGHT).reshape(1, 1, 9))

    def shape(self, id_coeffs: Tensor, exp_coeffs: Tensor) -> Tensor:
        flat = id_coeffs @ self.id_base.T + exp_coeffs @ self.exp_base.T + self.mean_shape
        return flat.reshape(len(id_coeffs), -1, 3)

    @staticmethod
    def rotation(angles: Tensor) -> Tensor:
        """Radians (x, y, z) → [B, 3, 3] for row vectors (`points @ R`), R = (Rz·Ry·Rx)ᵀ."""
        x, y, z = angles.unbind(1)
        one, zero = torch.ones_like(x), torch.zeros_like(x)

        def m(*rows: Tensor) -> Tensor:
            return torch.stack(rows, dim=1).reshape(-1, 3, 3)

        rx = m(one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos())
        ry = m(y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos())
        rz = m(z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one)
        return (rz @ ry @ rx).transpose(1, 2)

    def normals(self, shape: Tensor) -> Tensor:
        v1, v2, v3 = (shape[:, self.tri[:, i]] for i in range(3))
        faces = F.normalize(torch.cross(v1 - v2, v2 - v3, dim=-1), dim=-1)
        # point_buf pads with index F (one past the last face): a zero normal there.
        faces = torch.cat([faces, faces.new_zeros(len(shape), 1, 3)], dim=1)
        return F.normalize(faces[:, self.point_buf].sum(2), dim=-1)

    def sh_shading(self, normals: Tensor, gamma: Tensor) -> Tensor:
        """Second-order SH irradiance [B, N, 3] of rotated normals under 27 lighting coefficients."""
        a, c = SH_A, SH_C
        nx, ny, nz = normals[..., :1], normals[..., 1:2], normals[..., 2:]
        basis = torch.cat(
            [
                a[0] * c[0] * torch.ones_like(nx),
                -a[1] * c[1] * ny,
                a[1] * c[1] * nz,
                -a[1] * c[1] * nx,
                a[2] * c[2] * nx * ny,
                -a[2] * c[2] * ny * nz,
                0.5 * a[2] * c[2] / math.sqrt(3.0) * (3 * nz**2 - 1),
                -a[2] * c[2] * nx * nz,
                0.5 * a[2] * c[2] * (nx**2 - ny**2),
            ],
            dim=-1,
        )
        light = (gamma.reshape(-1, 3, 9) + self.initial_light).transpose(1, 2)  # [B, 9, RGB]
        return basis @ light

    def to_camera(self, shape: Tensor, coefficients: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Model-space points [B, N, 3] → (camera-space points, their projections [B, N, 2] in
        pixels of the 224 input, the rotation) under the pose and translation coefficients."""
        rotation = self.rotation(coefficients["angle"])
        camera = shape @ rotation + coefficients["trans"].unsqueeze(1)
        camera = torch.cat([camera[..., :2], CAMERA_DISTANCE - camera[..., 2:]], dim=-1)
        projected = camera @ self.projection
        return camera, projected[..., :2] / projected[..., 2:], rotation

    def reconstruct(self, coefficients: Tensor) -> Reconstruction:
        c = split_coefficients(coefficients)
        shape = self.shape(c["id"], c["exp"])
        camera, projected, rotation = self.to_camera(shape, c)
        texture = ((c["tex"] @ self.tex_base.T + self.mean_tex) / 255.0).reshape(len(shape), -1, 3)
        shading = self.sh_shading(self.normals(shape) @ rotation, c["gamma"])
        return Reconstruction(camera, projected[:, self.keypoints], texture, shading, texture * shading)

    def keypoints_in_camera(self, coefficients: Tensor) -> tuple[Tensor, Tensor]:
        """Camera-space vertices [B, 68, 3] and projections [B, 68, 2] of the 68 landmarks alone:
        the same values as `reconstruct`'s at `keypoints`, without the whole mesh, its normals and
        shading (which `Geometry` does not use; they cost about a third of the prior's time)."""
        c = split_coefficients(coefficients)
        rows = (3 * self.keypoints[:, None] + torch.arange(3, device=self.keypoints.device)).reshape(-1)
        flat = c["id"] @ self.id_base[rows].T + c["exp"] @ self.exp_base[rows].T + self.mean_shape[rows]
        camera, projected, _ = self.to_camera(flat.reshape(len(flat), -1, 3), c)
        return camera, projected


class Deep3DGeometry(nn.Module):
    """`GeometryEncoder` over G2Face crops [B, 3, S, S] in [-1, 1] (see the module docstring)."""

    name = "deep3d-bfm09"
    shape_dim = 80
    expression_dim = 64

    def __init__(
        self, net_weights: Path | dict[str, Tensor], bfm: Path | dict[str, Tensor], compat: str | None = None
    ):
        super().__init__()
        if compat not in COMPAT_MODES:
            raise ValueError(f"compat must be one of {COMPAT_MODES}, got {compat!r}")
        self.compat = compat
        self.net = ReconNet()
        self.net.load_state_dict(
            load_file(str(net_weights)) if isinstance(net_weights, (str, Path)) else net_weights
        )
        self.face_model = BFM09(load_file(str(bfm)) if isinstance(bfm, (str, Path)) else bfm)
        freeze(self)

    def network_input(self, crops: Tensor) -> Tensor:
        images = (crops + 1) / 2
        if self.compat or images.shape[-1] == INPUT_SIZE:
            return images
        return F.interpolate(
            images, (INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True, align_corners=False
        )

    def coefficients(self, crops: Tensor) -> Tensor:
        return self.net(self.network_input(crops))

    def forward(self, crops: Tensor) -> Geometry:
        coefficients = self.coefficients(crops)
        c = split_coefficients(coefficients)
        vertices, landmarks = self.face_model.keypoints_in_camera(coefficients)
        # Landmarks in crop-normalised coordinates: x right, y down, z toward the camera (same scale).
        size = 2 * CENTER
        xy = landmarks / size
        xy = torch.stack([xy[..., 0], 1 - xy[..., 1]], dim=-1)
        z = (CAMERA_DISTANCE - vertices[..., 2:]) * FOCAL / (CAMERA_DISTANCE * size)
        return Geometry(
            shape=c["id"],
            expression=c["exp"],
            pose=torch.rad2deg(c["angle"]),
            landmarks=torch.cat([xy, z], -1),
        )
