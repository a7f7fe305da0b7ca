"""How well the chooser reads the apparent gender of an original face (issue 19: most gender misses
started from an original that the chooser read as the other gender), and the gender probe it ships.

Readings compared: Cydral's network (dlib-cydral, the chooser's) alone, over a few shifted, scaled
and mirrored views of the face, a logistic-regression probe on an identity embedding (SFace's or
dlib's face descriptor), and Cydral's network and a probe averaged in logit space. The probes are
fitted only on identities no CelebA evaluation pair uses (`--held-out-rows`), labelled with each
identity's majority as Cydral's network reads it over all of its photos, and scored out of fold
(folds by identity).

The reference is each CelebA identity's majority over all of its photos (about 20 each), read by
both estimators averaged (dlib-cydral and the evaluation's wrn-imdbwiki): gender does not change
within an identity, and a majority of twenty noisy readings is far surer than any one. Photos whose
identity's majority is not clear (mean P(male) between 0.35 and 0.65) are left out.

    g2face data prepare ../shared/data/celeba/images <prepared> --size 256
    python scripts/study_gender_reading.py --prepared <prepared> \
        --held-out-rows <rows.json of scripts/evaluate_default.py --dataset celeba> [--write-probe FILE]

`--write-probe` adds the probe on dlib's descriptor, fitted on all photos of the held-out-free
identities, to a g2face-fusion model file (`gender_probe.*`, read by `ProbedGenderEstimator`).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.special import logit

from g2face.data.prepare import read_manifest
from g2face.models.checkpoints import add_fusion_tensors
from g2face.models.fusion_anonymizer import GENDER_PROBE_KEYS
from g2face.nn.crops import crops_to_tensor
from g2face.priors.attributes import (
    DlibAgeGenderEstimator,
    WideResNetAgeGenderEstimator,
)
from g2face.priors.dlib_face import DlibFaceEncoder
from g2face.priors.sface import SFaceEncoder


class View(NamedTuple):
    """A slightly moved look at an aligned crop: zoom (> 1 closer), shift (fractions of the crop's
    side, right and down) and a mirror image."""

    zoom: float = 1.0
    right: float = 0.0
    down: float = 0.0
    mirrored: bool = False


def view_of(images: torch.Tensor, view: View) -> torch.Tensor:
    """`images` [B, C, S, S] as `view` sees them (bilinear, edges repeated)."""
    if view == View():
        return images
    theta = images.new_tensor(
        [
            [(-1.0 if view.mirrored else 1.0) / view.zoom, 0.0, 2 * view.right],
            [0.0, 1 / view.zoom, 2 * view.down],
        ]
    ).expand(images.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def gender_views() -> dict[str, tuple[View, ...]]:
    """Sets of views to read an original's gender over (test-time augmentation)."""
    mirror = View(mirrored=True)
    moved = tuple(
        View(z, r, d)
        for z, r, d in ((1.05, 0, 0), (0.95, 0, 0), (1, 0.02, 0), (1, -0.02, 0), (1, 0, 0.02), (1, 0, -0.02))
    )
    return {
        "mirror": (View(), mirror),
        "moved": (View(), *moved),
        "mirror_moved": (View(), mirror, *moved, *(v._replace(mirrored=True) for v in moved)),
    }


def male_probability_over(
    dlib: DlibAgeGenderEstimator, crops: torch.Tensor, views: tuple[View, ...]
) -> torch.Tensor:
    """Cydral's P(male) of each crop read over several `views` of it (mean logit)."""
    pixels = (crops + 1) * 127.5
    logits = [
        dlib.gender_net(dlib.normalise(dlib.to_gender_chip(view_of(pixels, v)))).diff(dim=1)[:, 0]
        for v in views
    ]
    return torch.stack(logits).mean(0).sigmoid()


def _crops(folder: Path, records) -> torch.Tensor:
    return crops_to_tensor([np.asarray(Image.open(folder / r.crop).convert("RGB")) for r in records])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prepared", type=Path, required=True)
    parser.add_argument("--identities", type=Path, default=Path("../shared/data/celeba/identities.csv"))
    parser.add_argument("--out", type=Path, default=Path("runs/gender_reading.json"))
    parser.add_argument(
        "--write-probe", type=Path, help="g2face-fusion model file to add the fitted probe to"
    )
    parser.add_argument("--held-out-rows", type=Path, help="rows.json of a CelebA evaluate_default run")
    args = parser.parse_args()
    torch.set_grad_enabled(False)

    identity_of = {Path(row["file"]).name: row["identity"] for row in csv.DictReader(args.identities.open())}
    records = [r for r in read_manifest(args.prepared) if r.source and Path(r.source).name in identity_of]
    cache = args.out.with_suffix(".npz")
    if cache.exists():
        features = dict(np.load(cache))
    else:
        features = _features(args.prepared, records)
        np.savez(cache, **features)
    identities = np.array([identity_of[Path(r.source).name] for r in records])
    held_out = set()
    if args.held_out_rows is not None:  # identities of the evaluation's pairs: never fitted on
        for row in json.loads(args.held_out_rows.read_text()):
            held_out.add(identity_of.get(Path(row["pair"][0]).name))
    result = analyse(features, identities, held_out)
    if args.write_probe is not None:
        # The shipped probe: fitted on every photo of the identities no evaluation pair uses.
        labels = _majority(features["dlib"], identities)
        usable = np.array([i not in held_out for i in identities]) & (labels >= 0)
        w, b = fit_gender_probe(
            torch.from_numpy(features[PROBED][usable]), torch.from_numpy(labels[usable]).float()
        )
        add_fusion_tensors(args.write_probe, {GENDER_PROBE_KEYS[0]: w[None], GENDER_PROBE_KEYS[1]: b[None]})
        result["written_probe"] = {"model": str(args.write_probe), "photos": int(usable.sum())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


PROBED = "dlib_face"
"""The embedding the shipped probe reads (SFace's carries too little of gender linearly: 0.74)."""


def _features(folder: Path, records) -> dict[str, np.ndarray]:
    dlib, wrn = DlibAgeGenderEstimator(), WideResNetAgeGenderEstimator()
    sface, dlib_face = SFaceEncoder(), DlibFaceEncoder()
    found: dict[str, list] = defaultdict(list)
    for start in range(0, len(records), 64):
        crops = _crops(folder, records[start : start + 64])
        found["wrn"] += wrn(crops).male_probability.tolist()
        found["dlib"] += dlib(crops).male_probability.tolist()
        for name, views in gender_views().items():
            found[f"dlib/{name}"] += male_probability_over(dlib, crops, views).tolist()
        found["sface"] += sface(crops).tolist()
        found["dlib_face"] += dlib_face(crops).tolist()
        print(f"\r{start + len(crops)}/{len(records)}", end="", flush=True)
    print()
    return {k: np.array(v, dtype=np.float32) for k, v in found.items()}


def _majority(p_male: np.ndarray, identities: np.ndarray) -> np.ndarray:
    """Each photo's identity's majority gender (1 male, 0 female, -1 unclear or too few photos)."""
    truth = np.full(len(p_male), -1)
    for identity in np.unique(identities):
        rows = np.flatnonzero(identities == identity)
        mean = p_male[rows].mean()
        if len(rows) >= 5 and not 0.35 < mean < 0.65:
            truth[rows] = int(mean >= 0.5)
    return truth


def fit_gender_probe(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge-penalised logistic regression of P(male) on embeddings `x` [N, D], fitted on the
    standardised features and returned for the raw ones (logit = x @ w + b)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    w, b = _fit_logistic((x - mean) / std, y, l2)
    return w / std, b - (mean / std) @ w


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def analyse(features: dict[str, np.ndarray], identities: np.ndarray, held_out: set, folds: int = 5) -> dict:
    torch.set_grad_enabled(True)
    truth = _majority((features["dlib"] + features["wrn"]) / 2, identities)
    labels = _majority(features["dlib"], identities)  # what a probe may learn from: dlib alone
    usable = np.array([i not in held_out for i in identities]) & (labels >= 0)
    kept = truth >= 0
    readings = {k: logit(np.clip(v, 1e-6, 1 - 1e-6)) for k, v in features.items() if v.ndim == 1}
    # Probes on identity embeddings, scored out of fold (folds by identity, never a person in both).
    fold_of = {i: n % folds for n, i in enumerate(np.unique(identities))}
    fold = np.array([fold_of[i] for i in identities])
    for name in ("sface", "dlib_face"):
        x = torch.from_numpy(features[name])
        out = np.zeros(len(identities), dtype=np.float32)
        for k in range(folds):
            train = usable & (fold != k)
            w, b = fit_gender_probe(x[train], torch.from_numpy(labels[train]).float())
            out[fold == k] = (x[fold == k] @ w + b).numpy()
        readings[f"probe/{name}"] = out
    readings["dlib+probe/sface"] = (readings["dlib"] + readings["probe/sface"]) / 2
    readings["dlib+probe/dlib_face"] = (readings["dlib"] + readings["probe/dlib_face"]) / 2
    readings["dlib+both_probes"] = (
        readings["dlib"] + readings["probe/sface"] + readings["probe/dlib_face"]
    ) / 3
    result = {
        "photos": int(kept.sum()),
        "identities": len(set(identities[kept])),
        "probe_training_photos": int(usable.sum()),
        "held_out_identities": len(held_out),
    }
    for name, reading in readings.items():
        male = reading[kept] >= 0
        result[name] = {
            "accuracy": round(float((male == truth[kept]).mean()), 4),
            "errors_on_women": int((male & (truth[kept] == 0)).sum()),
            "errors_on_men": int((~male & (truth[kept] == 1)).sum()),
        }
    return result


if __name__ == "__main__":
    main()
