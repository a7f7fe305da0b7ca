"""Fit a photo reader (`g2face.models.readers`: glasses, or hair on the chin) on faces labelled by
eye, cross-validate it, and write it where the package ships it.

`scripts/labels/<reader>_by_eye.csv` lists photos under the data root (`path`) and whether the face
in them wears the thing (`glasses` / `chin_hair`: 1, 0, or empty where the session labelling them
could not tell, e.g. a microphone over the chin; those are left out): 400 LFW people's first photos
and 251 CelebA identities' third photos, labelled on sheets of eye bands and of lower faces (session
36); for glasses also 416 more (398 LFW people's first photos, 18 CelebA identities' fifth photos,
none of them in the evaluations' pairs; session 46): of 1,093 faces read, every one the session-36
reader read at P 0.02 or more and 96 of the rest, labelled on colour crops of the eyes (9 left
empty). Each face is detected and aligned as the anonymizer does it and read on its MediaPipe mesh.
Training faces are doubled by mirroring and each copy again by a blurred copy, the crop shrunk to
36-96 px and enlarged back (a small face's crop is an upsampled photo), so the reader holds on small
faces too.

Written to --out: report.json (5-fold cross-validated AUC and the shipped decisions' counts, at full
size and with crops blurred as 64/48/36-px crops would be, beside the hand-set reading the reader
replaced; each face's held-out P at full size), misreads.png (the cross-validated misreads and
unsure faces at the shipped thresholds, labelled with P and the label), and with --write the fitted
reader into src/g2face/assets.

    python scripts/fit_photo_reader.py glasses --data ../shared/data --out runs/glasses-reader [--write]
    python scripts/fit_photo_reader.py chin_hair --data ../shared/data --out runs/chin-reader [--write]
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors.numpy import save_file
from tqdm import tqdm

from g2face.detection import YuNetDetector
from g2face.evaluation.faces import FaceFinder
from g2face.models.fusion import (
    GLASSES_EDGE_ORIGINAL,
    GLASSES_SURE_ORIGINAL,
    chin_hair_score,
    chin_texture,
    glasses_score,
)
from g2face.models.readers import (
    CHIN_BARE_PROBABILITY,
    CHIN_HAIR_READER_FILE,
    GLASSES_NONE_PROBABILITY,
    GLASSES_READER_FILE,
    GLASSES_SURE_PROBABILITY,
    LinearReader,
    chin_features,
    eye_band,
    eye_band_features,
    glasses_state,
    lower_face_band,
)
from g2face.models.zoo import load_model
from g2face.nn.crops import crops_to_tensor

REPO = Path(__file__).resolve().parents[1]
L2 = 1e-2  # on standardised features; 1e-3 to 1e-1 gave the glasses reader the same AUC (0.987-0.988)
BLUR_SPANS = (36, 96)  # the augmentation's crop sizes, photo pixels
FOLDS = 5
SPANS = {"full": None, "64": 64, "48": 48, "36": 36}  # the held-out faces read as crops this size too
# Left-right pairs of the mesh points the readers and the hand-set readings use (a mirrored face's
# left eye corner is its right one); the midline points (nose base, lips, chin) stay.
MIRRORED_PAIRS = ((33, 263), (133, 362), (61, 291), (50, 280))
# The hand-set bare-chin reading the chin reader replaced (session 8): both below these.
HAND_SET_CHIN_HAIR, HAND_SET_CHIN_TEXTURE = 40.0, 2.0


def three_states(sure: np.ndarray, none: np.ndarray, labels: np.ndarray) -> dict:
    """How a yes / no / unsure decision fares against the labels."""
    wearers = labels == 1
    return {
        "sure": int(sure.sum()),
        "sure_precision": round(float(labels[sure].mean()), 3) if sure.any() else None,
        "sure_recall": round(float(sure[wearers].mean()), 3),
        "read_none": int(none.sum()),
        "with_it_read_none": int(none[wearers].sum()),
        "without_it_read_none": int(none[~wearers].sum()),
        "unsure": int((~sure & ~none).sum()),
    }


def glasses_decisions(p: np.ndarray, crops, points, span, labels) -> dict:
    edge = np.array([glasses_score(c, q, span) for c, q in zip(crops, points, strict=True)])
    states = [glasses_state(pi, ei) for pi, ei in zip(p, edge, strict=True)]  # reader and edge
    return {
        "reader": three_states(p >= GLASSES_SURE_PROBABILITY, p < GLASSES_NONE_PROBABILITY, labels),
        "shipped_rule": three_states(
            np.array([s is True for s in states]), np.array([s is False for s in states]), labels
        ),
        "hand_set_edge_score": three_states(
            edge >= GLASSES_SURE_ORIGINAL, edge < GLASSES_EDGE_ORIGINAL, labels
        ),
    }


def chin_decisions(p: np.ndarray, crops, points, span, labels) -> dict:
    hand_set = np.array(
        [
            chin_hair_score(c, q) < HAND_SET_CHIN_HAIR and chin_texture(c, q) < HAND_SET_CHIN_TEXTURE
            for c, q in zip(crops, points, strict=True)
        ]
    )
    never = np.zeros_like(hand_set)
    return {
        "shipped_rule": three_states(never, p < CHIN_BARE_PROBABILITY, labels),
        "hand_set_bare_chin": three_states(never, hand_set, labels),
        "reader_sure_at_0.8": three_states(p >= 0.8, never, labels),
        "reader_sure_at_0.9": three_states(p >= 0.9, never, labels),
    }


@dataclass(frozen=True)
class ReaderSpec:
    column: str
    features: Callable[[np.ndarray, np.ndarray], np.ndarray]
    decisions: Callable  # (held-out P, crops as read, points, span, labels) -> dict of three_states
    misread: Callable[[float, float], bool]  # (P, label): a decision the shipped rule gets wrong
    unsure: Callable[[float], bool]
    band: Callable[[np.ndarray, np.ndarray], np.ndarray]  # what a misreads.png tile shows
    file: str


READERS = {
    "glasses": ReaderSpec(
        "glasses",
        eye_band_features,
        glasses_decisions,
        lambda p, y: (y == 1 and p < GLASSES_NONE_PROBABILITY) or (y == 0 and p >= GLASSES_SURE_PROBABILITY),
        lambda p: GLASSES_NONE_PROBABILITY <= p < GLASSES_SURE_PROBABILITY,
        eye_band,
        GLASSES_READER_FILE,
    ),
    "chin_hair": ReaderSpec(
        "chin_hair",
        chin_features,
        chin_decisions,
        lambda p, y: y == 1 and p < CHIN_BARE_PROBABILITY,
        lambda p: CHIN_BARE_PROBABILITY <= p < 0.5,
        lower_face_band,
        CHIN_HAIR_READER_FILE,
    ),
}


def read_faces(data: Path, labels: Path, column: str):
    """Aligned uint8 crops, their mesh points in pixels, labels and paths of the labelled faces found."""
    rows = [r for r in csv.DictReader(labels.open()) if r[column] in ("0", "1")]
    finder, model = FaceFinder(YuNetDetector()), load_model("g2face-lite")
    crops, points, found, paths = [], [], [], []
    for row in tqdm(rows, desc="faces", unit="face"):
        face = finder.find(np.asarray(Image.open(data / row["path"]).convert("RGB")))
        if face is None:
            continue
        crops.append(face.crop)
        found.append(float(row[column]))
        paths.append(row["path"])
    for start in range(0, len(crops), 32):
        batch = crops_to_tensor(crops[start : start + 32])
        with torch.no_grad():
            landmarks = model.geometry(batch).landmarks[..., :2].numpy()
        points.extend(landmarks * model.image_size - 0.5)
    return crops, points, np.array(found), paths


def mirrored(crop: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The crop mirrored, with its mesh points (`MIRRORED_PAIRS` swap sides)."""
    flipped = points.copy()
    flipped[:, 0] = crop.shape[1] - 1 - points[:, 0]
    for left, right in MIRRORED_PAIRS:
        flipped[[left, right]] = flipped[[right, left]]
    return np.ascontiguousarray(crop[:, ::-1]), flipped


def as_small(crop: np.ndarray, span: int) -> np.ndarray:
    """The crop as it is when its face spans `span` photo pixels: shrunk, then enlarged back."""
    small = cv2.resize(crop, (span, span), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, crop.shape[:2][::-1], interpolation=cv2.INTER_CUBIC)


def training_set(spec: ReaderSpec, crops, points, labels, indices, seed: int):
    rng = np.random.default_rng(seed)
    features, targets = [], []
    for i in indices:
        for crop, mesh in ((crops[i], points[i]), mirrored(crops[i], points[i])):
            blurred = as_small(crop, int(rng.integers(*BLUR_SPANS)))
            features += [spec.features(crop, mesh), spec.features(blurred, mesh)]
            targets += [labels[i], labels[i]]
    return np.stack(features), np.array(targets)


def fit(features: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Standardisation and L2-regularised logistic regression (L-BFGS, float64)."""
    mean, scale = features.mean(0), features.std(0) + 1e-6
    x = torch.tensor((features - mean) / scale, dtype=torch.float64)
    y = torch.tensor(targets, dtype=torch.float64)
    weight = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([weight, bias], max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ weight + bias, y)
        loss = loss + L2 * (weight**2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return {
        "mean": mean.astype(np.float32),
        "scale": scale.astype(np.float32),
        "weight": weight.detach().numpy().astype(np.float32),
        "bias": bias.detach().numpy().astype(np.float32),
    }


def probabilities(spec: ReaderSpec, fitted: dict[str, np.ndarray], crops, points) -> np.ndarray:
    """P of each crop as the shipped reader would read it (`LinearReader`)."""
    reader = LinearReader(fitted["mean"], fitted["scale"], fitted["weight"], float(fitted["bias"][0]))
    return np.array([reader.probability(spec.features(c, p)) for c, p in zip(crops, points, strict=True)])


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    positive, negative = scores[labels == 1], scores[labels == 0]
    wins = (positive[:, None] > negative[None]).mean() + 0.5 * (positive[:, None] == negative[None]).mean()
    return float(wins)


def tile(band: np.ndarray, label: str) -> Image.Image:
    image = Image.fromarray(band).convert("RGB")
    image = image.resize((192, round(192 * image.height / image.width)))
    ImageDraw.Draw(image).text((3, 2), label, fill=(255, 255, 0))
    return image


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("reader", choices=sorted(READERS))
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--labels", type=Path, help="[default: scripts/labels/<reader>_by_eye.csv]")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--write", action="store_true", help="write the reader into src/g2face/assets")
    args = parser.parse_args()
    spec = READERS[args.reader]
    if not args.data.is_dir():
        print(f"no data at {args.data}: pass --data; nothing fitted")
        return 0
    torch.set_num_threads(2)
    labels_file = args.labels or REPO / "scripts" / "labels" / f"{args.reader}_by_eye.csv"
    crops, points, labels, paths = read_faces(args.data, labels_file, spec.column)
    n = len(labels)
    print(f"{n} faces, {int(labels.sum())} with {spec.column}")
    fold = np.random.default_rng(0).permutation(n) % FOLDS
    held_out = {name: np.zeros(n) for name in SPANS}
    for k in tqdm(range(FOLDS), desc="folds"):
        train, test = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        reader = fit(*training_set(spec, crops, points, labels, train, seed=k))
        for name, span in SPANS.items():
            seen = [crops[i] if span is None else as_small(crops[i], span) for i in test]
            held_out[name][test] = probabilities(spec, reader, seen, [points[i] for i in test])
    report: dict = {"faces": n, "with_it": int(labels.sum()), "folds": FOLDS, "l2": L2, "by_span": {}}
    for name, span in SPANS.items():
        p = held_out[name]
        seen = [c if span is None else as_small(c, span) for c in crops]
        report["by_span"][name] = {"reader_auc": round(auc(p, labels), 4)} | spec.decisions(
            p, seen, points, span, labels
        )
        print(name, json.dumps(report["by_span"][name]))
    report["held_out"] = [
        {"path": path, "label": int(label), "probability": round(float(prob), 4)}
        for path, label, prob in zip(paths, labels, held_out["full"], strict=True)
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    p = held_out["full"]
    wrong = [i for i in range(n) if spec.misread(p[i], labels[i])]
    unsure = [i for i in range(n) if spec.unsure(p[i])]
    tiles = [
        tile(spec.band(crops[i], points[i]), f"P {p[i]:.2f} label {int(labels[i])}") for i in wrong + unsure
    ]
    if tiles:
        columns, width, height = 6, tiles[0].width, tiles[0].height
        sheet = Image.new("RGB", (columns * width, -(-len(tiles) // columns) * height), "white")
        for k, image in enumerate(tiles):
            sheet.paste(image, ((k % columns) * width, (k // columns) * height))
        sheet.save(args.out / "misreads.png")
    print(f"{len(wrong)} misread, {len(unsure)} unsure (cross-validated): {args.out / 'misreads.png'}")
    if args.write:
        reader = fit(*training_set(spec, crops, points, labels, np.arange(n), seed=FOLDS))
        target = REPO / "src" / "g2face" / "assets" / spec.file
        metadata = {"faces": str(n), "with_it": str(int(labels.sum())), "l2": str(L2)}
        save_file(reader, str(target), metadata=metadata)
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
