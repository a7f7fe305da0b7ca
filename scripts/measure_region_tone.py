"""Tone of the fused fake against the original per face region (docs/measurements.md, "Session
14"): trimmed-mean L*a*b* of the cheeks (as the ITA is read), forehead, nose and chin of the fake
minus the original's, each read on its own face's mesh. Is the fake lighter beyond the cheeks?

    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/measure_region_tone.py --data ../shared/data \\
        --faces 20 --out runs/region_tone.json

`--faces` photos from LFW (each person's first) and as many from CelebA, seeded order; faces the
model filters (turned too far) and greyscale regions are left out.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import cv2
import numpy as np
import torch

from g2face.align import align_face
from g2face.io import read_image
from g2face.nn.crops import crops_to_tensor
from g2face.payload import Secret
from g2face.pipeline.g2face import G2FacePipeline
from g2face.priors.skin_tone import CHEEK_POLYGONS, ita_degrees, trimmed_lab_mean

REGIONS = {
    "cheeks": CHEEK_POLYGONS,
    # MediaPipe face-mesh indices around each region (drawn and checked on a fixture)
    "forehead": ((9, 107, 66, 105, 104, 69, 108, 151, 337, 299, 333, 334, 296, 336),),
    "nose": (
        (
            168,
            417,
            465,
            357,
            343,
            437,
            420,
            279,
            358,
            327,
            326,
            2,
            97,
            98,
            129,
            49,
            198,
            217,
            114,
            128,
            245,
            193,
        ),
    ),
    "chin": ((18, 313, 406, 335, 424, 262, 369, 396, 175, 171, 140, 32, 204, 106, 182, 83),),
}


def region_lab(crop: np.ndarray, points: np.ndarray, polygons) -> np.ndarray | None:
    mask = np.zeros(crop.shape[:2], np.uint8)
    for polygon in polygons:
        cv2.fillPoly(mask, [np.round(points[list(polygon)] * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    lab = cv2.cvtColor(crop.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[mask.astype(bool)]
    return trimmed_lab_mean(lab) if len(lab) > 20 else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--faces", type=int, default=20, help="per dataset")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    pipeline = G2FacePipeline.from_pretrained("g2face-lite")
    model, secret = pipeline.model, Secret(bytes(32), "key")
    people = sorted((args.data / "lfw" / "lfw-deepfunneled").iterdir())
    random.Random(5).shuffle(people)
    celeba = sorted((args.data / "celeba" / "images").glob("*.jpg"))
    random.Random(5).shuffle(celeba)
    files = [sorted(d.glob("*.jpg"))[0] for d in people[: args.faces]] + celeba[: args.faces]
    rows = []
    for i, path in enumerate(files):
        image = read_image(path).rgb
        faces = pipeline.detector.detect(image)
        if not faces:
            continue
        face = max(faces, key=lambda d: d.width)
        anonymized = pipeline.anonymize(image, secret, detections=[face], seed=1000 + i)
        if anonymized.faces[0].fallback_reason:
            continue
        crops = [align_face(image, face, 256).crop, align_face(anonymized.image, face, 256).crop]
        points = (model.geometry(crops_to_tensor(crops)).landmarks[..., :2] * 256 - 0.5).numpy()
        row = {"file": path.name}
        for name, polygons in REGIONS.items():
            original = region_lab(crops[0], points[0], polygons)
            fake = region_lab(crops[1], points[1], polygons)
            if original is None or fake is None or np.hypot(original[1], original[2]) < 1:
                continue  # hidden, or a greyscale photo
            row[name] = {
                "dL": float(fake[0] - original[0]),
                "db": float(fake[2] - original[2]),
                "dITA": ita_degrees(fake[0], fake[2]) - ita_degrees(original[0], original[2]),
            }
        rows.append(row)
    summary = {}
    for name in REGIONS:
        values = [r[name] for r in rows if name in r]
        summary[name] = {
            "n": len(values),
            **{f"mean_{k}": round(float(np.mean([v[k] for v in values])), 2) for k in ("dL", "db", "dITA")},
            **{
                f"mean_abs_{k}": round(float(np.mean([abs(v[k]) for v in values])), 2) for k in ("dL", "dITA")
            },
        }
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"summary": summary, "faces": rows}, indent=1))


if __name__ == "__main__":
    main()
