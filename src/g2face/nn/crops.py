"""Conversion between image crops (RGB uint8 [B, S, S, 3]) and model tensors ([B, 3, S, S] in [-1, 1])."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def crops_to_tensor(
    crops: Sequence[np.ndarray] | np.ndarray,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """uint8 HWC crops -> float [B, 3, S, S] in [-1, 1] on `device`."""
    batch = torch.from_numpy(
        np.ascontiguousarray(np.stack(list(crops)) if not isinstance(crops, np.ndarray) else crops)
    )
    if batch.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
        raise ValueError(f"expected uint8 crops [B, S, S, 3], got {batch.dtype} {tuple(batch.shape)}")
    return batch.to(device).permute(0, 3, 1, 2).to(dtype) / 127.5 - 1


def tensor_to_crops(images: Tensor) -> np.ndarray:
    """float [B, 3, S, S] in [-1, 1] -> uint8 [B, S, S, 3] on the CPU (values outside are clipped)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected [B, 3, S, S], got {tuple(images.shape)}")
    scaled = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round()
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()


def at_source_resolution(images: Tensor, widths: Sequence[float | None] | None) -> Tensor:
    """Crops [B, 3, S, S] as they look once pasted back into a photo where each spans `widths[i]`
    pixels across (`align.crop_source_width`): area-averaged down to that width and bilinearly
    back up to S. A crop taken from a small face was upsampled, so the fine detail a render adds
    is lost again when it is pasted back; a recogniser judging the crop at S sees differences
    the published photo no longer has. Widths of S or more (or None) leave a crop unchanged.
    Differentiable."""
    if widths is None:
        return images
    size = images.shape[-1]
    out = list(images.unbind(0))
    for i, width in enumerate(widths):
        if width is None or round(width) >= size:
            continue
        small = torch.nn.functional.adaptive_avg_pool2d(images[i : i + 1], max(1, round(width)))
        out[i] = torch.nn.functional.interpolate(
            small, size=(size, size), mode="bilinear", align_corners=False
        )[0]
    return torch.stack(out)
