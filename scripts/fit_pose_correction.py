"""Fit the default model's pose correction (`g2face.models.gie.PoseCorrection`): the directions in
the generator's W that turn (yaw) and tilt (pitch) a face, and the gains that make a dummy rendered
at a real face's geometry come out at that face's yaw and pitch.

1. Directions: ridge regression of the bank's MediaPipe yaw and pitch on its w (samples of every
   given bank folder, duplicates dropped); held-out R² printed (15 % of the samples).
2. Gains: on `--calibrate` real CelebA photos (every `--every`-th with a face), one keyed dummy per
   face is rendered at the face's geometry with each pair of gains of the grid, and the render's
   pose is read with MediaPipe; the pair with the smallest mean |yaw| + |pitch| error is kept.
3. Check: the same on `--check` LFW photos (one per person), without and with the correction.

The tensors are written into the model file (`pose_correction.*`), the rest of it kept as it is.

    python scripts/fit_pose_correction.py runs/lite/bank src/g2face/weights/g2face-lite.safetensors \
        --data ../shared/data
"""

from __future__ import annotations

import argparse
import csv
import itertools
from pathlib import Path

import numpy as np
import torch

from g2face.align import align_face
from g2face.detection import YuNetDetector
from g2face.io import read_image
from g2face.models.checkpoints import add_fusion_tensors, load_fusion_model
from g2face.models.fusion_anonymizer import FusionAnonymizer, candidate_seed
from g2face.models.gie import POSE_KEYS, PoseCorrection
from g2face.models.zoo import load_model
from g2face.nn.crops import crops_to_tensor
from g2face.training.stages import load_bank

SIZE = 256


def bank_samples(folders: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """w [N, 512] and (yaw, pitch) [N, 2] of every bank sample, each distinct w once."""
    ws, poses, seen = [], [], set()
    for folder in folders:
        bank = load_bank(folder, torch.device("cpu"))
        for w, pose in zip(bank["w"].double().numpy(), bank["pose"].double().numpy(), strict=True):
            key = w[:4].tobytes()
            if key not in seen:
                seen.add(key)
                ws.append(w)
                poses.append(pose[:2])
    return np.array(ws), np.array(poses)


def ridge(w: np.ndarray, y: np.ndarray, strength: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directions [2, D], bias [2] and mean [D] of y ≈ (w − mean) · directionsᵀ + bias."""
    mean = w.mean(0)
    centred = w - mean
    gram = centred.T @ centred + strength * np.eye(w.shape[1])
    directions = np.linalg.solve(gram, centred.T @ (y - y.mean(0))).T
    return directions, y.mean(0), mean


def real_crops(files: list[Path], limit: int) -> list[np.ndarray]:
    detector, crops = YuNetDetector(), []
    for path in files:
        image = read_image(path).rgb
        faces = detector.detect(image)
        if faces:
            crops.append(align_face(image, max(faces, key=lambda f: f.width), SIZE).crop)
        if len(crops) == limit:
            break
    return crops


def pose_errors(model: FusionAnonymizer, crops: list[np.ndarray], gains: list[tuple[float, float] | None]):
    """Mean |yaw| and |pitch| error [len(gains), 2] of one keyed dummy per crop rendered at its
    geometry with each gain pair (None: no correction)."""
    correction = model.pose_correction
    errors = np.zeros((len(gains), len(crops), 2))
    for i, crop in enumerate(crops):
        x = crops_to_tensor([crop])
        geometry = model.geometry(x)
        vector = model.geometry_vector(geometry)
        dummy = model.dummy_identities([candidate_seed(i, 1)], x.dtype)
        for k, gain in enumerate(gains):
            model.pose_correction = correction if gain is not None else None
            if gain is not None:
                correction.gain.copy_(torch.tensor(gain))
            render = model.render_dummies(dummy, vector, model.candidates.spread)
            errors[k, i] = np.abs(model.geometry(render).pose[0, :2].numpy() - geometry.pose[0, :2].numpy())
    model.pose_correction = correction
    return errors.mean(1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "banks", type=Path, nargs="+", help="bank folders (batch_*.safetensors) of the generator"
    )
    parser.add_argument("model", type=Path, help="the geometric-fusion model file to write into")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--ridge", type=float, default=10.0)
    parser.add_argument("--calibrate", type=int, default=40, help="CelebA faces for the gains")
    parser.add_argument("--check", type=int, default=40, help="LFW faces to check them on")
    parser.add_argument("--every", type=int, default=23)
    parser.add_argument("--yaw-gains", type=float, nargs="+", default=[2.0, 2.5, 3.0, 3.5, 4.0])
    parser.add_argument("--pitch-gains", type=float, nargs="+", default=[1.0, 1.5, 2.0, 2.5])
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    load_fusion_model(args.model)  # refuses anything but a geometric-fusion model file

    w, pose = bank_samples(args.banks)
    order = np.random.default_rng(0).permutation(len(w))
    train, held = order[: int(0.85 * len(w))], order[int(0.85 * len(w)) :]
    directions, bias, mean = ridge(w[train], pose[train], args.ridge)
    predicted = (w[held] - mean) @ directions.T + bias
    r2 = 1 - ((predicted - pose[held]) ** 2).mean(0) / pose[held].var(0)
    print(f"bank: {len(w)} samples; held-out R² yaw {r2[0]:.3f}, pitch {r2[1]:.3f}")
    directions, bias, mean = ridge(w, pose, args.ridge)

    model = load_model(args.model, attributes="free")
    groups = model.gie.style_mlp.group_sizes
    model.pose_correction = PoseCorrection(mean.shape[0], groups[0] + groups[1])
    for name, value in (("directions", directions), ("bias", bias), ("mean", mean)):
        getattr(model.pose_correction, name).copy_(torch.from_numpy(value.astype(np.float32)))

    index = args.data / "celeba" / "identities.csv"
    celeba = [args.data / "celeba" / r["file"] for r in csv.DictReader(index.open())][:: args.every]
    grid = list(itertools.product(args.yaw_gains, args.pitch_gains))
    errors = pose_errors(model, real_crops(celeba, args.calibrate), [None, *grid])
    best = 1 + int(np.argmin(errors[1:].sum(1)))
    gain = grid[best - 1]
    print(
        f"CelebA ({args.calibrate}): |yaw|, |pitch| error {errors[0].round(1)} without,",
        f"{errors[best].round(1)} with gains {gain}",
    )
    for g, e in zip(grid, errors[1:], strict=True):
        print(f"  gains {g}: {e.round(2)}")
    lfw = sorted((args.data / "lfw" / "lfw-deepfunneled").glob("*/*_0001.jpg"))[::5]
    check = pose_errors(model, real_crops(lfw, args.check), [None, gain])
    print(f"LFW ({args.check}): |yaw|, |pitch| error {check[0].round(1)} without, {check[1].round(1)} with")
    if args.dry_run:
        return
    values = (directions, bias, mean, np.array(gain))
    add_fusion_tensors(
        args.model,
        {
            k: torch.from_numpy(np.asarray(v, dtype=np.float32))
            for k, v in zip(POSE_KEYS, values, strict=True)
        },
    )
    print(f"wrote the pose correction into {args.model}")


if __name__ == "__main__":
    main()
