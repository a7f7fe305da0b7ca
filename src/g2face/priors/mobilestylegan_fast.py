"""A faster CPU forward pass of `SynthesisNetwork` for a pooled output (below the full resolution),
without gradients or fuse hooks: the shipped inference use. Same numbers as the reference modules up
to float rounding (parity-tested against `SynthesisNetwork.forward`, which stays the reference and
the differentiable path).

Why the reference is slow on a CPU: its last block works on 64-channel 512x512 maps (64 MB per image
each), so every elementwise pass and layout change streams through main memory, and PyTorch's NCHW
1x1 and depthwise convolutions reorder those maps to and from oneDNN's blocked layout. Here:
* Feature maps stay channels-last (NHWC): the depthwise 3x3 conv runs on oneDNN's channels-last
  kernel without reorders, and the pointwise conv is one matrix product [pixels, Cin] x [Cin, Cout].
* Modulation is folded into the pointwise weights (scaling a depthwise conv's input channels scales
  its output channels, padding included), so no pass scales the wide maps.
* The IDWT is written as its butterfly (no grouped conv, no pixel shuffle), straight into NHWC.
* The last block and the head run in row bands (`band_rows` output rows plus the 2-row halo of its
  two 3x3 convs; the IDWT has none), so the 512x512 maps never exist, the band's maps stay in cache,
  and each band's LL image is pooled into a preallocated output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from g2face.priors.mobilestylegan import LRELU_SLOPE, StyledConv

if TYPE_CHECKING:
    from g2face.priors.mobilestylegan import SynthesisBlock, SynthesisNetwork

BAND_ROWS = 32
"""Output rows per band (at 512 wide: 4 MB of 64-channel features per image; 16 and 64 timed the same
on 1 thread, 32 was steadier on 2 loaded threads)."""
FAST_FROM_RESOLUTION = 128
"""Blocks below this resolution run the reference modules (see `synthesize_pooled`)."""
BANDED_FROM_RESOLUTION = 256
"""Blocks from this resolution on run in bands (the last one always does)."""


def synthesize_pooled(
    synthesis: SynthesisNetwork,
    wplus: Tensor,
    resolution: int,
    band_rows: int = BAND_ROWS,
    fast_from: int = FAST_FROM_RESOLUTION,
    banded_from: int = BANDED_FROM_RESOLUTION,
) -> Tensor:
    """What `synthesis(wplus, None, resolution)` computes for a `resolution` below the full one
    ([B, 3, R, R]), faster on a CPU. Blocks whose output resolution is below `fast_from` run the
    reference modules, the others NHWC, from `banded_from` on (and the last block always) in bands
    of `band_rows` rows. Call it without autograd (nothing here is meant to be differentiated: the
    reference modules are the differentiable path)."""
    factor = synthesis.pooling_factor(resolution)
    x = synthesis.conv(synthesis.input.expand(wplus.shape[0], -1, -1, -1), wplus[:, 0])
    blocks = list(zip(synthesis.blocks, synthesis.resolutions[1:], strict=True))
    styles = [(wplus[:, 2 * i + 1], wplus[:, 2 * i + 2]) for i in range(len(blocks))]
    # The small early blocks cost little, and their rounding is amplified the most by the blocks
    # after them: the reference modules run them, so the output stays within ~3e-6 of the reference.
    n_reference = min(sum(r < fast_from for _, r in blocks), len(blocks) - 1)
    for (block, _), style in zip(blocks[:n_reference], styles, strict=False):
        x = _reference_block(block, x, *style)
    x = x.permute(0, 2, 3, 1).contiguous()
    for (block, res), style in zip(blocks[n_reference:-1], styles[n_reference:-1], strict=True):
        if res < banded_from:
            x = _block(block, x, *style)
            continue
        features = torch.empty(x.shape[0], res, res, block.conv2.bias.shape[0], dtype=x.dtype)

        def store(top: int, band: Tensor, features: Tensor = features) -> None:
            features[:, top : top + band.shape[1]] = band

        _banded_block(block, x, *style, band_rows, store)
        x = features
    last, size = blocks[-1]
    head = synthesis.to_wavelets
    rows = max(band_rows, factor)
    # the 256 image is avgpool(LL / 2) of the head, which is linear per pixel: pool first, then the
    # 3 LL rows of its 12 outputs, with the 1/2 folded in
    head_weight = 0.5 * head.weight[None, :3] * head.modulation(wplus[:, -1])[:, None, :]  # [B, 3, C]
    head_bias = (0.5 * head.bias[:3])[:, None, None]
    out = torch.empty(x.shape[0], 3, size // factor, size // factor, dtype=x.dtype)

    def to_image(top: int, band: Tensor) -> None:
        batch, height, width, channels = band.shape
        # channels-last pooling (a mean over strided dimensions of the NHWC view is 10x slower)
        pooled = F.avg_pool2d(band.permute(0, 3, 1, 2), factor).permute(0, 2, 3, 1)
        image = torch.bmm(head_weight, pooled.reshape(batch, -1, channels).transpose(1, 2))
        out[:, :, top // factor : (top + height) // factor] = image.view(
            batch, 3, height // factor, width // factor
        ).add_(head_bias)

    _banded_block(last, x, *styles[-1], rows, to_image)
    return out


def _reference_block(block: SynthesisBlock, x: Tensor, style_up: Tensor, style_conv2: Tensor) -> Tensor:
    """`block(x, style_up, style_conv2)` bit for bit, with the IDWT written out instead of run as
    a grouped conv (which PyTorch runs group by group: half the reference's time)."""
    up = haar_idwt_exact(x * block.up.modulation(style_up)[:, :, None, None])
    return block.conv2(block.conv1(up, style_up), style_conv2)


def haar_idwt_exact(coeffs: Tensor) -> Tensor:
    """`haar_idwt` (NCHW) with the same products by +-1/2 summed in the same order, so the same bits."""
    batch, c4, height, width = coeffs.shape
    c = c4 // 4
    low = 0.5 * coeffs[:, :c]
    high = 0.5 * coeffs[:, c:].view(batch, c, 3, height, width)
    plus, minus = low + high[:, :, 0], low - high[:, :, 0]
    out = torch.empty(batch, c, height, 2, width, 2, dtype=coeffs.dtype, device=coeffs.device)
    torch.add(plus + high[:, :, 1], high[:, :, 2], out=out[:, :, :, 0, :, 0])
    torch.sub(plus - high[:, :, 1], high[:, :, 2], out=out[:, :, :, 0, :, 1])
    torch.sub(minus + high[:, :, 1], high[:, :, 2], out=out[:, :, :, 1, :, 0])
    torch.add(minus - high[:, :, 1], high[:, :, 2], out=out[:, :, :, 1, :, 1])
    return out.view(batch, c, 2 * height, 2 * width)


def _block(block: SynthesisBlock, x: Tensor, style_up: Tensor, style_conv2: Tensor) -> Tensor:
    """One synthesis block on a whole NHWC map."""
    conv1, conv2 = block.conv1, block.conv2
    x = _idwt(x * _idwt_scale(block, style_up))
    x = _separable(conv1, x, _pointwise(conv1, style_up), conv1.noise[0, 0, :, :, None])
    return _separable(conv2, x, _pointwise(conv2, style_conv2), conv2.noise[0, 0, :, :, None])


def _banded_block(
    block: SynthesisBlock,
    x: Tensor,
    style_up: Tensor,
    style_conv2: Tensor,
    rows: int,
    consume: Callable[[int, Tensor], None],
) -> None:
    """One synthesis block on an NHWC map, `rows` output rows at a time: `consume(top, band)` gets
    each band of output rows [B, rows, W, C] (valid only during the call)."""
    height_in = x.shape[1]
    size = 2 * height_in
    rows = min(rows, size)
    if rows % 2 or size % rows:
        raise ValueError(f"band rows must be even and divide {size}, got {rows}")
    conv1, conv2 = block.conv1, block.conv2
    up_scale = _idwt_scale(block, style_up)
    pointwise1, pointwise2 = _pointwise(conv1, style_up), _pointwise(conv2, style_conv2)
    noise1, noise2 = conv1.noise[0, 0, :, :, None], conv2.noise[0, 0, :, :, None]
    for top in range(0, size, rows):
        bottom = top + rows
        # conv2 needs conv1's rows top-1..bottom, which need the IDWT's rows top-2..bottom+1; input
        # row i gives IDWT rows 2i and 2i+1. Rows beyond the image are the convs' zero padding.
        first, stop = max(top // 2 - 1, 0), min(bottom // 2 + 1, height_in)
        up = _idwt(x[:, first:stop] * up_scale)
        up = _pad_rows(up, 2 * first - (top - 2), (bottom + 2) - 2 * stop)
        above, below = int(top == 0), int(bottom == size)  # halo rows of conv1 outside the image
        noise = _pad_rows(noise1[top - 1 + above : bottom + 1 - below], above, below)
        hidden = _separable(conv1, up, pointwise1, noise, pad_rows=0)
        if above:
            hidden[:, :above] = 0
        if below:
            hidden[:, hidden.shape[1] - below :] = 0
        consume(top, _separable(conv2, hidden, pointwise2, noise2[top:bottom], pad_rows=0))


def _pad_rows(x: Tensor, above: int, below: int) -> Tensor:
    """Zero rows above and below an NHWC (or [H, W, 1]) map."""
    if not (above or below):
        return x
    return F.pad(x, (0, 0, 0, 0, above, below))


def _idwt_scale(block: SynthesisBlock, style: Tensor) -> Tensor:
    """The upsampling's modulation with the IDWT's 1/2, as an NHWC scale [B, 1, 1, 4C]."""
    return (0.5 * block.up.modulation(style))[:, None, None, :]


def _idwt(coeffs: Tensor) -> Tensor:
    """`haar_idwt` on NHWC maps without its factor 1/2: [B, H, W, 4C] (C low-pass channels, then 3C
    high-pass as c*3 + band) -> [B, 2H, 2W, C]."""
    batch, height, width, c4 = coeffs.shape
    c = c4 // 4
    low = coeffs[..., :c]
    high = coeffs[..., c:].view(batch, height, width, c, 3)
    # butterfly of the 4x4 Haar synthesis matrix (rows: bands, columns: sub-pixels)
    low_plus, low_minus = low + high[..., 0], low - high[..., 0]
    high_plus, high_minus = high[..., 1] + high[..., 2], high[..., 1] - high[..., 2]
    out = torch.empty(batch, height, 2, width, 2, c, dtype=coeffs.dtype, device=coeffs.device)
    torch.add(low_plus, high_plus, out=out[:, :, 0, :, 0])
    torch.sub(low_plus, high_plus, out=out[:, :, 0, :, 1])
    torch.add(low_minus, high_minus, out=out[:, :, 1, :, 0])
    torch.sub(low_minus, high_minus, out=out[:, :, 1, :, 1])
    return out.view(batch, 2 * height, 2 * width, c)


def _pointwise(conv: StyledConv, style: Tensor) -> Tensor:
    """The pointwise weight with the input modulation folded in, [B, Cin, Cout]."""
    return (conv.weight_pw[None, :, :, 0, 0] * conv.modulation(style)[:, None, :]).transpose(1, 2)


def _separable(conv: StyledConv, x: Tensor, pointwise: Tensor, noise: Tensor, pad_rows: int = 1) -> Tensor:
    """Depthwise 3x3, pointwise (modulation folded in), bias, noise, leaky ReLU on an NHWC map.
    `pad_rows=0`: the map carries its own halo rows (the output has 2 rows fewer)."""
    batch, _, width, channels = x.shape
    depthwise = F.conv2d(x.permute(0, 3, 1, 2), conv.weight_dw, padding=(pad_rows, 1), groups=channels)
    height = depthwise.shape[2]
    depthwise = depthwise.permute(0, 2, 3, 1).reshape(batch, height * width, channels)
    y = torch.bmm(depthwise, pointwise).view(batch, height, width, -1)
    return F.leaky_relu_(y.add_(conv.bias).add_(noise), LRELU_SLOPE)
