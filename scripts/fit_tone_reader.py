"""Fit the skin-tone reader: a ridge regression from dlib's face descriptor (the search's second
judge, `priors.dlib_face.DlibFaceEncoder`) to the ITA of the photo's whole bare face skin
(`evaluation.attributes.face_skin_tones`), so an original's skin tone can be read apart from its
photo's light and white balance (issue 19).

A photo's own ITA follows its light as much as the skin: of the 30 lowest-ITA faces among 800 LFW
and CelebA photos, about half are light-skinned people in dim or coloured light. A recogniser's
descriptor is trained to ignore light, and dlib's keeps the skin tone: fitted on photos, its
out-of-fold prediction put 28 of 30 Black or South-Asian people among the 30 faces it reads
darkest (session 41; SFace's embedding, tried in session 25, correlated 0.12 at best). The
regression's labels are noisy (each photo's light) and light is independent of the descriptor, so
the fit averages the light out.

Photos: the first of each LFW person and each CelebA identity *not* in the evaluation's pairs
(`scripts/evaluate_default.py`), in a seeded order. Writes `src/g2face/assets/tone_reader.safetensors`
(`mean`, `scale`, `weight`, `bias`: `readers.LinearReader`), prints the 5-fold correlation and
error, and with --sheet draws the faces it reads darkest and lightest and those whose photo ITA is
lowest (research photos: keep the sheet out of the repository).

    python scripts/fit_tone_reader.py --data ../shared/data --faces 800 --sheet runs/tone_reader.png
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from safetensors.numpy import save_file
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate_default import _genuine_pairs, evaluation_pairs  # noqa: E402

from g2face.align import align_face  # noqa: E402
from g2face.detection import YuNetDetector  # noqa: E402
from g2face.evaluation.attributes import face_skin_tones  # noqa: E402
from g2face.io import read_image  # noqa: E402
from g2face.models.readers import TONE_READER_FILE  # noqa: E402
from g2face.nn.crops import crops_to_tensor  # noqa: E402
from g2face.priors.dlib_face import DlibFaceEncoder  # noqa: E402
from g2face.priors.mediapipe_geometry import MediaPipeGeometry  # noqa: E402

RIDGES = (10.0, 100.0, 1000.0, 3000.0)


def training_photos(data: Path, faces: int) -> list[str]:
    """Up to `faces` photos from LFW and as many from CelebA, one per person, no evaluation person."""
    chosen = []
    for dataset in ("lfw", "celeba"):
        pairs, person = evaluation_pairs(data, dataset, 150)
        held_out = {person(p) for pair in pairs for p in pair}
        everyone, _ = _genuine_pairs(data, dataset)
        firsts = {}
        for first, _ in everyone:
            firsts.setdefault(person(first), first)
        if dataset == "lfw":  # people with a single photo are in no genuine pair
            for folder in sorted((data / "lfw" / "lfw-deepfunneled").iterdir()):
                photos = sorted(folder.glob("*.jpg"))
                if photos:
                    firsts.setdefault(folder.name, str(photos[0].relative_to(data)))
        candidates = sorted(path for who, path in firsts.items() if who not in held_out)
        random.Random(41).shuffle(candidates)
        chosen += candidates[:faces]
    return chosen


def standardised_ridge(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, ...]:
    mean, scale = x.mean(0), x.std(0) + 1e-6
    a = (x - mean) / scale
    weight = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ (y - y.mean()))
    return mean, scale, weight, float(y.mean())


def out_of_fold(x: np.ndarray, y: np.ndarray, ridge: float, folds: int = 5) -> np.ndarray:
    order = np.random.default_rng(0).permutation(len(y))
    predicted = np.zeros(len(y))
    for fold in range(folds):
        test = order[fold::folds]
        train = np.setdiff1d(order, test)
        mean, scale, weight, bias = standardised_ridge(x[train], y[train], ridge)
        predicted[test] = ((x[test] - mean) / scale) @ weight + bias
    return predicted


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--faces", type=int, default=800, help="photos from each of LFW and CelebA")
    parser.add_argument("--out", type=Path, help="default: the package's assets folder")
    parser.add_argument("--sheet", type=Path, help="a picture of the darkest / lightest readings")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    detector = YuNetDetector()
    crops, paths = [], []
    for path in tqdm(training_photos(args.data, args.faces), desc="align", unit="photo"):
        image = read_image(args.data / path).rgb
        found = detector.detect(image)
        if found:
            crops.append(align_face(image, max(found, key=lambda d: d.width), 256).crop)
            paths.append(path)
    x = crops_to_tensor(crops)
    encoder, geometry = DlibFaceEncoder(), MediaPipeGeometry()
    descriptors = torch.cat([encoder(x[i : i + 32]) for i in range(0, len(x), 32)]).numpy().astype(np.float64)
    tones = face_skin_tones(geometry, x)
    toned = ~np.isnan(tones)
    descriptors, tones = descriptors[toned], tones[toned]
    crops = [c for c, t in zip(crops, toned, strict=True) if t]
    print(f"{len(tones)} photos with a skin tone (ITA {tones.mean():.1f} ± {tones.std():.1f}°)")
    best = None
    for ridge in RIDGES:
        predicted = out_of_fold(descriptors, tones, ridge)
        r = float(np.corrcoef(predicted, tones)[0, 1])
        error = float(np.abs(predicted - tones).mean())
        print(
            f"ridge {ridge:g}: out-of-fold r {r:.2f}, error {error:.1f}° (the mean alone: "
            f"{np.abs(tones - tones.mean()).mean():.1f}°)"
        )
        if best is None or r > best[1]:
            best = (ridge, r, predicted)
    ridge, r, predicted = best
    darkest = np.argsort(predicted)[:30]
    print(
        f"chosen ridge {ridge:g}; photo ITA of the 30 read darkest: median {np.median(tones[darkest]):.0f}°"
    )
    mean, scale, weight, bias = standardised_ridge(descriptors, tones, ridge)
    out = args.out or Path(__file__).resolve().parents[1] / "src" / "g2face" / "assets" / TONE_READER_FILE
    save_file(
        {
            "mean": mean.astype(np.float32),
            "scale": scale.astype(np.float32),
            "weight": weight.astype(np.float32),
            "bias": np.array([bias], np.float32),
        },
        str(out),
    )
    print(f"wrote {out}")
    if args.sheet:
        rows = [
            np.argsort(predicted)[:15],
            np.argsort(predicted)[15:30],
            np.argsort(-predicted)[:15],
            np.argsort(tones)[:15],
            np.argsort(tones)[15:30],
        ]
        sheet = np.concatenate(
            [np.concatenate([cv2.resize(crops[i], (72, 72)) for i in row], 1) for row in rows]
        )
        Image.fromarray(sheet).save(args.sheet)
        print(f"rows: read darkest (2), read lightest, lowest photo ITA (2) -> {args.sheet}")


if __name__ == "__main__":
    main()
