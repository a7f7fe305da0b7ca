"""StyleGAN2 synthesis network in the rosinality checkpoint layout (`input`, `conv1`, `to_rgb1`,
`convs.*`, `to_rgbs.*`), driven by W+ and exposing G2Face's per-resolution fusion hook.

Style index → layer (n_styles = 2·log2(size) − 2): style 0 drives `conv1` (4 px); style 2k+1 drives
the ToRGB of level k and the upsampling conv into level k+1; style 2k+2 the second conv of level
k+1; the last style only the final ToRGB.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from g2face.models.config import StyleGAN2Config
from g2face.models.generator_api import FuseHook
from g2face.nn import ConstantInput, StyledConv, ToRGB


class StyleGAN2Synthesis(nn.Module):
    name = "stylegan2"

    def __init__(self, config: StyleGAN2Config):
        super().__init__()
        self.config = config
        self.n_styles = config.n_styles
        self.style_dim = config.style_dim
        self.output_resolution = config.size
        ch, dim, taps = config.channels, config.style_dim, config.blur_taps
        self.input = ConstantInput(ch[0])
        self.conv1 = StyledConv(ch[0], ch[0], 3, dim, blur_taps=taps)
        self.to_rgb1 = ToRGB(ch[0], dim, upsample=False, blur_taps=taps)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for c_in, c_out in zip(ch[:-1], ch[1:], strict=True):
            self.convs.append(StyledConv(c_in, c_out, 3, dim, upsample=True, blur_taps=taps))
            self.convs.append(StyledConv(c_out, c_out, 3, dim, blur_taps=taps))
            self.to_rgbs.append(ToRGB(c_out, dim, blur_taps=taps))

    def feature_channels(self) -> dict[int, int]:
        return dict(zip(self.config.resolutions, self.config.channels, strict=True))

    def style_resolutions(self) -> list[int]:
        return [4 * 2 ** (i // 2) for i in range(self.n_styles)]

    def make_noise(
        self, batch: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> list[Tensor]:
        """One Gaussian noise map per styled conv, drawn from `generator` (for reproducible output)."""
        device = device or self.input.input.device
        sizes = [4] + [r for r in self.config.resolutions[1:] for _ in range(2)]
        return [torch.randn(batch, 1, s, s, generator=generator, device=device) for s in sizes]

    def forward(
        self, wplus: Tensor, fuse: FuseHook | None = None, noise: Sequence[Tensor | None] | None = None
    ) -> Tensor:
        """W+ [B, n_styles, style_dim] → RGB [B, 3, size, size]. `noise`: per-conv maps (see
        `make_noise`), None entries or None for fresh noise from the global RNG."""
        if wplus.ndim != 3 or wplus.shape[1:] != (self.n_styles, self.style_dim):
            raise ValueError(f"expected W+ [B, {self.n_styles}, {self.style_dim}], got {tuple(wplus.shape)}")
        noise = list(noise) if noise is not None else [None] * (1 + len(self.convs))
        fuse = fuse or (lambda _res, feat: feat)
        out = fuse(4, self.input(wplus.shape[0]))
        out = self.conv1(out, wplus[:, 0], noise[0])
        skip = self.to_rgb1(out, wplus[:, 1])
        for k, (resolution, to_rgb) in enumerate(zip(self.config.resolutions[1:], self.to_rgbs, strict=True)):
            i = 2 * k + 1
            out = self.convs[2 * k](out, wplus[:, i], noise[i])
            out = fuse(resolution, out)
            out = self.convs[2 * k + 1](out, wplus[:, i + 1], noise[i + 1])
            skip = to_rgb(out, wplus[:, i + 2], skip)
        return skip
