"""Layers of dlib's DNN toolkit networks in plain PyTorch, with dlib's own semantics: shared by the
Cydral age and gender estimators (`attributes`) and dlib's face recogniser (`dlib_face`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ConvAffine(nn.Module):
    """dlib's con_ + affine_ (batch norm folded to a per-channel scale and offset)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding)
        self.scale = nn.Parameter(torch.ones(1, cout, 1, 1))
        self.offset = nn.Parameter(torch.zeros(1, cout, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) * self.scale + self.offset


class DlibResidual(nn.Module):
    """dlib's residual / residual_down block. Downsampling uses an unpadded 3x3 stride-2 conv and a
    2x2 average-pooled shortcut; dlib's add_prev zero-pads the smaller operand at the end of the
    channel, row and column axes so the two can be added."""

    def __init__(self, cin: int, cout: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.first = ConvAffine(cin, cout, 3, 2 if downsample else 1, 0 if downsample else 1)
        self.second = ConvAffine(cout, cout, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        branch = self.second(F.relu(self.first(x)))
        shortcut = F.avg_pool2d(x, 2) if self.downsample else x
        size = [max(a, b) for a, b in zip(branch.shape[1:], shortcut.shape[1:], strict=True)]
        return F.relu(_pad_to(branch, size) + _pad_to(shortcut, size))


def _pad_to(x: Tensor, chw: list[int]) -> Tensor:
    c, h, w = chw
    if tuple(x.shape[1:]) == (c, h, w):
        return x
    return F.pad(x, (0, w - x.shape[3], 0, h - x.shape[2], 0, c - x.shape[1]))
