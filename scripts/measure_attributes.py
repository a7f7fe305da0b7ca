"""How consistent are the attribute estimators themselves? Measured on LFW, before any anonymization.

One photo per person (sorted names, seeded shuffle), main face detected with YuNet and aligned to
the G2Face crop. Reported:
* agreement of the two estimators (dlib-cydral vs wrn-imdbwiki): gender agreement, age correlation
  and mean absolute age difference;
* test-retest on the horizontally flipped crop, per estimator (gender kept, mean |age change|) and
  for the cheek ITA (mean |ITA change|): the floor under any "attribute kept" figure;
* what each estimator says about the sample (share of men, age mean and spread) and its cost.

    PYTHONPATH=src python scripts/measure_attributes.py --faces 200 --out attributes.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from g2face.detection import YuNetDetector
from g2face.evaluation.attributes import compare_attributes, estimate, estimator_agreement, skin_tones
from g2face.evaluation.faces import FaceFinder
from g2face.priors.attributes import DlibAgeGenderEstimator, WideResNetAgeGenderEstimator
from g2face.priors.mediapipe_geometry import MediaPipeGeometry

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LFW = REPO.parent / "shared" / "data" / "lfw" / "lfw-deepfunneled"


def lfw_crops(root: Path, count: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """G2Face crops [N, 3, 256, 256] in [-1, 1] of one photo per LFW person, and their file names."""
    people = sorted(p for p in root.iterdir() if p.is_dir())
    random.Random(seed).shuffle(people)
    finder = FaceFinder(YuNetDetector())
    crops, names = [], []
    for person in people:
        photo = min(person.glob("*.jpg"))
        face = finder.find(np.asarray(Image.open(photo).convert("RGB")))
        if face is not None:
            crops.append(face.crop)
            names.append(photo.name)
        if len(crops) == count:
            break
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1, names


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="lfw-deepfunneled folder")
    parser.add_argument("--faces", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    if not args.lfw.is_dir():
        print(f"LFW not found at {args.lfw}: pass --lfw (the lfw-deepfunneled folder); nothing measured")
        return 0
    torch.set_grad_enabled(False)

    start = time.perf_counter()
    crops, names = lfw_crops(args.lfw, args.faces, args.seed)
    print(f"{len(crops)} faces detected and aligned in {time.perf_counter() - start:.0f} s")
    flipped = crops.flip(3)
    estimators = [DlibAgeGenderEstimator(), WideResNetAgeGenderEstimator()]
    geometry = MediaPipeGeometry()

    figures: dict = {"faces": len(crops), "estimators": {}}
    attributes = {}
    for estimator in estimators:
        start = time.perf_counter()
        result = estimate(estimator, crops)
        seconds = time.perf_counter() - start
        attributes[estimator.name] = result
        figures["estimators"][estimator.name] = {
            "share_male": float(result.male.float().mean()),
            "age_mean": float(result.age.mean()),
            "age_std": float(result.age.std()),
            "ms_per_face": 1000 * seconds / len(crops),
        }
    agreement = estimator_agreement(*attributes.values())
    figures["agreement"] = vars(agreement)
    retest = compare_attributes(crops, flipped, estimators, geometry)
    figures["flip_retest"] = retest.summary()
    ita = skin_tones(geometry, crops)
    toned = ita[~np.isnan(ita)]
    figures["ita"] = {
        "faces": len(toned),
        "greyscale": int(np.isnan(ita).sum()),
        **{stat: float(getattr(np, stat)(toned)) for stat in ("mean", "std", "min", "max")},
    }

    print(json.dumps(figures, indent=2))
    if args.out:
        per_face = {
            name: {
                **{f"{k}/age": float(v.age[i]) for k, v in attributes.items()},
                **{f"{k}/male_probability": float(v.male_probability[i]) for k, v in attributes.items()},
                "ita": float(ita[i]),
            }
            for i, name in enumerate(names)
        }
        args.out.write_text(json.dumps({"figures": figures, "faces": per_face}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
