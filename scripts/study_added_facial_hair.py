"""Does a fake grow a moustache, beard, goatee or stubble the original does not have? (issue 19)

The facial-hair check read only the upper lip, against a fixed edge, so a candidate with a bearded
chin, or a faint or grey moustache, passed for clean-shaven (seen on Obama's fakes in the README
figure). Now the chin is read by its texture (`chin_texture`) on the candidates for originals whose
chin reads bare (`original_bare_chin`), and a moustache also by how far the candidate's upper lip
reading rises over the original's (`FACIAL_HAIR_GAIN_EDGE`). This script

* reads the originals (one photo per LFW person): `originals.png`, their lower faces sorted by
  `chin_texture`, labelled with it, the apparent gender, the chin's darkness (`chin_hair_score`)
  and the upper lip's (`facial_hair_score`), to set the original's threshold by eye;
* anonymizes the first `--anonymized` clean-shaven men (bare upper lip and bare chin) twice with
  the same keyed seeds: "before" (neither new reading: the reference's `bare_chin` and
  `upper_lip_score` cleared) and "after" (as shipped); every candidate the "before" search fused
  is shown on `candidates_chin.png` sorted by `chin_texture` and on `candidates_lip.png` (upper
  lip and mouth, original | candidate) sorted by the upper lip's gain, to set the render
  thresholds by eye; `fakes.png` shows original | before | after;
* reports how many chosen fakes read bearded or with a grown moustache (white-box: the chooser
  uses these readings), the candidates rendered per face and FaceNet-CASIA's cosine of fake to
  original (never used by the model) before and after.

    PYTHONPATH=src python scripts/study_added_facial_hair.py --faces 300 --anonymized 40
        --out runs/facial_hair_added        (one command)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).parent))
from measure_attributes import DEFAULT_LFW, lfw_crops  # noqa: E402

from g2face.evaluation.protocols import name_seed  # noqa: E402
from g2face.models.fusion import (  # noqa: E402
    CHIN_TEXTURE_EDGE,
    FACIAL_HAIR_GAIN_EDGE,
    chin_box,
    chin_hair_score,
    chin_texture,
    facial_hair_score,
    upper_lip_box,
)
from g2face.models.fusion_anonymizer import (  # noqa: E402
    ApparentAttributes,
    FusionAnonymizer,
    original_facial_hair,
)
from g2face.models.readers import original_bare_chin  # noqa: E402
from g2face.models.zoo import load_model  # noqa: E402
from g2face.nn.crops import crops_to_tensor, tensor_to_crops  # noqa: E402
from g2face.payload import Secret  # noqa: E402
from g2face.priors.facenet import FaceNetEncoder  # noqa: E402


def lower_face(image: np.ndarray, points: np.ndarray) -> Image.Image:
    """The mouth and chin of a crop, from the nose's base to below `chin_box`, 108 x 72 px."""
    x0, x1, _, y1 = chin_box(points)
    top = points[2, 1] - 0.1 * (x1 - x0)
    height, middle = 1.15 * (y1 - top), (x0 + x1) / 2
    box = (middle - 0.75 * height, top, middle + 0.75 * height, top + height)
    return Image.fromarray(image).crop(box).resize((108, 72))


def upper_lip(image: np.ndarray, points: np.ndarray) -> Image.Image:
    """The upper lip and mouth of a crop around `upper_lip_box`, 128 x 80 px."""
    x0, x1, _, _ = upper_lip_box(points)
    width, middle, level = (x1 - x0) / 0.7, (x0 + x1) / 2, (points[2, 1] + points[17, 1]) / 2
    box = (middle - 0.8 * width, level - 0.5 * width, middle + 0.8 * width, level + 0.5 * width)
    return Image.fromarray(image).crop(box).resize((128, 80))


def sorted_sheet(tiles: list[tuple[float, str, Image.Image]], columns: int = 16) -> Image.Image:
    """Tiles (all of one size) sorted by their score, highest first, each labelled under it."""
    tiles = sorted(tiles, key=lambda t: -t[0])
    width, height = tiles[0][2].size
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * width, rows * (height + 12)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (_, label, image) in enumerate(tiles):
        x, y = (k % columns) * width, (k // columns) * (height + 12)
        sheet.paste(image, (x, y))
        draw.text((x + 2, y + height), label, fill="black")
    return sheet


def side_by_side(*images: Image.Image) -> Image.Image:
    return Image.fromarray(np.hstack([np.asarray(image) for image in images]))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="lfw-deepfunneled folder")
    parser.add_argument("--faces", type=int, default=300, help="LFW people read")
    parser.add_argument("--anonymized", type=int, default=40, help="clean-shaven men anonymized")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="g2face-lite")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if not args.lfw.is_dir():
        print(f"LFW not found at {args.lfw}: pass --lfw; nothing measured")
        return 0
    torch.set_grad_enabled(False)
    model = load_model(args.model)
    assert isinstance(model, FusionAnonymizer)
    facenet, secret = FaceNetEncoder(), Secret(b"G" * 32, "key")
    crops, names = lfw_crops(args.lfw, args.faces, args.seed)
    points = (model.geometry(crops).landmarks[..., :2] * model.image_size - 0.5).numpy()
    originals = tensor_to_crops(crops)
    male = model.attributes(crops).male_probability.tolist()
    rows = []
    for name, face, q, p in zip(names, originals, points, male, strict=True):
        lip = facial_hair_score(face, q)
        rows.append(
            {
                "name": name,
                "male": p,
                "lip": lip,
                "chin": chin_hair_score(face, q),
                "chin_texture": chin_texture(face, q),
                "bare_lip": original_facial_hair(lip, p) is False,
                "bare_chin": original_bare_chin(face, q),
            }
        )
    args.out.mkdir(parents=True, exist_ok=True)
    tiles = [
        (
            r["chin_texture"],
            f"{r['chin_texture']:.2f} {'m' if r['male'] >= 0.5 else 'f'} c{r['chin']:.0f} l{r['lip']:.0f}",
            lower_face(o, q),
        )
        for r, o, q in zip(rows, originals, points, strict=True)
    ]
    sorted_sheet(tiles).save(args.out / "originals.png")

    judge, chins, lips = model._scores, [], []

    def judging(rule: str, face: int):
        def scores(reference, reference_attributes, faces, points=None, *rest, **kwargs):
            if rule == "before" and reference_attributes is not None:
                reference_attributes = ApparentAttributes(*reference_attributes)._replace(
                    bare_chin=False, upper_lip_score=None
                )
            found = judge(reference, reference_attributes, faces, points, *rest, **kwargs)
            if points is not None and rule == "before":
                for image in faces:
                    texture = chin_texture(image, points)
                    chins.append((texture, f"{texture:.2f} #{face}", lower_face(image, points)))
                    gain = facial_hair_score(image, points) - rows[face]["lip"]
                    view = side_by_side(upper_lip(originals[face], points), upper_lip(image, points))
                    lips.append((gain, f"{gain:.1f} #{face}", view))
            counted[rule] += len(found)
            return found

        return scores

    chosen = [i for i, r in enumerate(rows) if r["male"] >= 0.5 and r["bare_lip"] and r["bare_chin"]][
        : args.anonymized
    ]
    started, results, pairs = time.perf_counter(), [], []
    for k, i in enumerate(chosen):
        reference = facenet(crops[i : i + 1])[0]
        result, views = {"name": names[i]}, [lower_face(originals[i], points[i])]
        for rule in ("before", "after"):
            counted = {rule: 0}
            model._scores = judging(rule, i)
            try:
                out = model.anonymize(crops[i : i + 1], secret, seeds=[name_seed(names[i])], salts=[b"s" * 8])
            finally:
                del model._scores
            mask = out.masks[0][..., None]
            fake = tensor_to_crops(out.images)[0] * mask + originals[i] * (1 - mask)
            fake = np.round(fake).astype(np.uint8)
            result[rule] = {
                "chin_texture": chin_texture(fake, points[i]),
                "upper_lip_gain": facial_hair_score(fake, points[i]) - rows[i]["lip"],
                "renders": counted[rule],
                "facenet_to_original": float(facenet(crops_to_tensor([fake]))[0] @ reference),
            }
            views.append(lower_face(fake, points[i]))
        results.append(result)
        before, after = result["before"], result["after"]
        label = (
            f"chin {before['chin_texture']:.2f} -> {after['chin_texture']:.2f}, "
            f"lip +{before['upper_lip_gain']:.0f} -> +{after['upper_lip_gain']:.0f}"
        )
        pairs.append((before["chin_texture"], label, side_by_side(*views)))
        print(f"{k + 1}/{len(chosen)} {names[i]}: {label}", flush=True)
    sorted_sheet(chins).save(args.out / "candidates_chin.png")
    sorted_sheet(lips, columns=8).save(args.out / "candidates_lip.png")
    sorted_sheet(pairs, columns=6).save(args.out / "fakes.png")
    summary: dict = {
        "read": len(rows),
        "bare_chin_of_men": float(np.mean([r["bare_chin"] for r in rows if r["male"] >= 0.5])),
        "anonymized": len(chosen),
        "seconds": time.perf_counter() - started,
        "candidates_bearded_before": float(np.mean([t >= CHIN_TEXTURE_EDGE for t, _, _ in chins])),
        "candidates_moustache_grown_before": float(np.mean([g >= FACIAL_HAIR_GAIN_EDGE for g, _, _ in lips])),
    }
    for rule in ("before", "after"):
        summary[rule] = {
            "fakes_bearded": float(np.mean([r[rule]["chin_texture"] >= CHIN_TEXTURE_EDGE for r in results])),
            "fakes_moustache_grown": float(
                np.mean([r[rule]["upper_lip_gain"] >= FACIAL_HAIR_GAIN_EDGE for r in results])
            ),
            "renders_per_face": float(np.mean([r[rule]["renders"] for r in results])),
            "facenet_to_original": float(np.mean([r[rule]["facenet_to_original"] for r in results])),
        }
    (args.out / "facial_hair_added.json").write_text(
        json.dumps({**summary, "rows": rows, "results": results}, indent=1)
    )
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
