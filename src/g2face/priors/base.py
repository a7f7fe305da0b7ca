"""Interfaces every prior backend implements, so models, losses, training and evaluation code
never know which backend (lite: MobileStyleGAN/SFace/MediaPipe; paper: StyleGAN2/ArcFace/3DMM) runs.

Conventions shared by all backends:
* Face crops are float tensors [B, 3, S, S], RGB in [-1, 1], in the G2Face (FFHQ) framing produced
  by `g2face.align` (S = 256 by default; backends resample internally if they need another size).
* Every prior is an `nn.Module` that is frozen and in eval mode after construction, runs on any
  device/dtype it is moved to, and lets gradients flow to its input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor


@runtime_checkable
class IdentityEncoder(Protocol):
    """Face-recognition embedding of aligned G2Face crops."""

    name: str
    embedding_dim: int

    def __call__(self, crops: Tensor) -> Tensor:
        """[B, 3, S, S] in [-1, 1] -> L2-normalised embeddings [B, embedding_dim]."""
        ...


@dataclass(frozen=True)
class Geometry:
    """3D geometry of a batch of faces, as the G2Face identity extractor consumes it.

    `shape` is identity shape (coefficients of a shape basis), `expression` the expression code,
    `pose` (yaw, pitch, roll) in degrees, `landmarks` [B, N, 3] in crop-normalised coordinates.
    """

    shape: Tensor
    expression: Tensor
    pose: Tensor
    landmarks: Tensor

    def as_vector(self) -> Tensor:
        """[shape ⊕ expression ⊕ pose]: the geometry half of G2Face's e_g."""
        return torch.cat([self.shape, self.expression, self.pose], dim=1)


@runtime_checkable
class GeometryEncoder(Protocol):
    name: str
    shape_dim: int
    expression_dim: int

    def __call__(self, crops: Tensor) -> Geometry: ...


@runtime_checkable
class PerceptualDistance(Protocol):
    """A learned perceptual distance (LPIPS-like); `name` says honestly which one it is."""

    name: str

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        """Two batches [B, 3, H, W] in [-1, 1] -> distance per image [B]."""
        ...


FuseHook = Callable[[int, Tensor], Tensor]
"""Called by a generator with (resolution, feature map) once per resolution, at that backend's
fusion point (StyleGAN2: after the upsampling conv, before the second conv); returns the feature
map to continue with. G2Face's identity-aware fusion and payload injection live here."""


@runtime_checkable
class GenerativePrior(Protocol):
    """A style-based generator driven by per-layer style codes (W+)."""

    name: str
    n_styles: int
    style_dim: int
    output_resolution: int

    def feature_channels(self) -> dict[int, int]:
        """Resolution -> channel count of the feature map passed to the fuse hook."""
        ...

    def style_resolutions(self) -> list[int]:
        """For each style input index, the resolution of the layer it drives."""
        ...

    def __call__(self, wplus: Tensor, fuse: FuseHook | None = None) -> Tensor:
        """W+ [B, n_styles, style_dim] -> RGB [B, 3, R, R] in about [-1, 1]."""
        ...


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    """Put a prior in eval mode with no trainable parameters (gradients still reach the input)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def owned_tensor(array: np.ndarray, dtype: np.dtype | type | None = None) -> torch.Tensor:
    """A tensor of its own copy of a converter's `array` (as `dtype` where given), C-contiguous.
    What the converters read are often read-only views into the original file (ONNX initializers,
    protobuf buffers): `torch.from_numpy` would share them and print PyTorch's "not writable"
    warning to a user on the first run, when the conversion happens."""
    return torch.from_numpy(np.array(array, dtype=dtype, order="C", copy=True))
