"""Which originals wear tinted lenses that the frame bridge misses? (issue 19)

Every CelebA photo and each LFW person's first photo the detector finds a face in is aligned and
read with the cues `fusion.lens_kind` weighs: the eyes' darkness (`sunglasses_score`), the skin
under the eyes (`under_eye_shade`), the frame bridge (`glasses_score`) and the glasses reader's
verdict (`readers.original_glasses`). Written to --out: `cues.jsonl` (one record per photo) and
`sheet.png`, the crops of the photos in glasses by the reader with the eyes read from
`--min-shade` (`SUNGLASSES_EYES_SHADED`) and the skin under them at `--max-under-eye` or less that
the rule without the reader read as wearing neither dark nor tinted lenses, sorted by the skin
under the eyes, each labelled with its cues, to judge by eye where the threshold
(`UNDER_EYE_TINTED_ORIGINAL`) falls.

    PYTHONPATH=src python scripts/study_lens_cues.py --data ../shared/data --out runs/lens_cues
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from g2face.align import align_face
from g2face.detection import YuNetDetector
from g2face.io import read_image
from g2face.models.fusion import (
    SUNGLASSES_EYES_SHADED,
    glasses_score,
    lens_kind,
    sunglasses_score,
    under_eye_shade,
)
from g2face.models.readers import original_glasses
from g2face.nn.crops import crops_to_tensor
from g2face.pipeline.g2face import G2FacePipeline

SIZE = 256


def photos(data: Path) -> list[Path]:
    celeba = sorted((data / "celeba" / "images").glob("*.jpg"))
    people = sorted(p for p in (data / "lfw" / "lfw-deepfunneled").iterdir() if p.is_dir())
    return celeba + [sorted(p.glob("*.jpg"))[0] for p in people]


def sheet(records: list[dict], data: Path, detector, tile: int = 128, columns: int = 8) -> Image.Image:
    out = Image.new("RGB", (columns * tile, max(1, -(-len(records) // columns)) * tile), "white")
    for k, record in enumerate(records):
        image = read_image(data / record["file"]).rgb
        face = max(detector.detect(image), key=lambda f: f.width)
        crop = Image.fromarray(align_face(image, face, SIZE).crop).resize((tile, tile))
        label = f"{k} s{record['eyes']:.2f} u{record['under_eye']:.2f} b{record['bridge']:.0f}"
        ImageDraw.Draw(crop).text((2, 2), label, fill="yellow")
        out.paste(crop, ((k % columns) * tile, (k // columns) * tile))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--model", default="g2face-lite", help="whose geometry prior reads the mesh")
    parser.add_argument("--min-shade", type=float, default=SUNGLASSES_EYES_SHADED)
    parser.add_argument("--max-under-eye", type=float, default=0.7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    geometry = G2FacePipeline.from_pretrained(args.model).model.geometry
    detector = YuNetDetector()
    records = []
    for path in tqdm(photos(args.data), desc="photos", unit="photo"):
        image = read_image(path).rgb
        faces = detector.detect(image)
        if not faces:
            continue
        crop = align_face(image, max(faces, key=lambda f: f.width), SIZE).crop
        points = geometry(crops_to_tensor([crop])).landmarks[0, :, :2].numpy() * SIZE - 0.5
        glasses = original_glasses(crop, points)
        records.append(
            {
                "file": str(path.relative_to(args.data)),
                "eyes": sunglasses_score(crop, points),
                "under_eye": under_eye_shade(crop, points),
                "bridge": glasses_score(crop, points),
                "glasses": glasses,
                "kind_without_reader": lens_kind(crop, points),
                "kind": lens_kind(crop, points, None, glasses),
            }
        )
    with open(args.out / "cues.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    candidates = sorted(
        (
            r
            for r in records
            if r["kind_without_reader"] is None
            and r["glasses"] is True
            and r["eyes"] >= args.min_shade
            and r["under_eye"] <= args.max_under_eye
        ),
        key=lambda r: r["under_eye"],
    )
    sheet(candidates, args.data, detector).save(args.out / "sheet.png")
    under = np.array([r["under_eye"] for r in candidates])
    kinds = [r["kind"] for r in records]
    print(
        f"{len(records)} photos; {len(candidates)} newly in question, "
        f"{int((under <= 0.55).sum())} of them with the skin under the eyes at 0.55 or less; "
        f"now tinted: {kinds.count('tinted')}, dark: {kinds.count('dark')}"
    )


if __name__ == "__main__":
    main()
