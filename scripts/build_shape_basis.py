"""Build the identity-shape PCA basis of the lite geometry prior (MediaPipe landmarks).

Every CelebA photo is detected (YuNet, largest face), aligned to the G2Face/FFHQ framing
(`g2face.align`), and run through the ported MediaPipe landmark network; the 468 mesh landmarks are
brought back into the canonical frame (pose and scale removed by the weighted Procrustes fit), then
averaged per identity so expression and per-photo noise cancel. PCA over the identity means gives
the basis: mean, the first K components and their standard deviations (coefficients are whitened).

The script also reports the mean MediaPipe tracking box (landmark box x1.5, square) of the aligned
faces: the framing `MESH_ROI_CENTER` / `MESH_ROI_SIZE` in g2face.priors.mediapipe_geometry.

    python scripts/build_shape_basis.py --data ../shared/data/celeba \
        --out src/g2face/assets/mediapipe_shape_basis.safetensors
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from g2face.align import align_face
from g2face.detection import YuNetDetector
from g2face.priors.mediapipe_geometry import SHAPE_BASIS_FILE, MediaPipeFaceModel, save_shape_basis

REPO = Path(__file__).resolve().parents[1]


def tracking_box(landmarks: np.ndarray) -> np.ndarray:
    """MediaPipe's box for the next frame, in unit crop coordinates: (centre x, centre y, side)."""
    lo, hi = landmarks[:, :2].min(0), landmarks[:, :2].max(0)
    return np.array([*(lo + hi) / 2, 1.5 * (hi - lo).max()])


def collect(data: Path, limit: int | None, batch: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Pose-normalised mesh landmarks [N, 468, 3], identity per face, tracking boxes [N, 3]."""
    with open(data / "identities.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:limit]
    detector, model = YuNetDetector(), MediaPipeFaceModel()
    shapes, identities, boxes, pending = [], [], [], []

    def flush() -> None:
        crops = torch.from_numpy(np.stack([c for c, _ in pending])).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.no_grad():
            landmarks, presence = model.landmarks(crops)
            _, normalised = model.fit_pose(landmarks)
        for i, (_, identity) in enumerate(pending):
            if presence[i] > 0:  # MediaPipe's threshold: sigmoid(presence) > 0.5
                shapes.append(normalised[i].numpy())
                identities.append(identity)
                boxes.append(tracking_box(landmarks[i].numpy()))
        pending.clear()

    for n, row in enumerate(rows):
        image = np.asarray(Image.open(data / row["file"]).convert("RGB"))
        faces = detector.detect(image)
        if faces:
            largest = max(faces, key=lambda d: d.width * d.height)
            pending.append((align_face(image, largest).crop, row["identity"]))
        if len(pending) == batch:
            flush()
        if n % 500 == 0:
            print(f"{n}/{len(rows)} photos, {len(shapes)} faces")
    if pending:
        flush()
    return np.stack(shapes), identities, np.stack(boxes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "celeba")
    parser.add_argument("--out", type=Path, default=REPO / "src" / "g2face" / "assets" / SHAPE_BASIS_FILE)
    parser.add_argument("--components", type=int, default=40, help="K, the number of basis vectors kept")
    parser.add_argument("--min-faces", type=int, default=5, help="identities with fewer faces are dropped")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N photos (quick runs)")
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)

    shapes, identities, boxes = collect(args.data, args.limit, args.batch)
    by_identity = defaultdict(list)
    for shape, identity in zip(shapes, identities, strict=True):
        by_identity[identity].append(shape.reshape(-1))
    means = np.stack([np.mean(v, 0) for v in by_identity.values() if len(v) >= args.min_faces]).astype(
        np.float64
    )
    if len(means) <= args.components:
        raise SystemExit(
            f"only {len(means)} identities with >= {args.min_faces} faces for K={args.components}"
        )

    mean = means.mean(0)
    _, singular, vt = np.linalg.svd(means - mean, full_matrices=False)
    variance = singular**2 / (len(means) - 1)
    ratio = variance / variance.sum()
    k = args.components
    # Principal directions have an arbitrary sign; fix it so rebuilding gives the same basis.
    signs = np.sign(vt[:k, np.abs(vt[:k]).argmax(1)].diagonal())
    components = vt[:k] * signs[:, None]
    info = {
        "description": "PCA of per-identity mean pose-normalised MediaPipe mesh landmarks (468x3, cm)",
        "source": f"{args.data.name}: {len(shapes)} faces, {len(means)} identities with >= {args.min_faces}",
        "components": k,
        "explained_variance": round(float(ratio[:k].sum()), 4),
        "explained_variance_ratio": json.dumps([round(float(r), 5) for r in ratio[:k]]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_shape_basis(args.out, mean, components, np.sqrt(variance[:k]), info)

    cumulative = np.cumsum(ratio)
    print(f"{len(shapes)} faces, {len(means)} identities -> {args.out}")
    for K in (5, 10, 20, 40, 80):
        if len(cumulative) >= K:
            print(f"  K={K:3d}: {cumulative[K - 1]:.1%} of the between-identity variance")
    centre, side = boxes[:, :2].mean(0), boxes[:, 2].mean()
    print(f"mean tracking box: centre ({centre[0]:.4f}, {centre[1]:.4f}), side {side:.4f} "
          f"(std {boxes[:, 0].std():.4f}, {boxes[:, 1].std():.4f}, {boxes[:, 2].std():.4f})")  # fmt: skip


if __name__ == "__main__":
    main()
