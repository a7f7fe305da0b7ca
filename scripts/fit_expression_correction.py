"""Fit the default model's expression correction (`g2face.models.gie.ExpressionCorrection`): the
direction in the generator's W that makes a face smile, and the gain that makes a dummy rendered at
a real face's geometry smile as much as that face.

1. Direction: ridge regression of the bank's MediaPipe smile (mouthSmileLeft/Right averaged) on its
   w (samples of every given bank folder, duplicates dropped); held-out R² printed (15 %).
   Step: the first `--neutral` samples of the first bank are rendered again and read by
   dlib-cydral (apparent gender and age; cached in `<bank>/apparent_attributes.safetensors`); the
   gender logit and the age are regressed on w the same way, and the step is the smallest change
   in w that adds one unit of predicted smile and none of either (`--neutral 0`: along the smile
   direction alone).
2. Gain: on `--calibrate` real CelebA photos (every `--every`-th with a face), one keyed dummy per
   face is rendered at the face's geometry (pose correction included) with each gain of the grid,
   and the render's smile read with MediaPipe; the gain with the smallest mean error is kept.
3. Check: the same on `--check` LFW photos (one per person), without and with the correction, and
   how much the correction moves the dummy's identity (SFace cosine to the uncorrected render).

The tensors are written into the model file (`expression_correction.*`), the rest of it kept.

    g2face train --config configs/lite.yaml --stage bank --steps 2400 --run-dir runs/lite
    python scripts/fit_expression_correction.py runs/lite/bank src/g2face/weights/g2face-lite.safetensors \
        --data ../shared/data
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
from fit_pose_correction import real_crops, ridge
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from g2face.models.checkpoints import add_fusion_tensors, load_fusion_model
from g2face.models.fusion_anonymizer import FusionAnonymizer, candidate_seed, smile_of
from g2face.models.gie import EXPRESSION_KEYS, SMILE_BLENDSHAPES, ExpressionCorrection, neutral_step
from g2face.models.zoo import load_model
from g2face.nn.crops import crops_to_tensor
from g2face.priors.attributes import DlibAgeGenderEstimator
from g2face.priors.mobilestylegan import load_mobilestylegan
from g2face.training.sources import broadcast_w
from g2face.training.stages import load_bank


def bank_smiles(folders: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """w [N, 512] and smile [N, 1] of every bank sample, each distinct w once."""
    ws, smiles, seen = [], [], set()
    for folder in folders:
        bank = load_bank(folder, torch.device("cpu"))
        expression = bank["expression"].double().numpy()[:, list(SMILE_BLENDSHAPES)].mean(1)
        for w, smile in zip(bank["w"].double().numpy(), expression, strict=True):
            key = w[:4].tobytes()
            if key not in seen:
                seen.add(key)
                ws.append(w)
                smiles.append([smile])
    return np.array(ws), np.array(smiles)


def apparent_attributes(folder: Path, n: int) -> np.ndarray:
    """(gender logit, age) [n, 2] of the first `n` samples of a bank, read by dlib-cydral on their
    renders; cached beside the bank."""
    cache = folder / "apparent_attributes.safetensors"
    if cache.is_file():
        stored = load_file(str(cache))
        if len(stored["male"]) >= n:
            male, age = stored["male"][:n].double().numpy(), stored["age"][:n].double().numpy()
            male = np.clip(male, 1e-3, 1 - 1e-3)
            return np.stack([np.log(male / (1 - male)), age], 1)
    bank = load_bank(folder, torch.device("cpu"))
    generator = load_mobilestylegan(output_resolution=256)
    estimator = DlibAgeGenderEstimator(crop_size=256)
    males, ages = [], []
    for start in tqdm(range(0, n, 8), desc="apparent gender and age", unit="batch"):
        found = estimator(
            generator(broadcast_w(generator, bank["w"][start : min(n, start + 8)])).clamp(-1, 1)
        )
        males.append(found.male_probability)
        ages.append(found.age)
    save_file({"male": torch.cat(males).contiguous(), "age": torch.cat(ages).contiguous()}, str(cache))
    return apparent_attributes(folder, n)


def smile_errors(model: FusionAnonymizer, crops: list[np.ndarray], gains: list[float | None]) -> np.ndarray:
    """Per gain (None: no correction) [len(gains), 3]: mean |smile error| of one keyed dummy per
    crop rendered at its geometry, the correlation of the renders' smiles with the originals', and
    the mean SFace cosine of each render to the uncorrected one."""
    correction = model.expression_correction
    rows = np.zeros((len(gains), len(crops), 3))
    for i, crop in enumerate(crops):
        x = crops_to_tensor([crop])
        vector = model.geometry_vector(model.geometry(x))
        target = float(smile_of(vector)[0])
        dummy = model.dummy_identities([candidate_seed(i, 1)], x.dtype)
        model.expression_correction = None
        plain = model.identity(model.render_dummies(dummy, vector, model.candidates.spread))
        for k, gain in enumerate(gains):
            model.expression_correction = correction if gain is not None else None
            if gain is not None:
                correction.gain.fill_(gain)
            render = model.render_dummies(dummy, vector, model.candidates.spread)
            smile = float(smile_of(model.geometry_vector(model.geometry(render)))[0])
            rows[k, i] = (smile, target, float(model.identity(render)[0] @ plain[0]))
    model.expression_correction = correction
    error = np.abs(rows[..., 0] - rows[..., 1]).mean(1)
    correlation = [np.corrcoef(r[:, 0], r[:, 1])[0, 1] for r in rows]
    return np.stack([error, correlation, rows[..., 2].mean(1)], 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "banks", type=Path, nargs="+", help="bank folders (batch_*.safetensors) of the generator"
    )
    parser.add_argument("model", type=Path, help="the geometric-fusion model file to write into")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--ridge", type=float, default=30.0)
    parser.add_argument("--calibrate", type=int, default=40, help="CelebA faces for the gain")
    parser.add_argument("--check", type=int, default=40, help="LFW faces to check it on")
    parser.add_argument("--every", type=int, default=23)
    parser.add_argument("--gains", type=float, nargs="+", default=[0.5, 0.75, 1.0, 1.25, 1.5])
    parser.add_argument(
        "--neutral", type=int, default=1600, help="bank samples whose apparent gender and age the step keeps"
    )
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    load_fusion_model(args.model)  # refuses anything but a geometric-fusion model file

    w, smile = bank_smiles(args.banks)
    order = np.random.default_rng(0).permutation(len(w))
    train, held = order[: int(0.85 * len(w))], order[int(0.85 * len(w)) :]
    direction, bias, mean = ridge(w[train], smile[train], args.ridge)
    predicted = (w[held] - mean) @ direction.T + bias
    r2 = 1 - ((predicted - smile[held]) ** 2).mean() / smile[held].var()
    print(f"bank: {len(w)} samples; held-out R² smile {r2:.3f}")
    direction, bias, mean = ridge(w, smile, args.ridge)
    along = direction[0] / (direction[0] @ direction[0])  # one unit of smile along its direction
    step = along
    if args.neutral:
        attributes = apparent_attributes(args.banks[0], args.neutral)
        others, _, _ = ridge(w[: args.neutral], attributes, args.ridge)
        step = neutral_step(torch.from_numpy(direction[0]), torch.from_numpy(others)).numpy()
        print(
            f"along the smile direction one unit of smile moves the gender logit and age by "
            f"{(others @ along).round(2)} ({args.neutral} samples); the step that keeps them is "
            f"{np.linalg.norm(step) / np.linalg.norm(along):.2f}x as long"
        )

    model = load_model(args.model, attributes="free")
    groups = model.gie.style_mlp.group_sizes
    model.expression_correction = ExpressionCorrection(mean.shape[0], groups[0] + groups[1])
    for name, value in (("direction", direction[0]), ("step", step), ("bias", bias), ("mean", mean)):
        getattr(model.expression_correction, name).copy_(torch.from_numpy(value.astype(np.float32)))

    index = args.data / "celeba" / "identities.csv"
    celeba = [args.data / "celeba" / r["file"] for r in csv.DictReader(index.open())][:: args.every]
    found = smile_errors(model, real_crops(celeba, args.calibrate), [None, *args.gains])
    best = 1 + int(np.argmin(found[1:, 0]))
    gain = args.gains[best - 1]
    print(f"CelebA ({args.calibrate}): without: smile error {found[0, 0]:.3f}, correlation {found[0, 1]:.2f}")
    for g, (error, corr, identity) in zip(args.gains, found[1:], strict=True):
        print(f"  gain {g}: smile error {error:.3f}, correlation {corr:.2f}, identity kept {identity:.3f}")
    print(f"  kept gain {gain}")
    lfw = sorted((args.data / "lfw" / "lfw-deepfunneled").glob("*/*_0001.jpg"))[::5]
    check = smile_errors(model, real_crops(lfw, args.check), [None, gain])
    print(
        f"LFW ({args.check}): smile error {check[0, 0]:.3f} → {check[1, 0]:.3f}, correlation "
        f"{check[0, 1]:.2f} → {check[1, 1]:.2f}, identity kept {check[1, 2]:.3f}"
    )
    if args.dry_run:
        return
    values = (direction[0], step, bias, mean, np.array([gain]))
    add_fusion_tensors(
        args.model,
        {
            k: torch.from_numpy(np.asarray(v, dtype=np.float32))
            for k, v in zip(EXPRESSION_KEYS, values, strict=True)
        },
    )
    print(f"wrote the expression correction into {args.model}")


if __name__ == "__main__":
    main()
