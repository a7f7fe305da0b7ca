"""StyleGAN2 residual discriminator with minibatch standard deviation, in the rosinality layout
(the reference's training checkpoints load by key). Training code only: the inference path never
imports this module."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from g2face.models.config import DiscriminatorConfig
from g2face.nn import Blur, EqualConv2d, EqualLinear, FusedLeakyReLU


class ConvLayer(nn.Sequential):
    """[Blur →] EqualConv2d [→ FusedLeakyReLU]; the blur + stride 2 variant halves the resolution."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        downsample: bool = False,
        bias: bool = True,
        activate: bool = True,
        blur_taps: tuple[int, ...] = (1, 3, 3, 1),
    ):
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_taps) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_taps, pad=((p + 1) // 2, p // 2)))
        stride, padding = (2, 0) if downsample else (1, kernel_size // 2)
        layers.append(
            EqualConv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias and not activate)
        )
        if activate:
            layers.append(FusedLeakyReLU(out_channels, bias=bias))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, bias=False, activate=False)

    def forward(self, x: Tensor) -> Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2.0)


class Discriminator(nn.Module):
    """Image [B, 3, size, size] → realness logit [B, 1]."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        ch = config.channels
        blocks: list[nn.Module] = [ConvLayer(3, ch[-1], 1)]
        blocks += [ResBlock(c_in, c_out) for c_in, c_out in zip(ch[:0:-1], ch[-2::-1], strict=True)]
        self.convs = nn.Sequential(*blocks)
        self.stddev_group = config.stddev_group
        self.final_conv = ConvLayer(ch[0] + 1, ch[0], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(ch[0] * 16, ch[0], activate=True), EqualLinear(ch[0], 1)
        )

    def forward(self, image: Tensor) -> Tensor:
        out = self.convs(image)
        out = torch.cat([out, self._minibatch_stddev(out)], dim=1)
        return self.final_linear(self.final_conv(out).flatten(1))

    def _minibatch_stddev(self, x: Tensor) -> Tensor:
        """Mean over features of the per-group standard deviation: one extra channel that lets D
        see the diversity of a batch. Groups are the largest divisor of the batch <= stddev_group."""
        b, c, h, w = x.shape
        group = next(g for g in range(min(b, self.stddev_group), 0, -1) if b % g == 0)
        std = torch.sqrt(x.view(group, -1, c, h, w).var(dim=0, unbiased=False) + 1e-8)
        return std.mean(dim=(1, 2, 3)).view(-1, 1, 1, 1).repeat(group, 1, h, w)
