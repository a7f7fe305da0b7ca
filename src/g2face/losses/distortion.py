"""Distortions between the anonymized image and the payload extractor E_p.

The reference implementation read its payload from the float tensor with N(0, 0.01²) noise only,
so it broke on the first PNG/JPEG save. Here every training image passes through what a real file
goes through: one random distortion per batch (noise, resize, shift, border crop, JPEG), always
followed by clamping and 8-bit quantisation. All of it is differentiable (straight-through where
the true operation is a step function) so the generator learns to write a payload that survives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Quantisation tables of the JPEG standard (ITU T.81 Annex K), row-major, quality 50.
_LUMA_TABLE = [
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99],
]
_CHROMA_TABLE = [
    [17, 18, 24, 47, 99, 99, 99, 99],
    [18, 21, 26, 66, 99, 99, 99, 99],
    [24, 26, 56, 99, 99, 99, 99, 99],
    [47, 66, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
]
# JFIF full-range RGB <-> YCbCr (chroma offset 128 added separately).
_RGB_TO_YCBCR = [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]


def round_ste(x: Tensor) -> Tensor:
    """Exact rounding forward, identity gradient backward (straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


def round_cubic(x: Tensor) -> Tensor:
    """Shin & Song (2017) smooth rounding: round(x) + (x - round(x))³; close to rounding forward,
    a small non-zero gradient backward."""
    r = torch.round(x).detach()
    return r + (x - r) ** 3


def clamp_ste(x: Tensor, low: float, high: float) -> Tensor:
    """Clamp forward, identity gradient backward, so saturated pixels still pass a signal."""
    return x + (x.clamp(low, high) - x).detach()


def quantize_8bit(images: Tensor) -> Tensor:
    """Clamp to [-1, 1] and round to the 256 levels an 8-bit file can hold (straight-through)."""
    levels = (clamp_ste(images, -1.0, 1.0) + 1) * 127.5
    return round_ste(levels) / 127.5 - 1


def quality_scaled_table(base: Tensor, quality: Tensor) -> Tensor:
    """IJG/libjpeg quality scaling of a base table, clamped to baseline [1, 255]: [B] -> [B, 8, 8]."""
    q = quality.to(base.dtype).clamp(1, 100)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q)
    return torch.floor((base * scale[:, None, None] + 50) / 100).clamp(1, 255)


def _dct_matrix(dtype: torch.dtype) -> Tensor:
    """Orthonormal 8-point DCT-II; the 2-D transform D·X·Dᵀ equals JPEG's FDCT definition."""
    k = torch.arange(8, dtype=torch.float64)[:, None]
    n = torch.arange(8, dtype=torch.float64)[None, :]
    d = torch.cos((2 * n + 1) * k * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.to(dtype)


class DifferentiableJPEG(nn.Module):
    """JPEG compression and decompression as libjpeg (Pillow) does it, differentiable.

    RGB -> YCbCr, 4:2:0 chroma subsampling (2×2 box), 8×8 DCT, division by the quality-scaled
    standard tables, rounding (`round_ste` by default, or `round_cubic`), dequantisation, inverse
    DCT, chroma upsampling (bilinear = libjpeg's "fancy" triangle filter), YCbCr -> RGB and 8-bit
    output. Images are [B, 3, H, W] in [-1, 1]; quality is an int or a [B] tensor (per image).
    """

    def __init__(self, rounding: str = "ste") -> None:
        super().__init__()
        if rounding not in ("ste", "cubic"):
            raise ValueError(f"rounding must be 'ste' or 'cubic', not {rounding!r}")
        self.round = round_ste if rounding == "ste" else round_cubic
        to_ycbcr = torch.tensor(_RGB_TO_YCBCR)
        self.register_buffer("luma_table", torch.tensor(_LUMA_TABLE, dtype=torch.float32), persistent=False)
        self.register_buffer(
            "chroma_table", torch.tensor(_CHROMA_TABLE, dtype=torch.float32), persistent=False
        )
        self.register_buffer("dct", _dct_matrix(torch.float32), persistent=False)
        self.register_buffer("to_ycbcr", to_ycbcr, persistent=False)
        self.register_buffer("to_rgb", torch.linalg.inv(to_ycbcr), persistent=False)

    def _code_plane(self, plane: Tensor, table: Tensor) -> Tensor:
        """[B, h, w] level-shifted plane (h, w multiples of 8), table [B, 8, 8] -> decoded plane."""
        b, h, w = plane.shape
        blocks = plane.reshape(b, h // 8, 8, w // 8, 8).transpose(2, 3)  # [B, h/8, w/8, 8, 8]
        coeffs = self.dct @ blocks @ self.dct.T
        table = table[:, None, None]
        coeffs = self.round(coeffs / table) * table
        blocks = self.dct.T @ coeffs @ self.dct
        return blocks.transpose(2, 3).reshape(b, h, w)

    def forward(self, images: Tensor, quality: int | Tensor) -> Tensor:
        b, _, h, w = images.shape
        quality = torch.as_tensor(quality, device=images.device).expand(b)
        rgb = (quantize_8bit(images) + 1) * 127.5
        # 4:2:0 needs whole 16×16 macroblocks; libjpeg replicates the edge to fill them.
        pad_h, pad_w = -h % 16, -w % 16
        rgb = F.pad(rgb, (0, pad_w, 0, pad_h), mode="replicate")
        ycc = torch.einsum("ij,bjhw->bihw", self.to_ycbcr, rgb)
        luma = ycc[:, 0] - 128  # chroma is already centred on 0, i.e. level-shifted
        chroma = F.avg_pool2d(ycc[:, 1:], 2)
        luma = self._code_plane(luma, quality_scaled_table(self.luma_table, quality))
        ctable = quality_scaled_table(self.chroma_table, quality)
        cb, cr = (self._code_plane(chroma[:, i], ctable) for i in range(2))
        chroma = F.interpolate(torch.stack([cb, cr], 1), scale_factor=2, mode="bilinear", align_corners=False)
        ycc = torch.cat([luma[:, None] + 128, chroma], 1)
        rgb = torch.einsum("ij,bjhw->bihw", self.to_rgb, ycc)[:, :, :h, :w]
        return quantize_8bit(rgb / 127.5 - 1)


@dataclass(frozen=True)
class DistortionConfig:
    """Which distortions training applies, how often (relative weights), and how strong."""

    weights: dict[str, float] = field(
        default_factory=lambda: {
            "none": 1.0,
            "noise": 1.0,
            "resize": 1.0,
            "shift": 1.0,
            "crop": 1.0,
            "jpeg": 2.0,
        }
    )
    noise_std: tuple[float, float] = (0.0, 0.04)  # in [-1, 1] units (0.04 ≈ 5 grey levels)
    resize_scale: tuple[float, float] = (0.5, 0.9)  # downscale factor before scaling back up
    max_shift: float = 0.03  # fraction of the side; borders are filled by edge replication
    max_crop: float = 0.06  # fraction of the side cut from each border (and filled with black)
    jpeg_quality: tuple[int, int] = (75, 95)
    jpeg_rounding: str = "ste"


KINDS = ("none", "noise", "resize", "shift", "crop", "jpeg")


class Distortion(nn.Module):
    """One random distortion per batch, then 8-bit quantisation; `kind` forces a particular one."""

    def __init__(self, config: DistortionConfig | None = None) -> None:
        super().__init__()
        self.config = config or DistortionConfig()
        unknown = set(self.config.weights) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown distortions {sorted(unknown)}; known: {KINDS}")
        self.kinds = [k for k, p in self.config.weights.items() if p > 0]
        self.register_buffer(
            "probabilities", torch.tensor([self.config.weights[k] for k in self.kinds]), persistent=False
        )
        self.jpeg = DifferentiableJPEG(self.config.jpeg_rounding)

    def sample_kind(self) -> str:
        return self.kinds[int(torch.multinomial(self.probabilities.cpu(), 1))]

    def forward(self, images: Tensor, kind: str | None = None) -> Tensor:
        kind = kind or self.sample_kind()
        return quantize_8bit(getattr(self, f"_{kind}")(images))

    @staticmethod
    def _uniform(low: float, high: float, n: int = 1, device: torch.device | None = None) -> Tensor:
        return torch.rand(n).mul(high - low).add(low).to(device)

    def _none(self, x: Tensor) -> Tensor:
        return x

    def _noise(self, x: Tensor) -> Tensor:
        std = self._uniform(*self.config.noise_std, n=len(x), device=x.device).to(x.dtype)
        return x + torch.randn_like(x) * std[:, None, None, None]

    def _resize(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        s = float(self._uniform(*self.config.resize_scale))
        small = F.interpolate(
            x,
            size=(max(1, round(h * s)), max(1, round(w * s))),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)

    def _shift(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        m = max(1, round(self.config.max_shift * min(h, w)))
        dy, dx = (int(v) for v in torch.randint(0, 2 * m + 1, (2,)))
        return F.pad(x, (m, m, m, m), mode="replicate")[..., dy : dy + h, dx : dx + w]

    def _crop(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        m = max(1, round(self.config.max_crop * min(h, w)))
        top, bottom, left, right = (int(v) for v in torch.randint(0, m + 1, (4,)))
        kept = x[..., top : h - bottom, left : w - right]
        return F.pad(kept, (left, right, top, bottom), value=-1.0)

    def _jpeg(self, x: Tensor) -> Tensor:
        low, high = self.config.jpeg_quality
        quality = torch.randint(low, high + 1, (len(x),))
        return self.jpeg(x, quality)
