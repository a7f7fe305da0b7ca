"""Measure the ways of getting a 256x256 image out of MobileStyleGAN-1024: quality and CPU time.

Paths compared (reference = the shipped 1024 image, area-downsampled 4x):
  full     run everything, IDWT to 1024, area-downsample to 256
  exact    the library's 256 output: LL rows of the to-image head at 512, pooled 2x (same image)
  early    stop after the 256x256 block; the shipped IR has no head there (the intermediate to-image
           heads were pruned), so fit the best linear 1x1 head by least squares on held-out seeds

Writes image grids to docs/images/ and prints the tables for docs/generator.md.
Run: python scripts/mobilestylegan_quality.py [--threads 1 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from g2face.priors.mobilestylegan import MobileStyleGAN, load_mobilestylegan

PSI = 0.7
FIT_SEEDS = (1000, 1001, 1002)  # 2 images each
EVAL_SEED = 7


def features_at_256(model: MobileStyleGAN, wplus: torch.Tensor) -> torch.Tensor:
    syn = model.synthesis
    x = syn.conv(syn.input.expand(wplus.shape[0], -1, -1, -1), wplus[:, 0])
    for i, block in enumerate(syn.blocks[:-1]):
        x = block(x, wplus[:, 2 * i + 1], wplus[:, 2 * i + 2])
    return x


def with_bias(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones_like(x[:, :1])], dim=1).permute(0, 2, 3, 1)


def render(model: MobileStyleGAN, wplus: torch.Tensor, resolution: int) -> torch.Tensor:
    model.output_resolution = resolution
    return model(wplus)


@torch.no_grad()
def fit_early_head(model: MobileStyleGAN) -> torch.Tensor:
    """Least-squares 1x1 head: 256-res features (+1) -> the exact 256 image."""
    gram, cross = 0.0, 0.0
    for seed in FIT_SEEDS:
        wplus = model.sample_wplus(2, seed, PSI)
        x = with_bias(features_at_256(model, wplus)).reshape(-1, model.feature_channels()[256] + 1).double()
        y = render(model, wplus, 256).permute(0, 2, 3, 1).reshape(-1, 3).double()
        gram, cross = gram + x.T @ x, cross + x.T @ y
    ridge = 1e-4 * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=gram.dtype)
    return torch.linalg.solve(gram + ridge, cross).float()


def early(model: MobileStyleGAN, wplus: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    return (with_bias(features_at_256(model, wplus)) @ head).permute(0, 3, 1, 2)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(4.0 / (a - b).square().mean(dim=(1, 2, 3)))  # images span [-1, 1]


def timings(paths: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """(min, median) seconds per path, measured in interleaved rounds so that load from other
    processes on a shared machine hits every path alike; the min is the best uncontended estimate."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for fn in paths.values():
        fn()
    for _ in range(repeats):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: (min(t), statistics.median(t)) for name, t in times.items()}


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def save_grid(rows: list[torch.Tensor], path: Path, tile: int) -> None:
    tiles = [to_uint8(F.interpolate(r, size=tile, mode="area")) for r in rows]
    grid = np.concatenate([np.concatenate(list(row), axis=1) for row in tiles], axis=0)
    Image.fromarray(grid).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-eval", type=int, default=8)
    parser.add_argument("--images", type=Path, default=Path("docs/images"))
    args = parser.parse_args()
    args.images.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(args.threads))
    model = load_mobilestylegan(1024)

    with torch.no_grad():
        head = fit_early_head(model)
        wplus = model.sample_wplus(args.n_eval, EVAL_SEED, PSI)
        reference = torch.cat([F.avg_pool2d(render(model, w[None], 1024), 4) for w in wplus])
        exact = torch.cat([render(model, w[None], 256) for w in wplus])
        approx = torch.cat([early(model, w[None], head) for w in wplus])
    print(f"\n{args.n_eval} images, psi {PSI}, against the 1024 output area-downsampled to 256:")
    print("| path | max abs error | PSNR dB (mean, min) |\n|---|---|---|")
    for name, images in (("exact", exact), ("early + fitted head", approx)):
        p = psnr(images, reference)
        err = (images - reference).abs().max()
        print(f"| {name} | {err:.2g} | {p.mean():.1f}, {p.min():.1f} |")

    # Native 256 pixels: the central 128x128 (eyes to chin) of three faces; |difference| x 4 below.
    crop = (slice(None), slice(None), slice(80, 208), slice(64, 192))
    save_grid(
        [exact[:3][crop], approx[:3][crop], (4 * (approx[:3] - exact[:3])[crop]).abs() - 1],
        args.images / "mobilestylegan_early_stop.png",
        tile=128,
    )
    with torch.no_grad():
        rows = [
            torch.cat([render(model, w[None], 256) for w in model.sample_wplus(6, 11, psi)])
            for psi in (0.5, 0.7, 1.0)
        ]
    save_grid(rows, args.images / "mobilestylegan_samples.png", tile=96)

    w1 = model.sample_wplus(1, 3, PSI)

    def forward(resolution: int):
        with torch.no_grad():
            out = render(model, w1, resolution)
            return F.avg_pool2d(out, 4) if resolution == 1024 else out

    def backward(resolution: int):
        w = w1.clone().requires_grad_(True)
        out = render(model, w, resolution)
        (F.avg_pool2d(out, 4) if resolution == 1024 else out).mean().backward()

    paths = {
        "full 1024 + area, forward": lambda: forward(1024),
        "exact 256, forward": lambda: forward(256),
        "early + fitted head, forward": lambda: early(model, w1, head),
        "full 1024 + area, forward+backward": lambda: backward(1024),
        "exact 256, forward+backward": lambda: backward(256),
    }
    print(f"\nload average before timing: {os.getloadavg()[0]:.1f}")
    print("| path | threads | s/image (min) | s/image (median) |\n|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, (best, median) in timings(paths, args.repeats).items():
            print(f"| {name} | {threads} | {best:.2f} | {median:.2f} |")


if __name__ == "__main__":
    main()
