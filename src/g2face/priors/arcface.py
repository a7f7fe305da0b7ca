"""ArcFace iresnet50 (insightface `arcface_torch` layout, e.g. `ms1mv3_arcface_r50.pth`), the
paper configuration's identity prior, in plain PyTorch.

Input: 112x112 RGB normalised (x - 127.5) / 127.5, i.e. exactly our [-1, 1] crops. Two framings:
* secure default: the fixed differentiable warp from the G2Face (FFHQ) crop to the ArcFace
  5-point template (`priors.crops.ffhq_to_arcface`), what the recogniser was trained on;
* `compat="reference"`: the reference code's own input, the whole 256 crop resized to 112 px by
  nearest-neighbour interpolation (`F.interpolate` default), and raw (not L2-normalised)
  embeddings, since the reference hides the raw float32 values. Only for reproducing its numbers.
"""

from __future__ import annotations

from pathlib import Path

import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from g2face.priors.base import freeze
from g2face.priors.crops import ffhq_to_arcface

IRESNET50_BLOCKS = (3, 4, 14, 3)
EMBEDDING_DIM = 512
COMPAT_MODES = (None, "reference")


class IBasicBlock(nn.Module):
    """BN → conv3x3 → BN → PReLU → conv3x3(stride) → BN, plus the (projected) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """[B, 3, 112, 112] normalised to [-1, 1] → raw embedding [B, 512] (fc + BatchNorm1d head)."""

    def __init__(self, blocks: tuple[int, ...] = IRESNET50_BLOCKS):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        cin = 64
        for i, (n, cout) in enumerate(zip(blocks, (64, 128, 256, 512), strict=True), start=1):
            layer = [IBasicBlock(cin, cout, 2)] + [IBasicBlock(cout, cout, 1) for _ in range(n - 1)]
            self.add_module(f"layer{i}", nn.Sequential(*layer))
            cin = cout
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.fc = nn.Linear(512 * 7 * 7, EMBEDDING_DIM)
        self.features = nn.BatchNorm1d(EMBEDDING_DIM, eps=1e-5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(self.bn2(x).flatten(1)))


class ArcFaceEncoder(nn.Module):
    """`IdentityEncoder` over G2Face crops [B, 3, S, S] in [-1, 1] (see the module docstring)."""

    name = "arcface-r50"
    embedding_dim = EMBEDDING_DIM

    def __init__(self, weights: Path | dict[str, Tensor], crop_size: int = 256, compat: str | None = None):
        super().__init__()
        if compat not in COMPAT_MODES:
            raise ValueError(f"compat must be one of {COMPAT_MODES}, got {compat!r}")
        self.compat = compat
        self.net = IResNet()
        state = load_file(str(weights)) if isinstance(weights, (str, Path)) else weights
        self.net.load_state_dict(state)
        self.crop = None if compat else ffhq_to_arcface(crop_size, 112)
        freeze(self)

    def arcface_input(self, crops: Tensor) -> Tensor:
        if self.crop is None:  # the reference: whole image, nearest resize
            return crops if crops.shape[-1] == 112 else F.interpolate(crops, (112, 112))
        return self.crop(crops)

    def forward(self, crops: Tensor) -> Tensor:
        embedding = self.net(self.arcface_input(crops))
        return embedding if self.compat else F.normalize(embedding, dim=1)
