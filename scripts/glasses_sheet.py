"""Side by side, the faces of two `evaluate_default.py` runs (same pairs and seeds) whose original
may wear glasses: original | run A key A | run A key B | run B key A | run B key B, to count by eye
whose fakes keep or add glasses (issue 19; docs/measurements.md, session 36).

A face is shown when its 112-px sheet tile, enlarged to a crop, is not read as surely bare: the
glasses reader's P at least `GLASSES_NONE_PROBABILITY` or the nose-bridge edge at least
`GLASSES_EDGE_ORIGINAL`. Each row is labelled with the face's index, P and edge score.

    python scripts/glasses_sheet.py runs/eval-before runs/eval-after --out glasses.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw

from g2face.models.fusion import GLASSES_EDGE_ORIGINAL, glasses_score
from g2face.models.readers import GLASSES_NONE_PROBABILITY, eye_band_features, glasses_reader
from g2face.nn.crops import crops_to_tensor
from g2face.priors.mediapipe_geometry import MediaPipeGeometry

TILE, PER_COLUMN = 112, 10  # evaluate_default.contact_sheet's layout


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", type=Path, help="an evaluate_default.py --out folder")
    parser.add_argument("after", type=Path, help="the same pairs and seeds, changed code")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    sheets = [np.asarray(Image.open(run / "faces.png").convert("RGB")) for run in (args.before, args.after)]
    faces = (sheets[0].shape[1] // (3 * TILE + 8)) * PER_COLUMN
    geometry, rows = MediaPipeGeometry(), []
    for k in range(faces):
        x0, y = (k // PER_COLUMN) * (3 * TILE + 8), (k % PER_COLUMN) * TILE
        original = sheets[0][y : y + TILE, x0 : x0 + TILE]
        if not original.any():  # past the last pair
            break
        crop = cv2.resize(original, (256, 256), interpolation=cv2.INTER_CUBIC)
        with torch.no_grad():
            points = geometry(crops_to_tensor([crop])).landmarks[0, :, :2].numpy() * 256 - 0.5
        probability = glasses_reader().probability(eye_band_features(crop, points))
        edge = glasses_score(crop, points)
        if probability < GLASSES_NONE_PROBABILITY and edge < GLASSES_EDGE_ORIGINAL:
            continue
        fakes = [sheet[y : y + TILE, x0 + j * TILE : x0 + (j + 1) * TILE] for sheet in sheets for j in (1, 2)]
        row = Image.fromarray(np.concatenate([original, *fakes], 1))
        ImageDraw.Draw(row).text((2, 2), f"{k} P{probability:.2f} edge{edge:.0f}", fill=(255, 255, 0))
        rows.append(row)
    if not rows:
        print("no face may wear glasses: nothing drawn")
        return 0
    height = -(-len(rows) // 2)
    sheet = Image.new("RGB", (2 * (5 * TILE + 10), height * TILE), "white")
    for i, row in enumerate(rows):
        sheet.paste(row, ((i // height) * (5 * TILE + 10), (i % height) * TILE))
    sheet.save(args.out)
    print(f"{len(rows)} faces: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
