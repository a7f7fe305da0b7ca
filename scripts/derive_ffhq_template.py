"""Derive g2face.align.FFHQ_TEMPLATE from FFHQ-aligned samples and measure how well it frames them.

The samples (../shared/data/ffhq_samples: 256 px FFHQ-aligned PNGs + 68-point landmarks) are
already in the framing the generators expect, so the ideal alignment of each is the identity. We
run YuNet, the detector that feeds the aligner, on every sample and its mirror image (the FFHQ
framing is mirror-symmetric; ten samples alone leave a pose bias, e.g. the nose 4 px off centre)
and average the 5 points in unit crop coordinates. Residuals: the RMS distance of each sample's
points from the template after the best similarity fit, and how far that fit moves the crop's
corners (its framing error), with the template from all samples and leave-one-out. The 68-point
equivalents (eye centres, nose tip, mouth corners) are printed for comparison.

    python scripts/derive_ffhq_template.py [--data ../shared/data/ffhq_samples]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from g2face.align import estimate_similarity, transform_points
from g2face.detection import YuNetDetector

SIZE = 256
CORNERS = np.array([[0, 0], [SIZE, 0], [0, SIZE], [SIZE, SIZE]], dtype=np.float64) - 0.5


def five_from_68(points: np.ndarray) -> np.ndarray:
    """iBUG-68 → (right eye centre, left eye centre, nose tip, mouth right, mouth left)."""
    return np.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])


def mirrored(points: np.ndarray) -> np.ndarray:
    """Landmarks [N, 5, 2] of the horizontally flipped images, in the same subject-frame order."""
    flipped = points.copy()
    flipped[..., 0] = SIZE - 1 - flipped[..., 0]
    return flipped[:, [1, 0, 2, 4, 3]]


def derive(points: np.ndarray) -> np.ndarray:
    """Template in unit crop coordinates from detections [N, 5, 2] on 256 px FFHQ crops."""
    return ((np.concatenate([points, mirrored(points)]) + 0.5) / SIZE).mean(0)


def framing_errors(samples: np.ndarray, template_unit: np.ndarray) -> tuple[float, float, float]:
    """(RMS landmark residual, mean corner shift, worst corner shift) in px at 256."""
    target = template_unit * SIZE - 0.5
    residuals, shifts = [], []
    for pts in samples:
        m = estimate_similarity(pts, target)
        residuals.append(np.sum((transform_points(pts, m) - target) ** 2, axis=1))
        shifts.append(np.linalg.norm(transform_points(CORNERS, m) - CORNERS, axis=1).mean())
    return float(np.sqrt(np.mean(residuals))), float(np.mean(shifts)), float(np.max(shifts))


def main() -> None:
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "ffhq_samples"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default)
    args = parser.parse_args()

    detector = YuNetDetector()
    yunet, ibug = [], []
    for png in sorted(args.data.glob("*.png")):
        faces = detector.detect(np.asarray(Image.open(png).convert("RGB")))
        if len(faces) != 1:
            raise SystemExit(f"{png.name}: expected one face, YuNet found {len(faces)}")
        yunet.append(faces[0].points)
        ibug.append(five_from_68(np.load(png.with_suffix(".npy"))))
    yunet, ibug = np.stack(yunet), np.stack(ibug)
    print(f"{len(yunet)} samples from {args.data}")

    template = derive(yunet)
    print("FFHQ_TEMPLATE (unit crop coordinates; right eye, left eye, nose, mouth right, mouth left):")
    for x, y in template:
        print(f"    [{x:.4f}, {y:.4f}],")
    rms, mean_shift, worst = framing_errors(yunet, template)
    print(
        f"fit to template: landmark RMS {rms:.2f} px, "
        f"corner shift mean {mean_shift:.2f} px, worst {worst:.2f} px"
    )
    loo = [framing_errors(yunet[i : i + 1], derive(np.delete(yunet, i, axis=0))) for i in range(len(yunet))]
    print(
        f"leave-one-out:   landmark RMS {np.sqrt(np.mean([r[0] ** 2 for r in loo])):.2f} px, "
        f"corner shift mean {np.mean([r[1] for r in loo]):.2f} px, worst {np.max([r[2] for r in loo]):.2f} px"
    )
    ibug_template = derive(ibug)
    print("68-point equivalent (eye centres, nose tip 30, mouth corners 48/54), unit coordinates:")
    for x, y in ibug_template:
        print(f"    [{x:.4f}, {y:.4f}],")
    offset = np.linalg.norm(yunet - ibug, axis=2).mean(0)
    print("mean YuNet − 68-point distance per landmark (px):", " ".join(f"{d:.2f}" for d in offset))


if __name__ == "__main__":
    main()
