"""Faces turned in the image plane (people lying down, a photo saved sideways without its EXIF
orientation): does the detector find them, with its five points in the right order?

LFW photos turned by each angle (`--angles`, grey fill) are detected with YuNet as it scans by
default (`rotated_scans`: also a quarter, half and three quarters turned) and upright only. Per angle:
how often the main face (the detection holding the photo's centre) is found, and, for the found
ones, how often its five points are in the order of the upright photo's detection turned the same
way (`POINT_ORDERS`: a detection whose points are in another order would align the face upside
down or mirrored). On upright photos (LFW, CelebA, the wild photos) it also counts
the detections the turned scans add that overlap no upright detection (false faces, or faces
missed upright), saving them as a picture (`--sheet`) to look at.

    PYTHONPATH=src python scripts/study_turned_photos.py --data ../shared/data --photos 100 \\
        --sheet runs/turned_extra.png
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image

from g2face.detection import YuNetDetector
from g2face.detection.base import iou

TILE = 96
POINT_ORDERS = ((0, 1, 2, 3, 4), (1, 0, 2, 4, 3), (3, 4, 2, 0, 1), (4, 3, 2, 1, 0))
"""The five points as the detector labels them (right eye, left eye, nose, right and left mouth
corner), mirrored, upside down, and both: points "in order" are nearer the expected ones in the first
order than in any other (YuNet places the points of a tilted face less precisely, so a distance bar
would count imprecision as disorder)."""


def _turn_points(points: np.ndarray, angle: float, size: tuple[int, int], new_size: tuple[int, int]):
    """Points of an image `size` (w, h) in PIL's `rotate(angle, expand=True)` of it (`new_size`)."""
    theta = np.deg2rad(angle)
    centre, new_centre = (np.array(size) - 1) / 2, (np.array(new_size) - 1) / 2
    d = points - centre
    # PIL turns counter-clockwise for a positive angle, with y pointing down
    x = d[:, 0] * np.cos(theta) + d[:, 1] * np.sin(theta)
    y = -d[:, 0] * np.sin(theta) + d[:, 1] * np.cos(theta)
    return np.stack([x, y], axis=1) + new_centre


def _main_face(found, centre: np.ndarray):
    """The most confident detection whose box holds `centre` (x, y), or None."""
    holding = [f for f in found if f.box[0] <= centre[0] <= f.box[2] and f.box[1] <= centre[1] <= f.box[3]]
    return max(holding, key=lambda f: f.score) if holding else None


def _in_order(found: np.ndarray, expected: np.ndarray) -> bool:
    """Whether the five `found` points are nearer `expected` in the detector's order than in any
    other of `POINT_ORDERS`."""
    error = {order: np.linalg.norm(found - expected[list(order)], axis=1).sum() for order in POINT_ORDERS}
    return min(error, key=error.get) == POINT_ORDERS[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--photos", type=int, default=100, help="LFW photos turned (and CelebA ones upright)")
    parser.add_argument("--angles", type=float, nargs="+", default=[0, 30, 45, 60, 90, 135, 180, 270])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--sheet", type=Path, default=None)
    args = parser.parse_args()
    both = YuNetDetector()
    upright = YuNetDetector(rotated_scans=False)
    rng = random.Random(0)
    lfw = rng.sample(sorted((args.data / "lfw" / "lfw-deepfunneled").glob("*/*.jpg")), args.photos)
    celeba = rng.sample(sorted((args.data / "celeba" / "images").glob("*")), args.photos)
    wild = sorted((args.data / "wild" / "photos").glob("*"))

    results: dict = {"angles": {}}
    for angle in args.angles:
        counts = dict.fromkeys(["upright_only", "rotated_scans"], 0)
        counts |= {f"points_in_order/{name}": 0 for name in list(counts)}
        for path in lfw:
            photo = Image.open(path).convert("RGB")
            reference = _main_face(upright.detect(np.asarray(photo)), (np.array(photo.size) - 1) / 2)
            turned = np.asarray(
                photo.rotate(angle, resample=Image.BILINEAR, expand=True, fillcolor=(128,) * 3)
            )
            centre = np.array(turned.shape[1::-1]) / 2
            expected = None
            if reference is not None:
                points = np.array(reference.landmarks)
                expected = _turn_points(points, angle, photo.size, turned.shape[1::-1])
            for name, detector in (("upright_only", upright), ("rotated_scans", both)):
                face = _main_face(detector.detect(turned), centre)
                if face is None:
                    continue
                counts[name] += 1
                if expected is not None:
                    counts[f"points_in_order/{name}"] += _in_order(np.array(face.landmarks), expected)
        results["angles"][f"{angle:g}"] = {
            "found_upright_only": counts["upright_only"] / len(lfw),
            "found_with_rotated_scans": counts["rotated_scans"] / len(lfw),
            "points_in_order_of_found_upright_only": counts["points_in_order/upright_only"]
            / max(counts["upright_only"], 1),
            "points_in_order_of_found_with_rotated_scans": counts["points_in_order/rotated_scans"]
            / max(counts["rotated_scans"], 1),
        }
        print(f"{angle:g}°", results["angles"][f"{angle:g}"], flush=True)

    extra_crops, extra = [], []
    totals = {"photos": 0, "upright": 0, "with_rotated_scans": 0}
    for name, files in (("lfw", lfw), ("celeba", celeba), ("wild", wild)):
        for path in files:
            image = np.asarray(Image.open(path).convert("RGB"))
            plain, all_found = upright.detect(image), both.detect(image)
            totals["photos"] += 1
            totals["upright"] += len(plain)
            totals["with_rotated_scans"] += len(all_found)
            for face in all_found:
                if all(iou(face.box, p.box) < 0.3 for p in plain):
                    extra.append(
                        {
                            "photo": f"{name}/{path.name}",
                            "score": round(face.score, 3),
                            "width": round(face.width),
                        }
                    )
                    x0, y0, x1, y1 = (int(round(v)) for v in face.box)
                    crop = image[max(y0, 0) : max(y1, 1), max(x0, 0) : max(x1, 1)]
                    if crop.size:
                        extra_crops.append(np.asarray(Image.fromarray(crop).resize((TILE, TILE))))
    results["upright_photos"] = totals | {"added_by_rotated_scans": extra}
    print(json.dumps(results["upright_photos"], indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
    if args.sheet and extra_crops:
        per_row = 8
        sheet = Image.new("RGB", (per_row * TILE, -(-len(extra_crops) // per_row) * TILE), "white")
        for k, crop in enumerate(extra_crops):
            sheet.paste(Image.fromarray(crop), ((k % per_row) * TILE, (k // per_row) * TILE))
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(args.sheet)


if __name__ == "__main__":
    main()
