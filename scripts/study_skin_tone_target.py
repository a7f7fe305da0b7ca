"""Can the original's skin tone be read from its identity embedding, and dummies drawn towards it
(issue 19)? Session 24: no.

A photo's cheek ITA follows its light and white balance as much as the skin (LFW: 5 % of
originals below -18 degrees), so ranking dummies by it would draw dark-skinned dummies for any dark
photo. The recogniser's embedding is trained to ignore light; the attribute probe's fifth row
(`scripts/fit_attribute_probe.py --rows skin_tone`) predicts a render's cheek ITA from the identity
it is rendered from, and applied to an original's own SFace embedding it would read the tone a
render of that person has. This script reads, per face, the photo's cheek ITA and that identity
tone, prints their correlation and draws the faces sorted by the identity tone (eight rows,
darkest first; each label identity / photo tone).

    PYTHONPATH=src python scripts/study_skin_tone_target.py --model M --data ../shared/data \
        --faces 300 --out runs/tone

M: a g2face-lite weights file whose probe has the skin-tone row. Faces: the first photo of 300
LFW people in a seeded order, and 300 CelebA photos. Measured (docs/measurements.md, session 24):
with the row fitted on keyed dummies (held-out r = 0.70 on renders) the identity tone's
correlation with the photos' cheek ITA was -0.00, fitted on bank renders 0.12, and the sheets put
light- and dark-skinned people side by side in every row.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from g2face.align import align_face
from g2face.io import read_image
from g2face.models.fusion_anonymizer import SKIN_TONE_ROW, cheek_tone
from g2face.nn.crops import crops_to_tensor
from g2face.pipeline.g2face import G2FacePipeline

TILE = 128


def face_files(data: Path, faces: int) -> list[Path]:
    people = sorted((data / "lfw" / "lfw-deepfunneled").iterdir())
    random.Random(7).shuffle(people)
    celeba = sorted((data / "celeba" / "images").glob("*.jpg"))
    random.Random(7).shuffle(celeba)
    return [sorted(d.glob("*.jpg"))[0] for d in people[:faces]] + celeba[:faces]


def read_faces(pipeline: G2FacePipeline, files: list[Path]) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Per photo with a face, its readings, and its aligned crop by file (for the sheet)."""
    model, rows, crops = pipeline.model, [], {}
    for path in tqdm(files, desc="read", unit="photo"):
        image = read_image(path).rgb
        found = pipeline.detector.detect(image)
        if not found:
            continue
        face = max(found, key=lambda d: d.width)
        crop = align_face(image, face, model.image_size).crop
        tensor = crops_to_tensor([crop])
        points = model.geometry(tensor).landmarks[0, :, :2].numpy()
        embedding = model.identity(tensor)
        crops[str(path)] = crop
        rows.append(
            {
                "file": str(path),
                "photo_tone": cheek_tone(crop, points),
                # the probe applied to the original's own identity embedding
                "identity_tone": float(model.attribute_probe(embedding)[0, SKIN_TONE_ROW]),
                "embedding": embedding[0].tolist(),
            }
        )
    return rows, crops


def sheet(tiles: list[list[np.ndarray]], labels: list[str], path: Path) -> None:
    columns = len(tiles[0])
    out = Image.new("RGB", (TILE * columns, (TILE + 14) * len(tiles)), "white")
    draw = ImageDraw.Draw(out)
    for r, (row, label) in enumerate(zip(tiles, labels, strict=True)):
        for c, tile in enumerate(row):
            out.paste(Image.fromarray(tile).resize((TILE, TILE)), (c * TILE, r * (TILE + 14) + 14))
        draw.text((2, r * (TILE + 14)), label, fill="black")
    out.save(path)


def reading(args) -> None:
    pipeline = G2FacePipeline.from_pretrained(str(args.model))
    rows, crops = read_faces(pipeline, face_files(args.data, args.faces))
    both = np.array([(r["photo_tone"], r["identity_tone"]) for r in rows if r["photo_tone"] is not None])
    corr = float(np.corrcoef(both[:, 0], both[:, 1])[0, 1])
    print(
        f"{len(rows)} faces; photo cheek ITA {both[:, 0].mean():.1f} ± {both[:, 0].std():.1f}, identity "
        f"tone {both[:, 1].mean():.1f} ± {both[:, 1].std():.1f}; correlation {corr:.2f}"
    )
    # Does the embedding carry the photo's tone at all? A ridge fitted on these photos themselves.
    known = [r for r in rows if r["photo_tone"] is not None]
    x = np.array([r["embedding"] + [1.0] for r in known])
    y = np.array([r["photo_tone"] for r in known])
    predicted = np.zeros(len(y))
    for fold in range(5):
        test = np.arange(len(y)) % 5 == fold
        a = x[~test]
        predicted[test] = x[test] @ np.linalg.solve(a.T @ a + np.eye(a.shape[1]), a.T @ y[~test])
    print(
        f"ridge from the embedding to the photo's cheek ITA, fitted on the photos (5-fold): correlation "
        f"{np.corrcoef(predicted, y)[0, 1]:.2f}, error {np.abs(predicted - y).mean():.1f} degrees against "
        f"{np.abs(y - y.mean()).mean():.1f} for the mean"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reading.json").write_text(json.dumps({"correlation": corr, "faces": rows}, indent=1))
    ordered = sorted(rows, key=lambda r: r["identity_tone"])
    tiles, labels = [], []
    for start in range(0, len(ordered), len(ordered) // 8):  # eight rows of eight, darkest first
        part = ordered[start : start + 8]
        if len(part) < 8:
            break
        tiles.append([crops[r["file"]] for r in part])
        labels.append(
            " | ".join(f"{r['identity_tone']:.0f}/{r['photo_tone'] or float('nan'):.0f}" for r in part)
        )
    sheet(tiles, labels, args.out / "reading.png")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--faces", type=int, default=300, help="per dataset")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    reading(args)


if __name__ == "__main__":
    main()
