"""How often another estimator reads a candidate the chooser calls surely of the original's gender as
the other gender, by how sure each of the chooser's two readings of it is (issue 19).

The chooser reads apparent gender twice (`priors.attributes.ProbedGenderEstimator`: Cydral's gender
network and a probe on dlib's face descriptor) and decides on their mean logit. Here every candidate
the search scored for the evaluation's faces (key A, the same dummy seeds as
scripts/evaluate_default.py) is read by each reading alone and by wrn-imdbwiki (evaluation only,
never used to choose), and the final fake too. Diagnosis only: nothing here changes the anonymizer.

    python scripts/study_candidate_gender.py --data ../shared/data --dataset celeba \
        --out runs/candidate_gender.json

Prints, over the candidates the chooser read surely (mean reading at least `gender_margin` from 0.5),
wrn's share on the other side by the distance of the mean and of the weaker reading from 0.5, and
the faces whose final fake wrn reads as another gender than the original.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from g2face.align import align_face
from g2face.detection import YuNetDetector
from g2face.models import fusion_anonymizer
from g2face.nn.crops import crops_to_tensor
from g2face.pipeline.g2face import G2FacePipeline
from g2face.priors.attributes import WideResNetAgeGenderEstimator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate_default import (  # noqa: E402  (the evaluation's faces and options)
    add_face_set_arguments,
    anonymized_with_key_a,
    evaluation_pairs,
    first_photo_faces,
)

BANDS = ((0.0, 0.45), (0.45, 0.48), (0.48, 0.49), (0.49, 0.495), (0.495, 0.499), (0.499, 0.5))


def capture_pools():
    """Patch the search so each face's scored pool (scores, previews) is recorded; returns the list."""
    pools = []
    choose = fusion_anonymizer._FaceSearch._choose

    def recording(search):
        pools.append(([c[0] for c in search.pool], [c[1].preview for c in search.pool]))
        return choose(search)

    fusion_anonymizer._FaceSearch._choose = recording
    return pools


def readings(reader, wrn, crops) -> list[tuple[float, float, float]]:
    """(Cydral's network, descriptor probe, wrn) P(male) per crop."""
    x = crops_to_tensor(list(crops))
    network = reader.base(x).male_probability
    probe = reader.probe_logit(x).sigmoid()
    other = wrn(x).male_probability
    return list(zip(network.tolist(), probe.tolist(), other.tolist(), strict=True))


def collect(args) -> list[dict]:
    pairs, _ = evaluation_pairs(args.data, args.dataset, args.pairs)
    pipeline = G2FacePipeline.from_pretrained(args.model)
    reader, wrn = pipeline.model.attributes, WideResNetAgeGenderEstimator()
    pools = capture_pools()
    rows, started = [], time.perf_counter()
    for n, path, image, face in first_photo_faces(args.data, pairs, YuNetDetector()):
        pools.clear()
        anonymized = anonymized_with_key_a(pipeline, image, face, path)
        if not pools:  # turned too far: filtered, no candidates
            continue
        scores, previews = pools[-1]
        original, final = readings(
            reader, wrn, [align_face(image, face, 256).crop, align_face(anonymized.image, face, 256).crop]
        )
        rows.append(
            {
                "pair": path,
                "original": original,
                "final": final,
                "candidates": [
                    {
                        "network": a,
                        "probe": b,
                        "wrn": c,
                        "mean": s.male_probability,
                        "similarity": s.similarity,
                    }
                    for (a, b, c), s in zip(readings(reader, wrn, previews), scores, strict=True)
                ],
            }
        )
        print(f"{n + 1}/{len(pairs)} {time.perf_counter() - started:.0f}s", flush=True)
    return rows


def summarise(rows: list[dict], margin: float) -> None:
    sure = []
    for row in rows:
        for c in row["candidates"]:
            side = 1 if c["mean"] >= 0.5 else -1
            if abs(c["mean"] - 0.5) < margin:
                continue
            weaker = min(side * (c["network"] - 0.5), side * (c["probe"] - 0.5))
            sure.append((side * (c["mean"] - 0.5), weaker, (c["wrn"] >= 0.5) != (side > 0)))
    table = np.array(sure, dtype=float).reshape(-1, 3)
    print(f"{len(table)} candidates read surely (mean at least {margin} from 0.5)")
    for column, label in ((0, "mean reading"), (1, "weaker reading")):
        for low, high in BANDS:
            inside = (table[:, column] >= low) & (table[:, column] < high)
            if inside.any():
                print(f"  {label} {low}-{high} from 0.5: {inside.sum()} candidates, wrn reads "
                      f"{table[inside, 2].mean():.3f} as the other gender")  # fmt: skip
    lost = [r for r in rows if (r["original"][2] >= 0.5) != (r["final"][2] >= 0.5)]
    print(f"final fakes wrn reads as another gender than the original: {len(lost)} of {len(rows)}")
    for r in lost:
        print(f"  {r['pair']}: original (network, probe, wrn) {np.round(r['original'], 2).tolist()}, "
              f"fake {np.round(r['final'], 2).tolist()}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_face_set_arguments(parser, default_dataset="celeba")
    parser.add_argument("--out", type=Path, required=True, help="JSON of every candidate's readings")
    parser.add_argument("--summarise-only", action="store_true", help="read --out instead of collecting")
    parser.add_argument("--margin", type=float, default=0.48, help="sure: mean reading this far from 0.5 "
                        "(the shipped file's CandidateSettings.gender_margin)")  # fmt: skip
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.summarise_only:
        rows = json.loads(args.out.read_text())
    else:
        rows = collect(args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows))
    summarise(rows, args.margin)


if __name__ == "__main__":
    main()
