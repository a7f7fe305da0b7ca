"""FaceNet-CASIA's cosine threshold at a false-accept rate, from impostor pairs of LFW: the first
photo of each of `--people` distinct people (sorted names), their largest YuNet face aligned as
everywhere in g2face (`align_face`, 256 px), every pair of different people an impostor pair.

    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/facenet_far_threshold.py \
        ../shared/data/lfw/lfw-deepfunneled --people 400

README's 0.535 came from 780 impostor pairs (40 people): at FAR 1e-3 that is their maximum.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from g2face.align import align_face
from g2face.detection import YuNetDetector
from g2face.evaluation.metrics import threshold_at_far
from g2face.io import read_image
from g2face.nn.crops import crops_to_tensor
from g2face.priors.facenet import FaceNetEncoder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("lfw", type=Path)
    parser.add_argument("--people", type=int, default=400)
    parser.add_argument("--far", type=float, nargs="+", default=[1e-3, 1e-4])
    args = parser.parse_args()
    torch.set_num_threads(1)
    detector, facenet = YuNetDetector(), FaceNetEncoder().eval()
    people = sorted(p for p in args.lfw.iterdir() if p.is_dir())
    step = max(1, len(people) // args.people)
    crops = []
    for person in people[::step][: args.people]:
        rgb = read_image(sorted(person.iterdir())[0]).rgb
        faces = detector.detect(rgb)
        if faces:
            crops.append(align_face(rgb, max(faces, key=lambda d: d.width), 256).crop)
    with torch.inference_mode():
        embeddings = torch.cat(
            [facenet(crops_to_tensor(crops[i : i + 32])) for i in range(0, len(crops), 32)]
        )
    scores = (embeddings @ embeddings.T).numpy()[np.triu_indices(len(crops), 1)]
    result = {
        "people": len(crops),
        "impostor_pairs": int(scores.size),
        "max": round(float(scores.max()), 4),
        **{f"threshold_far_{far:g}": round(threshold_at_far(scores, far), 4) for far in args.far},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
