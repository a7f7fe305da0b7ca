"""Fit the default model's attribute probe: a linear map from a dummy identity (SFace-128, what
f_dummy produces) to the apparent gender and age of the face GIE renders from it, and whether it
wears glasses or a moustache/beard, so dummies can be drawn to match the original's attributes
before any rendering (DESIGN.md §6; issue 19).

Faces are measured with the dlib-cydral estimator (the one the anonymizer also uses to check its
candidates), for glasses `glasses_score` on the render's own MediaPipe mesh (>= GLASSES_EDGE) and
for facial hair `facial_hair_score` (>= FACIAL_HAIR_EDGE), for skin tone the tone its dlib
descriptor reads (`readers.descriptor_tone`, as the search reads the original's); ridge regression
identity → (gender logit, age, glasses 0/1, facial hair 0/1, skin tone in degrees). `--rows`
refits only some of the rows and keeps the file's others (a probe without the later rows gets
them). Which faces (`--renders`):
* `bank`: every bank sample rendered again from its w, with its SFace identity;
* `dummies`: what the anonymizer ranks: one keyed dummy per bank sample (f_dummy of a seeded z, the
  seed being the sample's index) rendered by the model's GIE at that sample's expression and pose
  (average shape, as `FusionAnonymizer.geometry_vector` does), with the dummy identity.
The probe is stored inside the model file (`attribute_probe.*`).

    python scripts/fit_attribute_probe.py runs/lite/bank src/g2face/weights/g2face-lite.safetensors \
        --renders dummies
    python scripts/fit_attribute_probe.py runs/lite/bank src/g2face/weights/g2face-lite.safetensors \
        --renders dummies --rows glasses facial_hair
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from g2face.models.checkpoints import add_fusion_tensors, load_fusion_model
from g2face.models.fusion import FACIAL_HAIR_EDGE, GLASSES_EDGE, facial_hair_score, glasses_score
from g2face.models.fusion_anonymizer import PROBE_KEYS, PROBE_ROWS, FusionAnonymizer
from g2face.models.readers import descriptor_tone
from g2face.models.zoo import load_model
from g2face.priors.attributes import DlibAgeGenderEstimator
from g2face.priors.base import Geometry
from g2face.priors.dlib_face import DlibFaceEncoder
from g2face.priors.mediapipe_geometry import MediaPipeGeometry
from g2face.priors.mobilestylegan import load_mobilestylegan
from g2face.training.sources import broadcast_w
from g2face.training.stages import load_bank

ROWS = PROBE_ROWS


def rank_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney), NaN with one class only."""
    positive = labels > 0.5
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores, kind="stable")] = np.arange(1, len(scores) + 1)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bank", type=Path, help="folder of bank batch_*.safetensors")
    parser.add_argument("model", type=Path, help="a g2face-fusion weights file to add the probe to")
    parser.add_argument("--ridge", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--renders", choices=["bank", "dummies"], default="bank")
    parser.add_argument("--limit", type=int, help="use only the first N bank samples")
    parser.add_argument(
        "--rows",
        nargs="+",
        choices=ROWS,
        default=list(ROWS),
        help="probe rows to fit; the others are kept from the model file",
    )
    parser.add_argument("--dry-run", action="store_true", help="report the held-out fit, write nothing")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    bank = load_bank(args.bank, torch.device("cpu"))
    bank = {k: v[: args.limit] for k, v in bank.items()}
    if args.renders == "dummies":
        model = load_model(str(args.model), attributes="free")
        assert isinstance(model, FusionAnonymizer)
        generator = model.generator
    else:
        generator = load_mobilestylegan()
    estimator = DlibAgeGenderEstimator(crop_size=generator.output_resolution)
    dlib = DlibFaceEncoder(crop_size=generator.output_resolution)
    mesh = MediaPipeGeometry()
    males, ages, glasses, hair, tones, identities = [], [], [], [], [], []
    for start in tqdm(range(0, len(bank["w"]), args.batch), desc="render + estimate", unit="batch"):
        part = slice(start, start + args.batch)
        if args.renders == "dummies":
            identity = model.dummy_identities(list(range(start, start + len(bank["w"][part]))), torch.float32)
            mean_shape = torch.zeros_like(bank["shape"][part])  # replaced by the average face below
            geometry = Geometry(mean_shape, bank["expression"][part], bank["pose"][part], torch.empty(0))
            # As the anonymizer renders its candidates: spread away from the average identity.
            faces = model.render_dummies(identity, model.geometry_vector(geometry), model.candidates.spread)
        else:
            identity = bank["identity"][part]
            faces = generator(broadcast_w(generator, bank["w"][part])).clamp(-1, 1)
        found = estimator(faces)
        males.append(found.male_probability.numpy())
        ages.append(found.age.numpy())
        size = faces.shape[-1]
        points = (mesh(faces).landmarks[..., :2] * size - 0.5).numpy()
        images = ((faces.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8)
        glasses.append(
            [float(glasses_score(im, p) >= GLASSES_EDGE) for im, p in zip(images, points, strict=True)]
        )
        hair.append(
            [
                float(facial_hair_score(im, p) >= FACIAL_HAIR_EDGE)
                for im, p in zip(images, points, strict=True)
            ]
        )
        tones.append([descriptor_tone(d) for d in dlib(faces).numpy()])
        identities.append(identity.numpy())
    male = np.clip(np.concatenate(males), 1e-3, 1 - 1e-3)
    tone = np.concatenate(tones)
    tone = np.where(np.isnan(tone), np.nanmean(tone), tone)  # a render without colour: the mean
    targets = np.stack(
        [
            np.log(male / (1 - male)),
            np.concatenate(ages),
            np.concatenate(glasses),
            np.concatenate(hair),
            tone,
        ],
        1,
    )
    x = np.concatenate([np.concatenate(identities), np.ones((len(targets), 1))], 1)
    n_train = len(x) - len(x) // 5
    eye = np.eye(x.shape[1]) * args.ridge
    eye[-1, -1] = 0
    weights = np.linalg.solve(x[:n_train].T @ x[:n_train] + eye, x[:n_train].T @ targets[:n_train])
    held = x[n_train:] @ weights
    gender_agree = np.mean((held[:, 0] > 0) == (targets[n_train:, 0] > 0))
    age_error = np.mean(np.abs(held[:, 1] - targets[n_train:, 1]))
    age_corr = np.corrcoef(held[:, 1], targets[n_train:, 1])[0, 1]
    glasses_auc = rank_auc(targets[n_train:, 2], held[:, 2])
    hair_auc = rank_auc(targets[n_train:, 3], held[:, 3])
    tone_corr = np.corrcoef(held[:, 4], targets[n_train:, 4])[0, 1]
    tone_error = np.mean(np.abs(held[:, 4] - targets[n_train:, 4]))
    share_male, age_mean, age_std = np.mean(targets[:, 0] > 0), targets[:, 1].mean(), targets[:, 1].std()
    print(
        f"held-out: gender agreement {gender_agree:.3f}, age error {age_error:.1f} years, age correlation "
        f"{age_corr:.2f}, glasses AUC {glasses_auc:.3f}, facial hair AUC {hair_auc:.3f} ({len(x) - n_train} "
        f"samples; share male {share_male:.2f}, age {age_mean:.1f} ± {age_std:.1f}, glasses "
        f"{targets[:, 2].mean():.3f}, facial hair {targets[:, 3].mean():.3f}); skin tone (descriptor) "
        f"correlation {tone_corr:.2f}, error {tone_error:.1f}° (ITA {tone.mean():.1f} ± {tone.std():.1f}°)"
    )
    if args.dry_run:
        return
    # Refit on everything for the shipped probe.
    weights = np.linalg.solve(x.T @ x + eye, x.T @ targets)
    weight = torch.from_numpy(weights[:-1].T.astype(np.float32).copy())
    bias = torch.from_numpy(weights[-1].astype(np.float32).copy())
    if set(args.rows) != set(ROWS):
        stored, _ = load_fusion_model(args.model)
        if PROBE_KEYS[0] not in stored:
            raise SystemExit(f"{args.model} has no probe to keep rows of: fit every row")
        stored_weight, stored_bias = stored[PROBE_KEYS[0]], stored[PROBE_KEYS[1]]
        for row in range(len(stored_bias)):
            if ROWS[row] not in args.rows:
                weight[row], bias[row] = stored_weight[row], stored_bias[row]
    add_fusion_tensors(args.model, {PROBE_KEYS[0]: weight, PROBE_KEYS[1]: bias})
    print(f"wrote the probe into {args.model}")


if __name__ == "__main__":
    main()
