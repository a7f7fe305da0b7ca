"""Where does a fake grow a goatee, a beard or stubble the original does not have? (issue 19)

The default's facial-hair check (`facial_hair_score`) reads the upper lip only, so a candidate
with a bare upper lip and a dark chin passes for clean-shaven (seen on Obama's fakes in the
README figure). This reads `chin_hair_score` on

* the originals: one photo per LFW person, with the upper-lip reading and P(male), so the chin
  threshold of a clean-shaven original can be chosen (`originals.png`, sorted by chin score);
* every candidate the search fuses for the originals whose upper lip reads bare (the previews
  `FusionAnonymizer._scores` judges, each one's chin crop on `candidates.png`, sorted by chin
  score with the score under it), so the threshold of a render can be chosen by eye.

    PYTHONPATH=src python scripts/study_chin_hair.py --faces 120 --out runs/chin        (one command)
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
from g2face.models.fusion import chin_box, chin_hair_score, facial_hair_score  # noqa: E402
from g2face.models.fusion_anonymizer import FusionAnonymizer, original_facial_hair  # noqa: E402
from g2face.models.zoo import load_model  # noqa: E402
from g2face.nn.crops import tensor_to_crops  # noqa: E402
from g2face.payload import Secret  # noqa: E402


def lower_face(image: np.ndarray, points: np.ndarray, tile: int) -> Image.Image:
    """The mouth and chin of a crop (a square around `chin_box`, twice its width), `tile` px."""
    x0, x1, y0, y1 = chin_box(points)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2 - 0.2 * (x1 - x0), (x1 - x0)
    return Image.fromarray(image).crop((cx - half, cy - half, cx + half, cy + half)).resize((tile, tile))


def sorted_sheet(tiles: list[tuple[float, str, Image.Image]], columns: int = 16) -> Image.Image:
    """Tiles (all of one size) sorted by their score, highest first, each labelled."""
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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="lfw-deepfunneled folder")
    parser.add_argument("--faces", type=int, default=120, help="LFW people read")
    parser.add_argument("--anonymized", type=int, default=60, help="bare-lipped originals anonymized")
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
    crops, names = lfw_crops(args.lfw, args.faces, args.seed)
    points = (model.geometry(crops).landmarks[..., :2] * model.image_size - 0.5).numpy()
    originals = tensor_to_crops(crops)
    male = model.attributes(crops).male_probability.tolist()
    rows = []
    for i, (face, q, p) in enumerate(zip(originals, points, male, strict=True)):
        lip, chin = facial_hair_score(face, q), chin_hair_score(face, q)
        rows.append(
            {"name": names[i], "male": p, "lip": lip, "chin": chin, "state": original_facial_hair(lip, p)}
        )
    tiles = [
        (
            r["chin"],
            f"{r['chin']:.0f} {'m' if r['male'] >= 0.5 else 'f'} l{r['lip']:.0f}",
            lower_face(o, q, 96),
        )
        for r, o, q in zip(rows, originals, points, strict=True)
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    sorted_sheet(tiles).save(args.out / "originals.png")

    # every fused candidate of the bare-lipped originals, as the chooser sees it
    seen: list[tuple[float, str, Image.Image]] = []
    candidates, previews = [], []
    judge = model._scores

    def recording(reference, reference_attributes, faces, points=None, *rest, **kwargs):
        found = judge(reference, reference_attributes, faces, points, *rest, **kwargs)
        if points is not None:
            for face, s in zip(faces, found, strict=True):
                chin = chin_hair_score(face, points)
                candidates.append(
                    {
                        "face": current,
                        "chin": chin,
                        "lip": facial_hair_score(face, points),
                        "adds_facial_hair": s.adds_facial_hair,
                    }
                )
                previews.append(face)
                seen.append((chin, f"{chin:.0f} #{current}", lower_face(face, points, 96)))
        return found

    model._scores = recording
    secret = Secret(b"G" * 32, "key")
    bare = [i for i, r in enumerate(rows) if r["state"] is False and r["male"] >= 0.5][: args.anonymized]
    started, chosen = time.perf_counter(), {}
    for k, i in enumerate(bare):
        current = i
        out = model.anonymize(crops[i : i + 1], secret, seeds=[name_seed(names[i])], salts=[b"s" * 8])
        mask = out.masks[0][..., None]
        fake = np.round(tensor_to_crops(out.images)[0] * mask + originals[i] * (1 - mask)).astype(np.uint8)
        chosen[i] = fake
        rows[i]["fake_chin"] = chin_hair_score(fake, points[i])
        rows[i]["fake_lip"] = facial_hair_score(fake, points[i])
        print(
            f"{k + 1}/{len(bare)} {names[i]}: chin {rows[i]['chin']:.0f} -> fake {rows[i]['fake_chin']:.0f}",
            flush=True,
        )
    sorted_sheet(seen).save(args.out / "candidates.png")
    # the chosen fakes beside their originals
    pairs = [
        (
            rows[i]["fake_chin"],
            f"{rows[i]['fake_chin']:.0f} (orig {rows[i]['chin']:.0f})",
            Image.fromarray(
                np.hstack(
                    [
                        np.asarray(lower_face(originals[i], points[i], 96)),
                        np.asarray(lower_face(chosen[i], points[i], 96)),
                    ]
                )
            ),
        )
        for i in bare
    ]
    sorted_sheet(pairs, columns=8).save(args.out / "fakes.png")
    summary = {
        "read": len(rows),
        "anonymized": len(bare),
        "seconds": time.perf_counter() - started,
        "rows": rows,
        "candidates": candidates,
    }
    (args.out / "chin.json").write_text(json.dumps(summary, indent=1))
    # every crop read, to try other readings on without rendering again
    np.savez_compressed(
        args.out / "crops.npz",
        originals=np.stack(originals),
        points=points,
        previews=np.stack(previews),
        preview_face=[c["face"] for c in candidates],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
