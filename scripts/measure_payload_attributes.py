"""What the in-pixel identity payload does to the apparent attributes of the shipped default's fakes.

For the evaluation's faces (key A, the same dummy seeds as scripts/evaluate_default.py) the
anonymized photo is taken twice: as composed, just before the carrier embeds the payload, and as
written. Both are read by wrn-imdbwiki (evaluation only) and dlib-cydral (the chooser's network):
gender kept and age error against the original, with and without the payload, and the faces whose
gender reading the payload turns. Faces too small to carry a payload are left as they are and count
in both columns alike. Writes a side-by-side picture (original | before | after payload) of the
first carrying faces.

    python scripts/measure_payload_attributes.py --data ../shared/data --dataset celeba \
        --out runs/payload_attributes
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from g2face.align import align_face
from g2face.detection import YuNetDetector
from g2face.nn.crops import crops_to_tensor
from g2face.payload.carriers import pixel
from g2face.pipeline.g2face import G2FacePipeline
from g2face.priors.attributes import DlibAgeGenderEstimator, WideResNetAgeGenderEstimator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate_default import (  # noqa: E402  (the evaluation's faces and options)
    add_face_set_arguments,
    anonymized_with_key_a,
    evaluation_pairs,
    first_photo_faces,
)

VIEWS = ("original", "before_payload", "after_payload")


def capture_composed():
    """Patch the carrier so the image it is given (the composed photo) is recorded; returns the list."""
    composed = []
    embed = pixel.DctQimCarrier.embed

    def recording(carrier, image, *args, **kwargs):
        composed.append(image.copy())
        return embed(carrier, image, *args, **kwargs)

    pixel.DctQimCarrier.embed = recording
    return composed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_face_set_arguments(parser, default_dataset="celeba")
    parser.add_argument("--out", type=Path, default=Path("runs/payload_attributes"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    pairs, _ = evaluation_pairs(args.data, args.dataset, args.pairs)
    pipeline = G2FacePipeline.from_pretrained(args.model)
    estimators = {"wrn": WideResNetAgeGenderEstimator(), "dlib": DlibAgeGenderEstimator()}
    composed = capture_composed()
    rows, shown, started = [], [], time.perf_counter()
    for n, path, image, face in first_photo_faces(args.data, pairs, YuNetDetector()):
        composed.clear()
        written = anonymized_with_key_a(pipeline, image, face, path)
        carried = bool(written.faces[0].pixel_payload)
        before = composed[0] if composed else written.image
        crops = [align_face(view, face, 256).crop for view in (image, before, written.image)]
        row = {"pair": path, "face_width": float(face.box[2] - face.box[0]), "carried": carried}
        for name, estimator in estimators.items():
            found = estimator(crops_to_tensor(crops))
            row[f"{name}_male"] = [round(float(p), 3) for p in found.male_probability]
            row[f"{name}_age"] = [round(float(a), 1) for a in found.age]
        rows.append(row)
        if carried and len(shown) < 12:
            shown.append(np.concatenate(crops, axis=1))
        print(f"{n + 1}/{len(pairs)} {time.perf_counter() - started:.0f}s", flush=True)

    summary = {"faces": len(rows), "carried": sum(r["carried"] for r in rows)}
    for name in estimators:
        male = np.array([r[f"{name}_male"] for r in rows]) >= 0.5
        age = np.array([r[f"{name}_age"] for r in rows])
        for k, view in enumerate(VIEWS[1:], start=1):
            summary[f"gender_kept/{name}/{view}"] = float(np.mean(male[:, k] == male[:, 0]))
            summary[f"age_error/{name}/{view}"] = float(np.mean(np.abs(age[:, k] - age[:, 0])))
        summary[f"age_shift_by_payload/{name}"] = float(np.mean(age[:, 2] - age[:, 1]))
        summary[f"gender_turned_by_payload/{name}"] = [
            r["pair"] for r, m in zip(rows, male, strict=True) if m[1] != m[2]
        ]
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    if shown:
        Image.fromarray(np.concatenate(shown, axis=0)).save(args.out / "payload_faces.png")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
