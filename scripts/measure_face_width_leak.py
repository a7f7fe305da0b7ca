"""Leak against face width, controlled (docs/video.md, "Small faces"): LFW photos scaled down so the
face is W pixels wide, anonymized by the model and by the classic filters, judged by FaceNet.

    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/measure_face_width_leak.py \
        ../shared/data/lfw/lfw-deepfunneled --people 12 --widths 24 32 48 64 96

Per person with two photos and per width W, both photos are resized (INTER_AREA) so their YuNet
face is W px wide (the detection scaled with them: a detector misses faces this small). Reported
per W, over people:
* leak rate: FaceNet cosine between the anonymized face and its original (same photo, same scale)
  at or above `--threshold` (FaceNet's FAR-1e-3 threshold from full-size LFW), for the model
  (`g2face`, its candidate search as for a new track) and each classic filter (`--filters`);
* genuine match rate: the same person's other photo at the same width against the original (how
  well FaceNet still recognises a person at this width: a leak rate is only meaningful where
  this is high);
* impostor cosines between different people at this width (FaceNet's scores drift up on small,
  upscaled crops, so the full-size threshold is stricter than FAR 1e-3 there);
* the anonymizer's own identity cosine (SFace) to the original, as the video re-search sees it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np
import torch

from g2face.align import align_face
from g2face.detection import YuNetDetector
from g2face.io import read_image
from g2face.nn.crops import crops_to_tensor
from g2face.payload import Secret
from g2face.pipeline.g2face import CarrierSettings, G2FacePipeline
from g2face.priors.facenet import FaceNetEncoder
from g2face.types import FaceDetection


def scaled(rgb: np.ndarray, face: FaceDetection, width: float) -> tuple[np.ndarray, FaceDetection]:
    """`rgb` resized so that `face` is `width` px wide, and the face scaled with it."""
    factor = width / face.width
    size = (max(1, round(rgb.shape[1] * factor)), max(1, round(rgb.shape[0] * factor)))
    image = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    fx, fy = size[0] / rgb.shape[1], size[1] / rgb.shape[0]
    box = (face.box[0] * fx, face.box[1] * fy, face.box[2] * fx, face.box[3] * fy)
    points = tuple((x * fx, y * fy) for x, y in face.landmarks)
    return image, FaceDetection(box=box, landmarks=points, score=face.score)


def _summary(values: list[float], threshold: float) -> dict:
    a = np.asarray(values, float)
    return {
        "n": int(a.size),
        "rate": round(float((a >= threshold).mean()), 3),
        "mean": round(float(a.mean()), 3),
        "max": round(float(a.max()), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("lfw", type=Path)
    parser.add_argument("--people", type=int, default=12)
    parser.add_argument("--widths", type=float, nargs="+", default=[24, 32, 48, 64, 96])
    parser.add_argument("--filters", nargs="*", default=["blur", "pixelate"])
    parser.add_argument("--model", default="g2face-lite")
    parser.add_argument("--threshold", type=float, default=0.573)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    secret = Secret(bytes(range(32)), "key")
    carriers = CarrierSettings(container=False, pixel_payload=False)
    pipe = G2FacePipeline.from_pretrained(args.model, carriers=carriers)
    detector, facenet = YuNetDetector(), FaceNetEncoder().eval()

    def embed(image: np.ndarray, face: FaceDetection) -> np.ndarray:
        with torch.inference_mode():
            return facenet(crops_to_tensor([align_face(image, face, 256).crop]))[0].numpy()

    people = sorted(p for p in args.lfw.iterdir() if p.is_dir() and len(list(p.iterdir())) >= 2)
    step = max(1, len(people) // args.people)
    pairs = []
    for person in people[::step]:
        photos = []
        for path in sorted(person.iterdir())[:2]:
            rgb = read_image(path).rgb
            faces = detector.detect(rgb)
            if faces:
                photos.append((rgb, max(faces, key=lambda d: d.width)))
        if len(photos) == 2:
            pairs.append((person.name, *photos))
        if len(pairs) == args.people:
            break
    methods = ["g2face", *args.filters]
    result = {"people": [p[0] for p in pairs], "threshold": args.threshold, "model": args.model, "widths": {}}
    for width in args.widths:
        leak: dict[str, list[float]] = {m: [] for m in methods}
        sface, genuine, originals = [], [], []
        for _, (rgb_a, face_a), (rgb_b, face_b) in pairs:
            image, face = scaled(rgb_a, face_a, width)
            original = embed(image, face)
            originals.append(original)
            genuine.append(float(original @ embed(*scaled(rgb_b, face_b, width))))
            anon = pipe.anonymize(image, secret, detections=[face])
            leak["g2face"].append(float(original @ embed(anon.image, face)))
            sface.append(anon.faces[0].similarity)
            for name in args.filters:
                # min_face=inf: the face gets the classic filter the video small-face policy uses
                filtered = pipe.anonymize(
                    image, secret, detections=[face], min_face=math.inf, small_faces=name
                )
                leak[name].append(float(original @ embed(filtered.image, face)))
        stack = np.stack(originals)
        impostor = (stack @ stack.T)[np.triu_indices(len(originals), 1)]
        result["widths"][f"{width:g}"] = {
            "leak": {m: _summary(v, args.threshold) for m, v in leak.items()},
            "genuine": _summary(genuine, args.threshold),
            "impostor": _summary(impostor.tolist(), args.threshold),
            "sface_to_original": round(float(np.mean([s for s in sface if s is not None])), 3),
        }
        print(width, json.dumps(result["widths"][f"{width:g}"]), flush=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
