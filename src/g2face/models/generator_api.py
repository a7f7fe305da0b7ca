"""What G2Face needs from a generative prior, and how its style groups map onto the prior.

The interface itself (`GenerativePrior`, `FuseHook`) lives in `g2face.priors.base` so that prior
backends (a layer below the models) implement it without importing the models. Contract, as
`G2FaceNet` relies on it:

* `n_styles`, `style_dim`: W+ has shape [B, n_styles, style_dim].
* `feature_channels()`: {resolution: channels} of every feature map passed to the fuse hook; those
  up to `output_resolution` must halve contiguously from it down (E_face mirrors them); feature
  maps above the output resolution (a prior that renders larger, then downsamples) pass unfused.
* `style_resolutions()`: for each style index, the resolution of the first layer it drives, in
  non-decreasing order (GIE assigns w_low / w_mid / w_high by these).
* `generator(wplus, fuse)`: calls `fuse(resolution, features)` exactly once per resolution at the
  backend's fusion point and continues with the returned map (same shape).

StyleGAN2 (rosinality): fusion on the constant input at 4 px, and at every higher resolution right
after the upsampling modulated conv, before the second conv of that resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

from g2face.priors.base import FuseHook, GenerativePrior

__all__ = ["FuseHook", "GenerativePrior", "style_group_sizes"]


def style_group_sizes(style_resolutions: Sequence[int], low_max: int, mid_max: int) -> tuple[int, int, int]:
    """Numbers of style inputs taking w_low (resolution <= low_max), w_mid (<= mid_max), w_high."""
    if list(style_resolutions) != sorted(style_resolutions):
        raise ValueError(f"style resolutions must be non-decreasing, got {list(style_resolutions)}")
    low = sum(r <= low_max for r in style_resolutions)
    mid = sum(low_max < r <= mid_max for r in style_resolutions)
    return low, mid, len(style_resolutions) - low - mid
