"""Candidate region codecs for the exact-recovery container, on the pipeline's own outputs (the cache
written by `scripts/measure_carriers.py anonymize`): lossless (WebP, JPEG XL, JPEG-LS), bounded error
(JPEG-LS near-lossless; each channel quantised to a step, then WebP lossless), lossy, and the
original stored as its difference to the anonymized output. Needs `pip install imagecodecs` (not a
g2face dependency). Overheads: the container as sealed, with its WebP regions swapped for each codec.

    PYTHONPATH=src python scripts/measure_container_codecs.py runs/carrier_cache
"""

from __future__ import annotations

import io
import sys
import time
from collections import defaultdict
from pathlib import Path

import imagecodecs
import numpy as np
from PIL import Image

from g2face.payload.carriers import Region


def pillow(fmt: str, **options):
    def encode(array: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, fmt, **options)
        return buffer.getvalue()

    return encode


def pillow_decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


WEBP_LOSSLESS = pillow("WEBP", lossless=True, quality=50, method=3, exact=True)


def quantised(step: int):
    """Each channel to the nearest multiple of `step` (error <= step // 2), then WebP lossless."""
    return (
        lambda a: WEBP_LOSSLESS(np.rint(a / step).astype(np.uint8)),
        lambda d: np.clip(pillow_decode(d).astype(int) * step, 0, 255).astype(np.uint8),
    )


CHOSEN = "WebP lossless q50 m3 (version 1)"
CODECS = {
    CHOSEN: (WEBP_LOSSLESS, pillow_decode),
    "JPEG XL lossless e7": (
        lambda a: imagecodecs.jpegxl_encode(a, lossless=True, effort=7),
        imagecodecs.jpegxl_decode,
    ),
    "JPEG-LS lossless": (imagecodecs.jpegls_encode, imagecodecs.jpegls_decode),
    **{
        f"JPEG-LS near {n}": (lambda a, n=n: imagecodecs.jpegls_encode(a, level=n), imagecodecs.jpegls_decode)
        for n in (1, 2, 3)
    },
    **{f"quantise {s} + WebP lossless": quantised(s) for s in (3, 5, 7)},
    "JPEG XL d0.5 e7": (
        lambda a: imagecodecs.jpegxl_encode(a, distance=0.5, effort=7),
        imagecodecs.jpegxl_decode,
    ),
    "WebP q95": (pillow("WEBP", quality=95), pillow_decode),
    "JPEG q95 4:4:4": (pillow("JPEG", quality=95, subsampling=0), pillow_decode),
}
OUTPUTS = {
    "PNG": pillow("PNG"),
    "JPEG q95": pillow("JPEG", quality=95, subsampling=0),
    "WebP q95": pillow("WEBP", quality=95),
}


def main() -> None:
    files = sorted(Path(sys.argv[1]).glob("*.npz"))
    sizes, seconds, max_error, psnr = (
        defaultdict(int),
        defaultdict(float),
        defaultdict(int),
        defaultdict(list),
    )
    outputs, container, difference, faces = defaultdict(int), 0, 0, 0
    for path in files:
        z = np.load(path)
        original, output = z["original"], z["output"]
        container += len(z["container"])
        for name, encode in OUTPUTS.items():
            outputs[name] += len(encode(output))
        for i in range(int(z["n_faces"])):
            x0, y0 = (int(v) for v in z[f"face{i}.footprint"])
            region = Region.from_image(original, z[f"face{i}.footprint_mask"], x0, y0)
            mask, faces = region.mask, faces + 1
            masked = np.where(mask[..., None], region.pixels, 0).astype(np.uint8)
            for name, (encode, decode) in CODECS.items():
                start = time.perf_counter()
                data = encode(masked)
                seconds[name] += time.perf_counter() - start
                sizes[name] += len(data)
                error = np.abs(decode(data).astype(int) - masked)[mask]
                max_error[name] = max(max_error[name], int(error.max()))
                mse = float((error.astype(float) ** 2).mean())
                psnr[name].append(float("inf") if mse == 0 else 10 * np.log10(255**2 / mse))
            x1, y1 = region.box[2:]
            delta = (region.pixels.astype(int) - output[region.y0 : y1, region.x0 : x1]) % 256
            difference += len(WEBP_LOSSLESS(np.where(mask[..., None], delta, 0).astype(np.uint8)))
    print(f"{len(files)} images, {faces} faces; container {container:,} bytes")
    print(
        "| codec | bytes / version 1 | ms per face | max error | PSNR in mask (dB) | "
        + " | ".join(f"container +% of {o}" for o in OUTPUTS)
        + " |"
    )
    print("|---|---|---|---|---|" + "---|" * len(OUTPUTS))
    for name in CODECS:
        estimate = container - sizes[CHOSEN] + sizes[name]
        overheads = " | ".join(f"{100 * estimate / outputs[o]:.1f}" for o in OUTPUTS)
        print(
            f"| {name} | {sizes[name] / sizes[CHOSEN]:.3f} | {1000 * seconds[name] / faces:.1f} | "
            f"{max_error[name]} | {np.mean(psnr[name]):.1f} | {overheads} |"
        )
    print(
        f"difference to the anonymized output, WebP lossless: {difference / sizes[CHOSEN]:.3f} of version 1"
    )


if __name__ == "__main__":
    main()
