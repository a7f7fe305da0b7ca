"""dlib's DNN toolkit networks in plain PyTorch, with dlib's own semantics: the chip framing
(`ffhq_to_dlib_chip`), the input normalisation and the layers, shared by the Cydral age and gender
estimators (`attributes`) and dlib's face recogniser (`dlib_face`)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from g2face.align import estimate_similarity, template_points
from g2face.priors.crops import FixedCrop

DLIB_CHANNEL_MEANS = (122.781998, 117.000999, 104.297997)  # RGB, from the wheel's manifest.json
DLIB_CHIP_PADDING = 0.2  # dlib's get_face_chip_details default, which the networks were run with

# dlib's 68-point mean face (get_face_chip_details, image_transforms/interpolation.h), unit square,
# for the points YuNet's 5 landmarks correspond to: the two eye rings (36-41, 42-47), whose mean is
# the eye centre, the nose tip (30) and the mouth corners (48, 54).
_DLIB_IMAGE_LEFT_EYE = np.array(
    [[0.121737, 0.216423], [0.187122, 0.178758], [0.265825, 0.179852],
     [0.334606, 0.231733], [0.260918, 0.245099], [0.182743, 0.244077]]
)  # fmt: skip
_DLIB_IMAGE_RIGHT_EYE = np.array(
    [[0.645647, 0.231733], [0.714428, 0.179852], [0.793132, 0.178758],
     [0.858516, 0.216423], [0.79751, 0.244077], [0.719335, 0.245099]]
)  # fmt: skip
DLIB_MEAN_FACE_5 = np.array(
    [
        _DLIB_IMAGE_LEFT_EYE.mean(0),
        _DLIB_IMAGE_RIGHT_EYE.mean(0),
        [0.490127, 0.515625],
        [0.254149, 0.780233],
        [0.726104, 0.780233],
    ]
)
"""YuNet's 5 points (`g2face.align` order) on dlib's mean face, in unit face coordinates."""


def ffhq_to_dlib_chip(in_size: int, chip_size: int, padding: float = DLIB_CHIP_PADDING) -> FixedCrop:
    """FFHQ-framed crop -> the chip dlib's `extract_image_chip(get_face_chip_details(shape, size,
    padding))` cuts for the same face: the mean face scaled into the padded chip. dlib's chip pixels
    have their centres at integer coordinates, so unit u sits at pixel u * size."""
    chip_points = (DLIB_MEAN_FACE_5 + padding) / (1 + 2 * padding) * chip_size
    return FixedCrop(estimate_similarity(template_points(in_size), chip_points), in_size, chip_size)


class DlibNormalise(nn.Module):
    """dlib's `input_rgb_image` normalisation of RGB chips in 0..255: (x - channel mean) / 256."""

    def __init__(self):
        super().__init__()
        self.register_buffer("means", torch.tensor(DLIB_CHANNEL_MEANS).view(1, 3, 1, 1), persistent=False)

    def forward(self, chips_0_255: Tensor) -> Tensor:
        return (chips_0_255 - self.means) / 256


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
