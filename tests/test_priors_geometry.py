"""Lite geometry prior: MediaPipe FaceMesh/blendshape ports, pose fit, shape basis, Geometry results."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from g2face import hub
from g2face.priors.base import GeometryEncoder
from g2face.priors.mediapipe_geometry import (
    BLENDSHAPE_NAMES,
    NUM_LANDMARKS,
    BlendshapeNet,
    FaceMeshNet,
    MediaPipeGeometry,
    MeshBlock,
    rotation_to_euler,
    weighted_similarity_fit,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def euler_rotation(yaw: float, pitch: float, roll: float) -> torch.Tensor:
    """Ry(yaw) @ Rx(-pitch) @ Rz(roll), angles in degrees: the documented convention."""
    a, b, c = (math.radians(v) for v in (yaw, -pitch, roll))
    ry = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = torch.tensor([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    rz = torch.tensor([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return ry @ rx @ rz


def test_downsampling_block_halves_resolution_and_zero_pads_the_skip():
    block = MeshBlock(16, 8, 32, downsample=True).eval()
    x = torch.randn(2, 16, 8, 8)
    assert block(x).shape == (2, 32, 4, 4)
    for module in (block.reduce, block.depthwise, block.expand):
        torch.nn.init.zeros_(module.weight)
        torch.nn.init.zeros_(module.bias)
    with torch.no_grad():
        block.act.weight.fill_(1.0)  # identity activation: the output is the skip path alone
        out = block(x)
    assert torch.allclose(out[:, :16], torch.nn.functional.max_pool2d(x, 2))
    assert (out[:, 16:] == 0).all()


def test_untrained_ports_have_mediapipe_io_shapes():
    landmarks, presence = FaceMeshNet().eval()(torch.rand(1, 3, 256, 256))
    assert landmarks.shape == (1, NUM_LANDMARKS, 3) and presence.shape == (1,)
    scores = BlendshapeNet().eval()(torch.randn(2, 146, 2))
    assert scores.shape == (2, len(BLENDSHAPE_NAMES)) and ((scores > 0) & (scores < 1)).all()


def test_blendshapes_ignore_where_and_how_large_the_points_are():
    net = BlendshapeNet().eval()
    points = torch.randn(1, 146, 2)
    with torch.no_grad():
        assert torch.allclose(net(points), net(points * 37.0 + torch.tensor([100.0, -5.0])), atol=1e-6)


def test_similarity_fit_recovers_pose_scale_and_translation():
    source = torch.randn(50, 3) * torch.tensor([6.0, 8.0, 3.0])
    weights = torch.rand(50)
    angles = torch.tensor([[25.0, -10.0, 7.0], [-40.0, 15.0, -3.0]])
    rotation = torch.stack([euler_rotation(*a) for a in angles.tolist()])
    target = 0.02 * source @ rotation.transpose(1, 2) + torch.tensor([0.5, -0.4, 0.1])
    scale, fitted, translation = weighted_similarity_fit(source, target, weights)
    assert torch.allclose(scale, torch.full((2,), 0.02), rtol=1e-4)
    assert torch.allclose(fitted, rotation, atol=1e-4)
    assert torch.allclose(translation, torch.tensor([0.5, -0.4, 0.1]).expand(2, 3), atol=1e-5)
    assert torch.allclose(rotation_to_euler(fitted), angles, atol=1e-2)


def test_mirroring_a_rotation_negates_yaw_and_roll():
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))
    rotation = euler_rotation(30.0, 12.0, -8.0)[None]
    assert torch.allclose(
        rotation_to_euler(mirror @ rotation @ mirror), torch.tensor([[-30.0, 12.0, 8.0]]), atol=1e-3
    )


# ------------------------------------------------------------------ with the real (converted) weights


@pytest.fixture(scope="module")
def geometry() -> MediaPipeGeometry:
    if not hub.is_cached("face-landmarker"):
        pytest.skip("face-landmarker asset not cached (g2face weights fetch face-landmarker)")
    return MediaPipeGeometry()


@pytest.fixture(scope="module")
def aligned_faces() -> dict[str, torch.Tensor]:
    """Public-domain fixture faces, detected and aligned to the G2Face framing, as [1, 3, 256, 256]."""
    from g2face.align import align_face
    from g2face.detection import YuNetDetector

    detector, faces = YuNetDetector(), {}
    for name in ("obama.jpg", "biden.jpg", "grace_hopper.jpg"):
        image = np.asarray(Image.open(FIXTURES / name).convert("RGB"))
        crop = align_face(image, detector.detect(image)[0]).crop
        faces[name.split(".")[0]] = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 127.5 - 1
    return faces


def rotate(crops: torch.Tensor, degrees: float) -> torch.Tensor:
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]])[None]
    grid = torch.nn.functional.affine_grid(
        theta.expand(len(crops), 2, 3), list(crops.shape), align_corners=False
    )
    return torch.nn.functional.grid_sample(crops, grid, padding_mode="border", align_corners=False)


def test_geometry_of_a_real_face(geometry, aligned_faces):
    assert isinstance(geometry, GeometryEncoder)
    crops = torch.cat([aligned_faces["obama"], aligned_faces["biden"]])
    with torch.no_grad():
        g = geometry(crops)
        presence = geometry.face.landmarks(crops)[1]
    assert g.shape.shape == (2, geometry.shape_dim) and g.expression.shape == (2, 52)
    assert g.pose.shape == (2, 3) and g.landmarks.shape == (2, NUM_LANDMARKS, 3)
    assert (presence > 0).all()
    assert (g.landmarks[..., :2] > 0).all() and (g.landmarks[..., :2] < 1).all()
    assert g.pose.abs().max() < 25  # frontal portraits
    assert g.as_vector().shape == (2, geometry.shape_dim + 52 + 3)
    with torch.no_grad():  # batching does not change a face's result
        assert torch.allclose(geometry(crops[1:]).shape, g.shape[1:], atol=1e-4)


def test_flipped_face_negates_yaw_and_roll(geometry, aligned_faces):
    crops = torch.cat(list(aligned_faces.values()))
    with torch.no_grad():
        pose, flipped = geometry(crops).pose, geometry(crops.flip(3)).pose
    assert (pose[:, 0] + flipped[:, 0]).abs().max() < 2.0  # yaw
    assert (pose[:, 2] + flipped[:, 2]).abs().max() < 1.0  # roll
    assert (pose[:, 1] - flipped[:, 1]).abs().max() < 2.0  # pitch kept


def test_expression_and_shape_are_stable_under_small_rotations(geometry, aligned_faces):
    face = aligned_faces["obama"]
    with torch.no_grad():
        base = geometry(face)
        turned = geometry(torch.cat([rotate(face, -6.0), rotate(face, 6.0)]))
        other = geometry(aligned_faces["biden"])
    change = (turned.expression - base.expression).norm(dim=1)
    assert (change < 0.25 * (other.expression - base.expression).norm()).all()
    assert (turned.expression - base.expression).abs().max() < 0.2
    assert (turned.pose[:, 2] - base.pose[:, 2]).abs().sub(6.0).abs().max() < 1.5  # roll follows the turn
    own = (turned.shape - base.shape).norm(dim=1)
    assert (own < (other.shape - base.shape).norm()).all()


def test_gradients_reach_the_input_crop(geometry, aligned_faces):
    crops = aligned_faces["grace_hopper"].clone().requires_grad_(True)
    g = geometry(crops)
    (g.shape.square().sum() + g.expression.sum() + g.pose.sum() + g.landmarks.sum()).backward()
    assert crops.grad is not None and torch.isfinite(crops.grad).all() and crops.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in geometry.parameters())
