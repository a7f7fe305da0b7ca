"""Colours on the fake's face that the original's face never shows (teal eyeshadow, a green shadow),
with `FusionSettings.match_chroma_range` off and on (docs/measurements.md, session 26).

Per face, of the original and of the fake pasted into the photo (same keyed dummy, no search, so
only the fusion differs), read on the original's MediaPipe mesh inside the replaced region without
the eyes' openings and the mouth (`models.fusion.match_chroma_range` reads the same area):
* `off_share`: the share of the fake's pixels whose a* or b* (OpenCV's 8-bit Lab) lies more than
  `MARGIN` outside the original's `CHROMA_RANGE_QUANTILES` range there;
* `stray_faces`: the share of faces with more than `STRAY_SHARE` of such pixels;
* `moved_delta_e`: how far the setting moves a fake's pixels on average (CIE76 in 8-bit Lab), so
  one sees it leaves most faces alone.
"on" is near 0 by construction (what is left is the paste-back's resampling); the sheet of the
faces with the most stray colour (original | off | on) is what to look at.

    PYTHONPATH=src python scripts/measure_chroma_range.py --data ../shared/data --faces 40 --out runs/chroma

`--faces` photos from LFW (each person's first, seeded order) and as many from CelebA; faces
turned beyond the generator's range (the blur fallback) are left out.
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

from g2face.models.fusion import CHROMA_RANGE_QUANTILES, eyes_and_mouth_mask, face_region_mask
from g2face.nn.crops import crops_to_tensor
from g2face.pipeline.g2face import G2FacePipeline

MARGIN = 3.0  # 8-bit Lab levels beyond the original's range: a visible tint, not rounding
STRAY_SHARE = 0.01
VARIANTS = {"off": {"match_chroma_range": False}, "on": {"match_chroma_range": True}}


def stray_share(pipeline: G2FacePipeline, original: np.ndarray, fake: np.ndarray) -> float:
    size = original.shape[0]
    model = pipeline.model
    points = (model.geometry(crops_to_tensor([original])).landmarks[0, :, :2] * size - 0.5).numpy()
    area = (face_region_mask(points, size, model.fusion) > 0.5) & ~eyes_and_mouth_mask(points, size)
    chroma_o = cv2.cvtColor(original, cv2.COLOR_RGB2LAB).astype(np.float32)[area][:, 1:]
    chroma_f = cv2.cvtColor(fake, cv2.COLOR_RGB2LAB).astype(np.float32)[area][:, 1:]
    low, high = np.quantile(chroma_o, CHROMA_RANGE_QUANTILES, axis=0)
    excess = np.maximum(low - chroma_f, 0) + np.maximum(chroma_f - high, 0)
    return float((excess.max(1) > MARGIN).mean())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--faces", type=int, default=40, help="per dataset")
    parser.add_argument("--sheet-faces", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    pipelines = fusion_variant_pipelines(VARIANTS)
    files = first_photos(args.data, args.faces)
    rows, crops_of = [], {}
    for path, original, fakes in fusion_variant_fakes(pipelines, files):
        row = {"file": path.name}
        row |= {f"{key}_share": stray_share(pipelines[key], original, fake) for key, fake in fakes.items()}
        lab = [cv2.cvtColor(fakes[key], cv2.COLOR_RGB2LAB).astype(np.float32) for key in VARIANTS]
        changed = np.abs(lab[0] - lab[1]).max(-1) > 0
        row["moved_share"] = float(changed.mean())
        row["moved_delta_e"] = (
            float(np.linalg.norm(lab[0] - lab[1], axis=-1)[changed].mean()) if changed.any() else 0.0
        )
        rows.append(row)
        crops_of[path.name] = [original, *(fakes[key] for key in VARIANTS)]
    summary = {"faces": len(rows)}
    for key in VARIANTS:
        shares = np.array([r[f"{key}_share"] for r in rows])
        summary[key] = {
            "off_share_mean": round(float(shares.mean()), 4),
            "stray_faces": round(float(np.mean(shares > STRAY_SHARE)), 3),
        }
    summary["moved_share_mean"] = round(float(np.mean([r["moved_share"] for r in rows])), 4)
    summary["moved_delta_e_mean"] = round(float(np.mean([r["moved_delta_e"] for r in rows])), 2)
    print(json.dumps(summary, indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "chroma.json").write_text(json.dumps({"summary": summary, "faces": rows}, indent=1))
    worst = sorted(rows, key=lambda r: -r["off_share"])[: args.sheet_faces]
    tile = 192
    sheet = Image.new("RGB", (tile * 3, tile * len(worst)), "white")
    for r, row in enumerate(worst):
        for c, crop in enumerate(crops_of[row["file"]]):
            sheet.paste(Image.fromarray(crop).resize((tile, tile)), (tile * c, tile * r))
    sheet.save(args.out / "chroma.png")


if __name__ == "__main__":
    main()
