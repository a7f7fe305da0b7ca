"""How far should the attribute probe's age target be stretched (`CandidateSettings.age_stretch`)?
(issue 19). For LFW faces (one photo per person, `measure_attributes.lfw_crops`, every `--every`-th
of `--faces`), the shipped anonymizer is run at each stretch with the same keyed seeds, and every
fused candidate it renders is measured:

* dlib-cydral age and P(male) (what the anonymizer chooses with) and the SFace cosine it chooses by;
* wrn-imdbwiki age and P(male) (never used to choose) and FaceNet-CASIA cosine to the same photo;
* the same for the face it keeps (after the whole-region fallback, where taken).

Printed per stretch: the candidates' mean dlib age gap to the original (the calibration: the
shipped stretch is where it is about zero), the fit of candidate age on original age at stretch 0,
and for the kept faces wrn age error and bias by the original's age, wrn gender kept and the
FaceNet cosine. Saved: one JSON per stretch and `age_stretch.png` (original vs kept fake's age,
wrn, per stretch).

    PYTHONPATH=src python scripts/study_age_stretch.py --faces 600 --every 5 --stretch 0 0.31 0.6 1 \
        --out runs/age-stretch
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from measure_attributes import DEFAULT_LFW, lfw_crops  # noqa: E402

import g2face.models.fusion_anonymizer as fusion_anonymizer  # noqa: E402
from g2face.models.zoo import load_model  # noqa: E402
from g2face.nn.crops import crops_to_tensor  # noqa: E402
from g2face.payload import Secret  # noqa: E402
from g2face.priors.attributes import WideResNetAgeGenderEstimator  # noqa: E402
from g2face.priors.facenet import FaceNetEncoder  # noqa: E402


class CandidateRecorder:
    """Wraps the anonymizer's scoring and choice to keep every fused candidate's figures."""

    def __init__(self, wrn, facenet):
        self.wrn, self.facenet = wrn, facenet
        self.reference: torch.Tensor | None = None
        self.scored: list[tuple[float, float, float]] = []  # wrn age, wrn P(male), FaceNet cos
        self.chosen: list = []
        self._scores = fusion_anonymizer.FusionAnonymizer._scores
        self._choose = fusion_anonymizer.choose_candidate

    def __enter__(self):
        recorder = self

        def scores(model, reference, reference_attributes, faces, points=None):
            found = recorder._scores(model, reference, reference_attributes, faces, points)
            crops = crops_to_tensor(faces)
            judged, cosine = recorder.wrn(crops), recorder.facenet(crops) @ recorder.reference
            recorder.scored += [
                (float(a), float(m), float(c))
                for a, m, c in zip(judged.age, judged.male_probability, cosine, strict=True)
            ]
            return found

        def choose(scores, settings):
            index = recorder._choose(scores, settings)
            recorder.chosen = [(s.similarity, s.age, s.male_probability) for s in scores]
            return index

        fusion_anonymizer.FusionAnonymizer._scores = scores
        fusion_anonymizer.choose_candidate = choose
        return self

    def __exit__(self, *exc):
        fusion_anonymizer.FusionAnonymizer._scores = self._scores
        fusion_anonymizer.choose_candidate = self._choose


def run(model, crops: torch.Tensor, names: list[str], recorder: CandidateRecorder, every: int) -> list[dict]:
    secret = Secret(b"G" * 32, "key")
    rows = []
    started = time.perf_counter()
    for k in range(len(crops)):
        crop = crops[k : k + 1]
        recorder.reference = recorder.facenet(crop)[0]
        recorder.scored, recorder.chosen = [], []
        # Keyed seed from the face's place among all `--faces` (the same at any --every).
        result = model.anonymize(crop, secret, seeds=[1000 + k * every], salts=[bytes(8)])
        report = result.attributes[0]
        before, after = recorder.wrn(crop), recorder.wrn(result.images)
        candidates = [
            {"sface": s, "dlib_age": a, "dlib_male": m, "wrn_age": w[0], "wrn_male": w[1], "facenet": w[2]}
            for (s, a, m), w in zip(recorder.chosen, recorder.scored, strict=False)
        ]
        rows.append(
            {
                "name": names[k],
                "dlib_age": report["original"]["age"],
                "dlib_male": report["original"]["male_probability"],
                "wrn_age": [float(before.age[0]), float(after.age[0])],
                "wrn_male": [float(before.male_probability[0]), float(after.male_probability[0])],
                "facenet": float(recorder.facenet(result.images)[0] @ recorder.reference),
                "candidates": candidates,
            }
        )
        if k % 10 == 9:
            print(f"  {k + 1}/{len(crops)} faces, {time.perf_counter() - started:.0f} s", flush=True)
    return rows


def summary(rows: list[dict]) -> dict:
    original = np.array([r["wrn_age"][0] for r in rows])
    fake = np.array([r["wrn_age"][1] for r in rows])
    gaps = [c["dlib_age"] - r["dlib_age"] for r in rows for c in r["candidates"]]
    out = {
        "faces": len(rows),
        "candidates_dlib_age_gap": float(np.mean(gaps)),
        "wrn_age_error": float(np.abs(fake - original).mean()),
        "wrn_age_bias": float((fake - original).mean()),
        "wrn_gender_kept": float(
            np.mean([(r["wrn_male"][0] >= 0.5) == (r["wrn_male"][1] >= 0.5) for r in rows])
        ),
        "facenet_same_photo": float(np.mean([r["facenet"] for r in rows])),
    }
    for low, high in ((0, 35), (35, 45), (45, 55), (55, 200)):
        inside = (original >= low) & (original < high)
        if inside.any():
            out[f"wrn_bias_{low}_{high}"] = float((fake - original)[inside].mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    parser.add_argument("--faces", type=int, default=600)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--stretch", type=float, nargs="+", default=[0.0, 0.6])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    args.out.mkdir(parents=True, exist_ok=True)
    crops, names = lfw_crops(args.lfw, args.faces, 0)
    crops, names = crops[:: args.every], names[:: args.every]
    shipped = load_model("g2face-lite")
    recorder = CandidateRecorder(WideResNetAgeGenderEstimator(), FaceNetEncoder())
    results = {}
    with recorder:
        for stretch in args.stretch:
            print(f"age_stretch {stretch}: {len(crops)} faces", flush=True)
            rows = run(shipped.with_candidates(age_stretch=stretch), crops, names, recorder, args.every)
            (args.out / f"stretch_{stretch:g}.json").write_text(json.dumps(rows))
            results[stretch] = (rows, summary(rows))
            print(json.dumps(results[stretch][1], indent=1), flush=True)
    if 0.0 in results:
        rows = results[0.0][0]
        x = np.array([r["dlib_age"] for r in rows for _ in r["candidates"]])
        y = np.array([c["dlib_age"] for r in rows for c in r["candidates"]])
        slope, intercept = np.polyfit(x, y, 1)
        print(f"stretch 0: candidate dlib age = {intercept:.2f} + {slope:.3f} x original's")
    plot(results, args.out / "age_stretch.png")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results), 3.4), sharey=True, squeeze=False)
    for ax, (stretch, (rows, figures)) in zip(axes[0], results.items(), strict=True):
        original = [r["wrn_age"][0] for r in rows]
        fake = [r["wrn_age"][1] for r in rows]
        ax.scatter(original, fake, s=8, alpha=0.6)
        ax.plot([10, 80], [10, 80], "k--", lw=0.8)
        ax.set_title(f"stretch {stretch:g}: error {figures['wrn_age_error']:.1f} y", fontsize=9)
        ax.set_xlabel("original age (wrn)")
    axes[0][0].set_ylabel("anonymized age (wrn)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
