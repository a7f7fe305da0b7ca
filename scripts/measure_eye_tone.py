"""Eye colour and brow darkness of the fake against the original's (issue 19; docs/measurements.md,
session 24).

Per face, read on each face's own MediaPipe mesh, of the original and of the fake pasted into the
photo, with `FusionSettings.match_iris_tone` and `match_brow_tone` off and on (same keyed dummy,
no search, so only the fusion differs):
* the colour of the visible irises (`models.fusion.iris_masks`, `iris_colour`: the darker half of
  each iris disc), CIE L*a*b*: the colour difference ΔE (CIE76) fake − original, and the share of
  faces whose fake's eyes are lighter than the original's by more than 10 L*;
* how much darker than the skin the brows are (`models.fusion.brow_darkness`, OpenCV's 8-bit L):
  fake − original, and the share of faces whose fake's brows are paler by more than 10.
A sheet of the eyes and brows (original | off | on) for the first faces.

    PYTHONPATH=src python scripts/measure_eye_tone.py --data ../shared/data --faces 30 --out runs/eyes

`--faces` photos from LFW (each person's first, seeded order) and as many from CelebA; faces
turned beyond the generator's range and faces whose irises or brows the mesh cannot see (closed
eyes, small or turned faces, hair over the brows) are left out of that reading.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch
from face_samples import first_photos, fusion_variant_fakes, fusion_variant_pipelines
from PIL import Image

from g2face.models.fusion import (
    BROW_MIN_DARKNESS,
    BROW_MIN_PIXELS,
    IRIS_MIN_PIXELS,
    brow_darkness,
    brow_masks,
    iris_colour,
    iris_masks,
    skin_mask,
)
from g2face.nn.crops import crops_to_tensor
from g2face.pipeline.g2face import G2FacePipeline

LIGHTER = 10.0  # L* (irises) or 8-bit L (brows): "the fake's are lighter"
VARIANTS = {
    "off": {"match_iris_tone": False, "match_brow_tone": False},
    "on": {"match_iris_tone": True, "match_brow_tone": True},
}


def read_eyes(pipeline: G2FacePipeline, crop: np.ndarray) -> dict:
    """`iris`: mean L*a*b* (CIE scale) over the visible irises; `brows`: mean darkness of the
    readable brows below the skin's median lightness; each None where there is none to read."""
    size = crop.shape[0]
    points = (pipeline.model.geometry(crops_to_tensor([crop])).landmarks[0, :, :2] * size - 0.5).numpy()
    lab = cv2.cvtColor(crop.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    irises = [iris for iris, _ in iris_masks(points, size) if iris.sum() >= IRIS_MIN_PIXELS]
    lightness = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32)
    skin = skin_mask(points, crop)
    brows = []
    if skin.any():
        skin_lightness = float(np.median(lightness[skin]))
        for brow in brow_masks(points, size):
            if brow.sum() >= BROW_MIN_PIXELS:
                darkness = brow_darkness(lightness, brow, skin_lightness)
                if darkness >= BROW_MIN_DARKNESS:
                    brows.append(darkness)
    return {
        "iris": np.mean([iris_colour(lab[iris]) for iris in irises], 0).tolist() if irises else None,
        "brows": float(np.mean(brows)) if brows else None,
    }


def eyes_strip(crop: np.ndarray) -> Image.Image:
    return Image.fromarray(crop[60:140, 40:216]).resize((264, 120))


def summary_of(rows: list[dict]) -> dict:
    out = {}
    for part, index in (("iris", 0), ("brows", None)):
        read = [r for r in rows if all(r[k][part] is not None for k in ("original", *VARIANTS))]
        real = np.array([r["original"][part] for r in read])
        out[part] = {
            "faces": len(read),
            "original": round(float(np.mean(real if index is None else real[:, 0])), 1),
        }
        for key in VARIANTS:
            fake = np.array([r[key][part] for r in read])
            if index is None:  # brow darkness: larger is darker
                paler = real - fake
                out[part][key] = {
                    "mean_difference": round(float(np.mean(fake - real)), 1),
                    "mean_abs_difference": round(float(np.mean(np.abs(fake - real))), 1),
                    "paler_share": round(float(np.mean(paler > LIGHTER)), 3),
                }
            else:
                out[part][key] = {
                    "fake_L": round(float(fake[:, 0].mean()), 1),
                    "delta_E": round(float(np.linalg.norm(fake - real, axis=1).mean()), 1),
                    "lighter_share": round(float(np.mean(fake[:, 0] - real[:, 0] > LIGHTER)), 3),
                }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--faces", type=int, default=30, help="per dataset")
    parser.add_argument("--sheet-faces", type=int, default=12)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    pipelines = fusion_variant_pipelines(VARIANTS)
    files = first_photos(args.data, args.faces)
    rows, strips = [], []
    for path, original, fakes in fusion_variant_fakes(pipelines, files):
        row = {"file": path.name, "original": read_eyes(pipelines["off"], original)}
        rows.append(row | {key: read_eyes(pipelines[key], fake) for key, fake in fakes.items()})
        if len(strips) < args.sheet_faces:
            strips.append([original, *fakes.values()])
    summary = summary_of(rows)
    print(json.dumps(summary, indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "eyes.json").write_text(json.dumps({"summary": summary, "faces": rows}, indent=1))
    sheet = Image.new("RGB", (264 * 3, 120 * len(strips)), "white")
    for r, crops in enumerate(strips):
        for c, crop in enumerate(crops):
            sheet.paste(eyes_strip(crop), (264 * c, 120 * r))
    sheet.save(args.out / "eyes.png")


if __name__ == "__main__":
    main()
