"""How the fake's skin colour follows its shading, against the original's (issue 19;
docs/measurements.md, session 35).

Per face, read on each face's own MediaPipe mesh over its bare skin (`models.fusion.skin_mask`),
of the original and of the fake pasted into the photo, with `FusionSettings.match_shading_colour`
off and on (same keyed dummy, no search, so only the fusion differs):
* the least-squares slopes of a* and b* on L* (OpenCV's 8-bit Lab): real skin is warmer and more
  saturated where it is darker (negative slopes); the mean absolute difference fake − original,
  over all channels and apart over those whose original slope is negative (the step follows
  only those), below −0.1, and 0 or positive;
* the share of the fake's skin greyer than all but 5 % of the original's (chroma below the
  original's 5 % quantile): grey or greenish patches;
* the cheek ITA difference (`models.fusion_anonymizer.cheek_tone`), and FaceNet-CASIA's cosine
  between fake and original (same photo), paired between the variants: what the change costs in
  skin tone and anonymity.
A sheet (original | off | on) of the faces where the two fakes differ most.

    PYTHONPATH=src python scripts/measure_shading_colour.py --data ../shared/data --faces 40 \
        --out runs/shading
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

from g2face.models.fusion import shading_colour_slopes, skin_mask
from g2face.models.fusion_anonymizer import cheek_tone
from g2face.nn.crops import crops_to_tensor
from g2face.pipeline.g2face import G2FacePipeline
from g2face.priors.facenet import FaceNetEncoder

VARIANTS = {"off": {"match_shading_colour": False}, "on": {"match_shading_colour": True}}
GREY_QUANTILE = 0.05


def mesh_points(pipeline: G2FacePipeline, crop: np.ndarray) -> np.ndarray:
    size = crop.shape[0]
    return (pipeline.model.geometry(crops_to_tensor([crop])).landmarks[0, :, :2] * size - 0.5).numpy()


def read_skin(crop: np.ndarray, points: np.ndarray, grey_below: float | None = None) -> dict | None:
    """Slopes of a*, b* on L* over the skin, its 5 % chroma quantile, and the share of skin pixels
    below `grey_below` chroma; None where the mesh finds too little bare skin."""
    skin = skin_mask(points, crop)
    if skin.sum() < 200:
        return None
    lab = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB).astype(np.float64)
    slopes = shading_colour_slopes(lab, skin)
    chroma = np.hypot(lab[skin][:, 1] - 128, lab[skin][:, 2] - 128)
    read = {"slopes": slopes.tolist(), "grey_quantile": float(np.quantile(chroma, GREY_QUANTILE))}
    if grey_below is not None:
        read["grey_share"] = float(np.mean(chroma < grey_below))
    return read


def summarize(rows: list[dict]) -> dict:
    """Per variant: the mean slopes, their mean absolute difference to the original's (over all
    channels, and apart over the channels whose original slope is negative, below -0.1, and 0 or
    positive), the grey share, the cheek ITA difference and FaceNet's cosine to the original; and
    FaceNet's paired difference on - off (mean, standard error)."""
    original = np.array([r["original"]["slopes"] for r in rows])
    summary: dict = {"faces": len(rows), "original_slopes": np.round(original.mean(0), 3).tolist()}
    groups = {"negative": original < 0, "below_-0.1": original < -0.1, "not_negative": original >= 0}
    for key in VARIANTS:
        slopes = np.array([r[key]["slopes"] for r in rows])
        error = np.abs(slopes - original)
        ita = [
            abs(r[key]["ita"] - r["original"]["ita"])
            for r in rows
            if r[key]["ita"] is not None and r["original"]["ita"] is not None
        ]
        summary[key] = {
            "slopes": np.round(slopes.mean(0), 3).tolist(),
            "slope_error": round(float(error.mean()), 3),
            "slope_error_a_b": {
                name: [
                    round(float(error[:, c][mask[:, c]].mean()), 3) if mask[:, c].any() else None
                    for c in (0, 1)
                ]
                for name, mask in groups.items()
            },
            "grey_share": round(float(np.mean([r[key]["grey_share"] for r in rows])), 3),
            "ita_difference": round(float(np.mean(ita)), 2),
            "facenet_same_photo": round(float(np.mean([r[key]["facenet_same_photo"] for r in rows])), 4),
        }
    summary["faces_per_group_a_b"] = {name: mask.sum(0).tolist() for name, mask in groups.items()}
    paired = np.array([r["on"]["facenet_same_photo"] - r["off"]["facenet_same_photo"] for r in rows])
    summary["facenet_paired_on_minus_off"] = [
        round(float(paired.mean()), 4),
        round(float(paired.std(ddof=1) / np.sqrt(len(paired))), 4),
    ]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--faces", type=int, default=40, help="per dataset (LFW, CelebA)")
    parser.add_argument("--sheet-faces", type=int, default=12)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    pipelines = fusion_variant_pipelines(VARIANTS)
    reader = pipelines["off"]
    facenet = FaceNetEncoder()
    rows, crops = [], []
    for path, original, fakes in fusion_variant_fakes(pipelines, first_photos(args.data, args.faces)):
        points = mesh_points(reader, original)
        real = read_skin(original, points)
        if real is None:
            continue
        row = {"file": path.name, "original": real | {"ita": cheek_tone(original, (points + 0.5) / 256)}}
        embeddings = facenet(crops_to_tensor([original, *fakes.values()])).numpy()
        for (key, fake), embedding in zip(fakes.items(), embeddings[1:], strict=True):
            fake_points = mesh_points(reader, fake)
            read = read_skin(fake, fake_points, real["grey_quantile"])
            if read is None:
                break
            row[key] = read | {
                "ita": cheek_tone(fake, (fake_points + 0.5) / 256),
                "facenet_same_photo": float(embedding @ embeddings[0]),
            }
        else:
            rows.append(row)
            crops.append([original, *fakes.values()])
    summary = summarize(rows)
    print(json.dumps(summary, indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "shading_colour.json").write_text(json.dumps({"summary": summary, "faces": rows}, indent=1))
    # the faces whose two fakes differ most in colour
    change = [float(np.abs(c[1].astype(float) - c[2].astype(float)).mean()) for c in crops]
    order = np.argsort(change)[::-1][: args.sheet_faces]
    print("sheet, top to bottom:", ", ".join(rows[i]["file"] for i in order))
    sheet = np.concatenate(
        [np.concatenate([cv2.resize(x, (192, 192)) for x in crops[i]], 1) for i in order], 0
    )
    Image.fromarray(sheet).save(args.out / "shading_colour.png")


if __name__ == "__main__":
    main()
