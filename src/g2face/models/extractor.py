"""Payload extractor E_p: reads one logit per payload bit back from an image. Layout of the
reference `HidingExtractor` (1×1 stem, inception-style blocks with batch norm, strided 3×3 head);
block count, dilations (receptive field) and width (capacity) are configuration."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from g2face.models.config import ExtractorConfig


class ExtractorBlock(nn.Module):
    """[1×1 → BN → LReLU → 3×3 (dilated) → BN → LReLU]  ⊕  [1×1 → BN → LReLU], width kept."""

    def __init__(self, width: int, dilation: int = 1):
        super().__init__()
        half = width // 2
        self.conv1x1_branch_1 = nn.Conv2d(width, half, 1)
        self.bn_branch_1_1 = nn.BatchNorm2d(half)
        self.conv3x3_branch_1 = nn.Conv2d(half, half, 3, padding=dilation, dilation=dilation)
        self.bn_branch_1_2 = nn.BatchNorm2d(half)
        self.conv1x1_branch_2 = nn.Conv2d(width, width - half, 1)
        self.bn_branch_2_1 = nn.BatchNorm2d(width - half)

    def forward(self, x: Tensor) -> Tensor:
        a = F.leaky_relu(self.bn_branch_1_1(self.conv1x1_branch_1(x)), 0.1)
        a = F.leaky_relu(self.bn_branch_1_2(self.conv3x3_branch_1(a)), 0.1)
        b = F.leaky_relu(self.bn_branch_2_1(self.conv1x1_branch_2(x)), 0.1)
        return torch.cat([a, b], dim=1)


class PayloadExtractor(nn.Module):
    """Image [B, 3, S, S] → logits [B, n_bits]; logit j is read at the position where bit j sits in
    the row-major [planes, S/stride, S/stride] layout."""

    def __init__(self, config: ExtractorConfig, n_bits: int, image_size: int):
        super().__init__()
        self.n_bits = n_bits
        grid = image_size // config.output_stride
        self.conv1x1_input = nn.Conv2d(3, config.width, 1)
        self.body = nn.Sequential(*(ExtractorBlock(config.width, d) for d in config.dilations))
        self.conv1x1_output = nn.Conv2d(
            config.width, math.ceil(n_bits / grid**2), 3, stride=config.output_stride, padding=1
        )

    def forward(self, image: Tensor) -> Tensor:
        x = F.leaky_relu(self.conv1x1_input(image), 0.1)
        return self.conv1x1_output(self.body(x)).flatten(1)[:, : self.n_bits]
