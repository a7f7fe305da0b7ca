"""Glasses on small faces (issue 19: no glasses vanish because of the dummy), two parts.

`reading`: LFW photos (one per person) scaled so the face is W px wide; `glasses_score` of the
original at each width, as read (`--unscaled`) or scaled for the crop's source width
(`fusion.GLASSES_SCALE_EXPONENT`), and how the decision (`edge_glasses_state`: sure / unsure / bare)
at W agrees with the one at the photo's own size.

    PYTHONPATH=src python scripts/study_glasses_width.py reading ../shared/data/lfw/lfw-deepfunneled \
        --people 800 --widths 32 48 --out runs/glasses_reading.json

`fakes`: the photos read as surely wearing glasses at their own size and as many bare ones, scaled
to W, anonymized with the scaling and without it (same seeds), and a contact sheet per group
(original | unscaled | scaled, enlarged) to judge by eye whether the fake wears glasses.

    PYTHONPATH=src python scripts/study_glasses_width.py fakes ../shared/data/lfw/lfw-deepfunneled \
        --reading runs/glasses_reading.json --width 40 --bare 28 --out runs/glasses_fakes
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

import torch
from measure_face_width_leak import scaled
from PIL import Image, ImageDraw

from g2face.align import align_face, crop_source_width
from g2face.io import read_image
from g2face.models import fusion
from g2face.nn.crops import crops_to_tensor
from g2face.payload import Secret
from g2face.pipeline.g2face import CarrierSettings, G2FacePipeline


def edge_glasses_state(score: float) -> bool | None:
    """The edge score's three states this study measured (the anonymizer read photos so until
    session 36; it now reads them with `g2face.models.readers`): bare, unsure, sure."""
    if score < fusion.GLASSES_EDGE_ORIGINAL:
        return False
    return True if score >= fusion.GLASSES_SURE_ORIGINAL else None


def _largest(detector, rgb):
    faces = detector.detect(rgb)
    return max(faces, key=lambda d: d.width) if faces else None


def reading(args, pipe) -> None:
    detector, model = pipe.detector, pipe.model
    people = sorted(p for p in args.lfw.iterdir() if p.is_dir())
    random.Random(0).shuffle(people)

    def read(rgb, face):
        crop = align_face(rgb, face, model.image_size).crop
        with torch.inference_mode():
            g = model.geometry(crops_to_tensor([crop]))
        points = (g.landmarks[0, :, :2] * model.image_size - 0.5).numpy()
        width = crop_source_width(face, model.image_size)
        return fusion.glasses_score(crop, points), fusion.glasses_score(crop, points, width), width

    rows = []
    for person in people[: args.people]:
        path = sorted(person.glob("*.jpg"))[0]
        rgb = read_image(path).rgb
        face = _largest(detector, rgb)
        if face is None:
            continue
        row = {"file": str(path), "native": read(rgb, face)}
        for w in args.widths:
            row[f"{w:g}"] = read(*scaled(rgb, face, w))
        rows.append(row)
    names = {True: "sure", None: "unsure", False: "bare"}
    summary = {}
    for column, label in ((0, "unscaled"), (1, "scaled")):
        for w in args.widths:
            agreement = Counter(
                f"{names[edge_glasses_state(r['native'][column])]}->{names[edge_glasses_state(r[f'{w:g}'][column])]}"
                for r in rows
            )
            summary[f"{label} {w:g}"] = dict(sorted(agreement.items()))
            print(label, w, summary[f"{label} {w:g}"], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")


def fakes(args, pipe) -> None:
    rows = json.loads(args.reading.read_text())["rows"]
    sure = [r for r in rows if edge_glasses_state(r["native"][0]) is True]
    bare = [r for r in rows if edge_glasses_state(r["native"][0]) is False][: args.bare]
    secret = Secret(bytes(range(32)), "key")
    args.out.mkdir(parents=True, exist_ok=True)
    for group, name in ((sure, "glasses"), (bare, "bare")):
        tiles = []
        for k, r in enumerate(group):
            rgb = read_image(r["file"]).rgb
            image, face = scaled(rgb, _largest(pipe.detector, rgb), args.width)
            outputs = []
            for scale_max in (1.0, fusion.GLASSES_SCALE_MAX):  # 1.0: the reading as it was
                saved, fusion.GLASSES_SCALE_MAX = fusion.GLASSES_SCALE_MAX, scale_max
                try:
                    out = pipe.anonymize(image, secret, detections=[face], seeds=[1000 + k])
                finally:
                    fusion.GLASSES_SCALE_MAX = saved
                outputs.append(out.image)
            x0, y0, x1, y1 = face.box
            half = 0.9 * max(x1 - x0, y1 - y0)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            box = tuple(int(v) for v in (cx - half, cy - half, cx + half, cy + half))
            tile = Image.new("RGB", (3 * 160, 172), "white")
            for j, im in enumerate([image, *outputs]):
                tile.paste(Image.fromarray(im).crop(box).resize((160, 160), Image.BICUBIC), (160 * j, 12))
            ImageDraw.Draw(tile).text((2, 0), f"{k} {Path(r['file']).stem}", fill="black")
            tiles.append(tile)
            print(name, k, flush=True)
        cols = 4
        sheet = Image.new("RGB", (cols * 480, 172 * ((len(tiles) + cols - 1) // cols)), "white")
        for i, tile in enumerate(tiles):
            sheet.paste(tile, ((i % cols) * 480, (i // cols) * 172))
        sheet.save(args.out / f"{name}_w{args.width:g}.png")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("part", choices=["reading", "fakes"])
    parser.add_argument("lfw", type=Path)
    parser.add_argument("--people", type=int, default=800)
    parser.add_argument("--widths", type=float, nargs="+", default=[32, 48])
    parser.add_argument("--reading", type=Path, help="fakes: the reading part's output")
    parser.add_argument("--width", type=float, default=40)
    parser.add_argument("--bare", type=int, default=28)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    carriers = CarrierSettings(container=False, pixel_payload=False)
    pipe = G2FacePipeline.from_pretrained("g2face-lite", carriers=carriers)
    reading(args, pipe) if args.part == "reading" else fakes(args, pipe)


if __name__ == "__main__":
    main()
