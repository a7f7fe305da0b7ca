"""Dual prior-guided identity modification (DPIM): the multi-scale face encoder E_face, the
identity-aware feature fusion masks, and the payload injections H_a / H_b. Parameter names follow
the reference (`pyramid`, `fusion_mask`, `hiding_injects`) so its checkpoints load by key."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from g2face.nn import FusedLeakyReLU


class NormConv(nn.Module):
    """Conv → InstanceNorm (no affine) → optional LeakyReLU(0.2); 4×4 stride 2 when downsampling."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool, activate: bool = True):
        super().__init__()
        kernel, stride = (4, 2) if downsample else (3, 1)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding=1)
        self.norm = nn.InstanceNorm2d(out_channels)
        self.activate = activate

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(self.conv(x))
        return F.leaky_relu(x, 0.2) if self.activate else x


class ResidualBlock(nn.Module):
    """(conv1 → conv2  +  skip) / √2, halving the resolution unless it is E_face's first block."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool):
        super().__init__()
        self.conv1 = NormConv(in_channels, in_channels, downsample=False)
        self.conv2 = NormConv(in_channels, out_channels, downsample)
        self.skip = NormConv(in_channels, out_channels, downsample, activate=False)

    def forward(self, x: Tensor) -> Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2.0)


class FaceEncoder(nn.ModuleList):
    """E_face: block 0 runs at the input resolution, each next block halves it; one feature map per
    generator fusion resolution, with `widths` channels (from the top resolution down; default: the
    generator's channel count there)."""

    def __init__(self, channels: dict[int, int], widths: tuple[int, ...] | None = None):
        resolutions = sorted(channels, reverse=True)
        expected = [resolutions[0] // 2**i for i in range(len(resolutions))]
        if resolutions != expected:
            raise ValueError(f"fusion resolutions must halve contiguously, got {resolutions}")
        if widths is not None and len(widths) != len(resolutions):
            raise ValueError(f"need one encoder width per fusion resolution {resolutions}, got {widths}")
        widths = [3] + list(widths or [channels[r] for r in resolutions])
        super().__init__(
            ResidualBlock(c_in, c_out, downsample=i > 0)
            for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:], strict=True))
        )
        self.resolutions = resolutions

    def forward(self, x: Tensor) -> dict[int, Tensor]:
        if x.shape[-1] != self.resolutions[0]:
            raise ValueError(f"E_face expects {self.resolutions[0]} px crops, got {tuple(x.shape)}")
        features = {}
        for resolution, block in zip(self.resolutions, self, strict=True):
            x = block(x)
            features[resolution] = x
        return features


class FusionMask(nn.Module):
    """M = sigmoid(InstanceNorm(conv1×1([F_gen, F_face, H_a(V)])))."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)
        self.norm = nn.InstanceNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.norm(self.conv(x)))


def payload_planes(bits: Tensor, resolution: int) -> Tensor:
    """Bits [B, ...] → [B, ceil(n / r²), r, r]: row-major fill, zero padded (the reference's
    `view` of its 512×32 bits; it never needs padding there)."""
    flat = bits.flatten(1)
    planes = math.ceil(flat.shape[1] / resolution**2)
    flat = F.pad(flat, (0, planes * resolution**2 - flat.shape[1]))
    return flat.view(flat.shape[0], planes, resolution, resolution)


class PayloadInjection(nn.Module):
    """H(V) = scale ⊙ FusedLeakyReLU(conv1×1(V planes)); `weight` is the per-channel scale,
    initialised to 0 so an untrained injection leaves the generator untouched."""

    def __init__(self, n_bits: int, resolution: int, out_channels: int):
        super().__init__()
        self.resolution = resolution
        self.conv = nn.Conv2d(math.ceil(n_bits / resolution**2), out_channels, 1)
        self.activate = FusedLeakyReLU(out_channels)
        self.weight = nn.Parameter(torch.zeros(out_channels, 1, 1))

    def forward(self, bits: Tensor) -> Tensor:
        planes = payload_planes(bits.to(self.conv.weight.dtype), self.resolution)
        return self.weight * self.activate(self.conv(planes))
