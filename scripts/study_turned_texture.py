"""Does a turned face keep its apparent gender under the turned-face fallback? (issue 19)

Faces turned beyond `FusionSettings.max_yaw` (or seen in profile) get a classic blur instead of a
fake. On the 150 CelebA faces of the evaluation the 7 such faces lost their gender to dlib on 4 and
to wrn on 3, while dlib kept it on all 143 faces given a fake. This study finds turned faces among
CelebA's photos (in the order of its identity table; yaw from the geometry prior as the anonymizer
reads it) and anonymizes each with the evaluation's key A under the shipped fallback and under
arms that lay the original's fine skin texture back over the blur at a given strength
(`fusion.textured_fill`: pores and stubble, clipped to the bare skin's range, never its outline).
Per arm: gender kept (wrn, dlib), age error, and FaceNet / SFace cosine of the anonymized face to
another photo of the person (matches at the CelebA evaluation's FAR-1e-3 thresholds).

    python scripts/study_turned_texture.py --data ../shared/data --faces 60 --arms 0,1,2 \
        --cache runs/turned_pairs.json --out runs/turned_texture.json

Session 32 (60 turned faces, 40-89°; nothing shipped): the blur keeps gender for 0.77 (wrn) and
0.58 (dlib) of them, and each estimator reads a blurred face by its own habit: wrn keeps 34 of the
42 originals it reads as men and 12 of 18 women, dlib 6 of 31 men and 29 of 29 women. The texture
moves both towards "male" (strength 1: wrn men 39/42, women 6/18, overall 0.75; dlib men 14/31,
women 26/29, overall 0.65; strength 2: 0.65 / 0.62): a bias shifted, not a gender kept. FaceNet's
cosine to another photo of the person stayed near 0 in every arm (no match). A second run of
arms 0 and 1 (the payload's salts are random, so its pixels differ) read 0.75 / 0.60 and
0.77 / 0.63: a face or two either way is noise here.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
from evaluate_default import _main_face, anonymized_with_key_a

import g2face.models.fusion_anonymizer as fusion_anonymizer
from g2face.align import align_face, seen_in_profile
from g2face.evaluation.attributes import compare_attributes
from g2face.io import read_image
from g2face.models.classic import stronger_filter
from g2face.models.fusion import NUM_MESH_POINTS, face_width, skin_mask, textured_fill
from g2face.nn.crops import crops_to_tensor, tensor_to_crops
from g2face.pipeline.g2face import G2FacePipeline
from g2face.priors.attributes import DlibAgeGenderEstimator, WideResNetAgeGenderEstimator
from g2face.priors.facenet import FaceNetEncoder
from g2face.priors.sface import SFaceEncoder

# FAR-1e-3 thresholds of the 150-pair CelebA evaluation (session 31 metrics.json)
THRESHOLDS = {"facenet": 0.5396, "sface": 0.3811}


class TexturedFilter:
    """A classic filter with `strength` times the filtered crop's own fine skin texture laid back
    over it (`fusion.textured_fill`, clipped to its bare skin's range, none on its outline, hair or
    background): the turned-face fallback filters the original crop itself, so the texture is
    the original's. Mesh points from the geometry prior."""

    def __init__(self, inner, geometry, strength: float) -> None:
        self.inner, self.geometry, self.strength = inner, geometry, strength

    def anonymize(self, crop):
        filtered = self.inner.anonymize(crop)
        size = crop.shape[-1]
        points = (self.geometry(crop).landmarks[0, :, :2] * size - 0.5).cpu().numpy()
        original, blurred = tensor_to_crops(crop)[0], tensor_to_crops(filtered)[0]
        width = face_width(points[:NUM_MESH_POINTS])
        skin = skin_mask(points, original)
        ones = np.ones((size, size), np.float32)
        textured = textured_fill(blurred, ones, original, skin, width, self.strength)
        return crops_to_tensor([np.clip(np.rint(textured), 0, 255).astype(np.uint8)]).to(filtered)


def turned_faces(data: Path, pipeline: G2FacePipeline, count: int, cache: Path | None = None):
    """(path, image, face, other crop, yaw) of CelebA photos the anonymizer would not render;
    `cache`: a JSON list of the pairs found, read instead of scanning when it exists (the scan reads
    ~20 photos a turned face)."""
    model = pipeline.model
    if cache is not None and cache.exists():
        pairs = [tuple(p) for p in json.loads(cache.read_text())]
    else:  # every photo (the evaluation's first photos hold 9 turned faces), with another of the person
        with open(data / "celeba" / "identities.csv") as table:
            people = {row["file"]: row["identity"] for row in csv.DictReader(table)}
        photos: dict[str, list[str]] = {}
        for file, person in people.items():
            photos.setdefault(person, []).append(file)
        pairs = [
            (f"celeba/{file}", f"celeba/{next(o for o in photos[person] if o != file)}")
            for file, person in people.items()
            if len(photos[person]) > 1
        ]
    found, seconds = [], []
    for first, second in pairs:
        image = read_image(data / first).rgb
        face = _main_face(pipeline.detector, image)
        if face is None:
            continue
        crop = crops_to_tensor([align_face(image, face, model.image_size).crop])
        with torch.inference_mode():
            yaw = abs(float(model.geometry(crop).pose[0, 0]))
        if yaw <= model.fusion.max_yaw and not seen_in_profile(face):
            continue
        other_image = read_image(data / second).rgb
        other = _main_face(pipeline.detector, other_image)
        if other is None:
            continue
        found.append((first, image, face, align_face(other_image, other, model.image_size).crop, yaw))
        seconds.append(second)
        print(f"turned {len(found)}: {first} yaw {yaw:.0f}", flush=True)
        if len(found) == count:
            break
    if cache is not None:
        cache.write_text(json.dumps([[f[0], s] for f, s in zip(found, seconds, strict=True)]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--faces", type=int, default=30)
    parser.add_argument("--arms", default="0,1", help="texture strengths, 0 = the shipped blur")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=None, help="JSON list of the turned faces' pairs")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    pipeline = G2FacePipeline.from_pretrained("g2face-lite", model_options={"attributes": "keep"})
    size = pipeline.model.image_size
    faces = turned_faces(args.data, pipeline, args.faces, args.cache)
    facenet, sface = FaceNetEncoder(), SFaceEncoder()
    estimators = [WideResNetAgeGenderEstimator(), DlibAgeGenderEstimator()]
    originals = crops_to_tensor([align_face(image, face, size).crop for _, image, face, _, _ in faces])
    others = crops_to_tensor([o for *_, o, _ in faces])
    other_emb = {"facenet": facenet(others).numpy(), "sface": sface(others).numpy()}
    summary = {"faces": len(faces), "arms": {}}
    geometry = pipeline.model.geometry
    for strength in [float(s) for s in args.arms.split(",")]:
        fusion_anonymizer.stronger_filter = (
            (lambda name, level, s=strength: TexturedFilter(stronger_filter(name, level), geometry, s))
            if strength > 0
            else stronger_filter
        )
        started = time.perf_counter()
        anonymized = []
        for path, image, face, _, _ in faces:
            out = anonymized_with_key_a(pipeline, image, face, path)
            anonymized.append(align_face(out.image, face, size).crop)
        seconds = (time.perf_counter() - started) / len(faces)
        batch = crops_to_tensor(anonymized)
        comparison = compare_attributes(originals, batch, estimators)
        arm = {"seconds_per_face": round(seconds, 2), "attributes": comparison.summary()}
        for name, encoder in (("facenet", facenet), ("sface", sface)):
            cos = (encoder(batch).numpy() * other_emb[name]).sum(1)
            arm[f"{name}_mean_cosine"] = round(float(cos.mean()), 4)
            arm[f"{name}_matches"] = int((cos >= THRESHOLDS[name]).sum())
            arm[f"{name}_cosines"] = [round(float(c), 3) for c in cos]
        for name, (before, after) in comparison.estimates.items():
            arm[f"{name}_male_probability"] = [
                [round(float(b), 2), round(float(a), 2)]
                for b, a in zip(before.male_probability, after.male_probability, strict=True)
            ]
        summary["arms"][str(strength)] = arm
        print(
            json.dumps({k: v for k, v in arm.items() if not k.endswith(("cosines", "probability"))}),
            flush=True,
        )
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
