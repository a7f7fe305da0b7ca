"""Size and speed of the exact-recovery container on real photos (figures in docs/container-format.md).

Every face YuNet finds is given the footprint the pipeline pastes into (the soft `align.face_mask`
of the aligned crop, warped back into the image, > 0). The stand-in anonymizer pastes the mirrored
crop, a real face texture that compresses like a generated one. Reported per output format (PNG,
JPEG q95, WebP q95 as `write_image` writes them): container bytes against the output without the
container; seal and open times; and, for the choice of region codec, the size of the masked
region pixels under each candidate lossless codec, plus two lossy ones with their PSNR.

    PYTHONPATH=src python scripts/measure_container.py                      # committed fixtures
    PYTHONPATH=src python scripts/measure_container.py --lfw ../shared/data/lfw/lfw-deepfunneled -n 100
"""

from __future__ import annotations

import argparse
import io
import lzma
import time
import zlib
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from g2face.align import (
    DEFAULT_CROP_SIZE,
    AlignedFace,
    align_face,
    face_mask,
    paste_faces,
    transform_points,
    warp_affine,
)
from g2face.detection import YuNetDetector
from g2face.payload import Secret
from g2face.payload.carriers import Region, open_container, restore_regions, seal_regions

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
OUTPUTS = {"PNG": {}, "JPEG q95": {"quality": 95, "subsampling": 0}, "WebP q95": {"quality": 95}}


def paste_footprint(face: AlignedFace, size: int, image_hw: tuple[int, int]) -> tuple[int, int, np.ndarray]:
    """(x0, y0, bool mask) of the pixels `align.paste_faces` may change for this face (same geometry)."""
    weight = face_mask(size)
    rows, cols = np.nonzero(weight)
    support = np.array([[cols.min(), rows.min()], [cols.max(), rows.max()]], dtype=np.float64)
    corners = transform_points(
        np.array([support[0], [support[1, 0], support[0, 1]], [support[0, 0], support[1, 1]], support[1]]),
        face.inverse,
    )
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 1, 0)
    x1 = min(int(np.ceil(corners[:, 0].max())) + 2, image_hw[1])
    y1 = min(int(np.ceil(corners[:, 1].max())) + 2, image_hw[0])
    to_region = face.inverse - np.array([[0, 0, x0], [0, 0, y0]])
    warped = warp_affine(
        weight, to_region, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR, border=cv2.BORDER_CONSTANT
    )
    return int(x0), int(y0), warped > 0


def _pillow(fmt: str, **options) -> Callable[[np.ndarray], bytes]:
    def encode(array: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, fmt, **options)
        return buffer.getvalue()

    return encode


def _lzma_delta(array: np.ndarray) -> bytes:
    filters = [{"id": lzma.FILTER_DELTA, "dist": 3}, {"id": lzma.FILTER_LZMA2, "preset": 9}]
    return lzma.compress(array.tobytes(), format=lzma.FORMAT_RAW, filters=filters)


CHOSEN = "WebP lossless q50 m3 (chosen)"  # what the container uses (container._WEBP_OPTIONS)
LOSSLESS = {
    "zlib -9": lambda a: zlib.compress(a.tobytes(), 9),
    "lzma -9": lambda a: lzma.compress(a.tobytes(), preset=9),
    "lzma delta + -9": _lzma_delta,
    "PNG (Pillow, level 9)": _pillow("PNG", compress_level=9),
    "PNG (OpenCV, level 9)": lambda a: cv2.imencode(".png", a, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes(),
    CHOSEN: _pillow("WEBP", lossless=True, quality=50, method=3, exact=True),
    "WebP lossless q75 m4": _pillow("WEBP", lossless=True, quality=75, method=4, exact=True),
    "WebP lossless q0 m0": _pillow("WEBP", lossless=True, quality=0, method=0, exact=True),
}
LOSSY = {
    "WebP lossy q95": _pillow("WEBP", quality=95),
    "JPEG q95 4:4:4": _pillow("JPEG", quality=95, subsampling=0),
}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, help="LFW folder: measure on its photos instead of the fixtures")
    parser.add_argument("-n", type=int, default=100, help="LFW photos, evenly spaced over the sorted list")
    args = parser.parse_args()
    if args.lfw:
        every = sorted(args.lfw.rglob("*.jpg"))
        paths = [every[i] for i in np.linspace(0, len(every) - 1, args.n).round().astype(int)]
    else:
        paths = sorted(p for p in FIXTURES.iterdir() if p.suffix in (".jpg", ".png"))
    detector = YuNetDetector()
    secret = Secret(bytes(range(32)), "key")  # HKDF: times the container, not the password KDF
    totals: dict[str, float] = defaultdict(float)
    ratios: dict[str, list[float]] = defaultdict(list)
    codec_bytes: dict[str, int] = defaultdict(int)
    codec_seconds: dict[str, float] = defaultdict(float)
    lossy_psnr: dict[str, list[float]] = defaultdict(list)
    raw_bytes = faces_total = 0
    print(
        "| image | size | faces | masked px | container | "
        + " | ".join(f"{k} out / +%" for k in OUTPUTS)
        + " |"
    )
    print("|---|---|---|---|---|" + "---|" * len(OUTPUTS))
    for path in paths:
        original = np.asarray(Image.open(path).convert("RGB"))
        faces = [align_face(original, d, DEFAULT_CROP_SIZE) for d in detector.detect(original)]
        regions = [
            Region.from_image(original, m, x, y)
            for x, y, m in (paste_footprint(f, DEFAULT_CROP_SIZE, original.shape[:2]) for f in faces)
            if m.any()
        ]
        anonymized = paste_faces(original, [f.crop[:, ::-1].copy() for f in faces], faces)
        start = time.perf_counter()
        blob = seal_regions(regions, secret, original.shape)
        totals["seal s"] += time.perf_counter() - start
        start = time.perf_counter()
        restored = restore_regions(anonymized, open_container(blob, secret))
        totals["open s"] += time.perf_counter() - start
        assert np.array_equal(restored, original), path
        masked_px = sum(int(r.mask.sum()) for r in regions)
        cells = []
        for name, options in OUTPUTS.items():
            size = len(_pillow(name.split()[0], **options)(anonymized))
            totals[name] += size
            ratios[name].append(len(blob) / size)
            cells.append(f"{size:,} / {100 * len(blob) / size:.1f}")
        totals["container"] += len(blob)
        faces_total += len(regions)
        print(
            f"| {path.name} | {original.shape[1]}x{original.shape[0]} | {len(regions)} | {masked_px:,} | "
            f"{len(blob):,} | " + " | ".join(cells) + " |"
        )
        for region in regions:
            masked = np.where(region.mask[:, :, None], region.pixels, 0).astype(np.uint8)
            raw_bytes += int(region.mask.sum()) * 3
            for name, encode in (LOSSLESS | LOSSY).items():
                start = time.perf_counter()
                encoded = encode(masked)
                codec_seconds[name] += time.perf_counter() - start
                codec_bytes[name] += len(encoded)
                if name in LOSSY:
                    decoded = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))
                    lossy_psnr[name].append(_psnr(decoded[region.mask], region.pixels[region.mask]))
    n = len(paths)
    print(f"\n{n} images, {faces_total} faces; container total {totals['container']:,.0f} bytes")
    for name in OUTPUTS:
        print(
            f"{name}: container / output = {100 * totals['container'] / totals[name]:.1f} % of all bytes, "
            f"median per image {100 * np.median(ratios[name]):.1f} %, max {100 * max(ratios[name]):.1f} %"
        )
    start = time.perf_counter()
    seal_regions([], Secret.from_password("a password"), (1, 1, 3))
    print(f"one scrypt (password secret): {1000 * (time.perf_counter() - start):.0f} ms")
    print(
        f"seal {1000 * totals['seal s'] / n:.1f} ms/image, open + restore {1000 * totals['open s'] / n:.1f} "
        "ms/image (key file; a password adds one scrypt per image)"
    )
    # what the container would weigh with another region codec: the same masks, headers and tags
    fixed = totals["container"] - codec_bytes[CHOSEN]
    print(f"\nregion codecs over {faces_total} faces ({raw_bytes:,} bytes of masked RGB):")
    columns = " | ".join(f"container +% of {name}" for name in OUTPUTS)
    print(f"| codec | bytes / masked RGB bytes | ms per face | PSNR in mask (dB) | {columns} |")
    print("|---|---|---|---|" + "---|" * len(OUTPUTS))
    for name in sorted(codec_bytes, key=codec_bytes.get):
        psnr = f"{np.mean(lossy_psnr[name]):.1f}" if name in lossy_psnr else "lossless"
        overheads = " | ".join(f"{100 * (fixed + codec_bytes[name]) / totals[o]:.1f}" for o in OUTPUTS)
        print(
            f"| {name} | {codec_bytes[name] / raw_bytes:.3f} | "
            f"{1000 * codec_seconds[name] / faces_total:.1f} | {psnr} | {overheads} |"
        )


if __name__ == "__main__":
    main()
