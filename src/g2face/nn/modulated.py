"""StyleGAN2 synthesis layers: weight-modulated convolution with demodulation, noise injection,
styled conv (conv → noise → bias + leaky ReLU), ToRGB with upsampled skip, constant input."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from g2face.nn.equalized import EqualLinear, FusedLeakyReLU
from g2face.nn.upfirdn import Blur, Upsample

BLUR_TAPS = (1, 3, 3, 1)


class ModulatedConv2d(nn.Module):
    """Convolution whose weights are scaled per input channel by an affine map of the style vector,
    optionally demodulated to unit output variance, optionally a 2× transposed conv + blur.

    Implemented as one grouped convolution over the batch (each sample gets its own weights).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_taps: Sequence[int] = BLUR_TAPS,
    ):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            p = (len(blur_taps) - 2) - (kernel_size - 1)
            self.blur = Blur(blur_taps, pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        b, c_in, h, w = x.shape
        c_out, k = self.out_channels, self.kernel_size
        weight = self.scale * self.weight * self.modulation(style).view(b, 1, c_in, 1, 1)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.square().sum(dim=(2, 3, 4)) + 1e-8).view(b, c_out, 1, 1, 1)
        x = x.reshape(1, b * c_in, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * c_in, c_out, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=b)
            return self.blur(out.view(b, c_out, *out.shape[2:]))
        out = F.conv2d(x, weight.reshape(b * c_out, c_in, k, k), padding=k // 2, groups=b)
        return out.view(b, c_out, h, w)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, {self.kernel_size}, "
            f"demodulate={self.demodulate}, upsample={self.upsample}"
        )


class NoiseInjection(nn.Module):
    """Adds per-pixel Gaussian noise scaled by a learned scalar (initialised to 0)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        if noise is None:
            noise = x.new_empty(x.shape[0], 1, *x.shape[2:]).normal_()
        return x + self.weight * noise


class StyledConv(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        upsample: bool = False,
        blur_taps: Sequence[int] = BLUR_TAPS,
    ):
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channels, out_channels, kernel_size, style_dim, True, upsample, blur_taps
        )
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x: Tensor, style: Tensor, noise: Tensor | None = None) -> Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    """1×1 modulated conv (no demodulation) to RGB, plus the upsampled RGB of the previous level."""

    def __init__(
        self, in_channels: int, style_dim: int, upsample: bool = True, blur_taps: Sequence[int] = BLUR_TAPS
    ):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_taps)
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, style: Tensor, skip: Tensor | None = None) -> Tensor:
        out = self.conv(x, style) + self.bias
        return out if skip is None else out + self.upsample(skip)


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> Tensor:
        return self.input.expand(batch, -1, -1, -1)
