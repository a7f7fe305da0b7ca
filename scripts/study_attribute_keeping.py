"""Where do the default's attribute errors come from, and which dummy-choice rule keeps gender, age
and skin tone without costing anonymity? (issue 19). Two steps, so rules and colour transfers can
be compared on the same rendered candidates:

``render``: for N LFW genuine pairs (A1, A2: two photos of one person), the keyed candidate dummies
of A1 rendered at A1's pose and expression and cached (uint8 render + its mesh): the 8 the shipped
rule may render (the probe's closest 8 of a keyed pool of 64) and the probe's closest 4 of a pool 8×
larger (pool 512) that are not among them.

``evaluate``: every cached candidate fused onto A1 with the fusion in the working tree (so a colour
transfer change is measured on the same renders), then scored: SFace cosine to A1 (what the
anonymizer sees), FaceNet-CASIA cosine to A2 (anonymity, never used to choose), dlib-cydral and
wrn-imdbwiki gender and age, cheek ITA. Reported:
* the estimators' own floor: wrn and dlib on A1 vs A2 (another photo of the same person) and A1 vs
  its mirror image; ITA A1 vs A2;
* the probe's error: its predicted (gender, age) vs dlib on the rendered candidate;
* the pool: the best age gap reachable among the 8 shipped candidates and among all 16;
* the figures (wrn gender kept, wrn/dlib age error, ITA difference, FaceNet TAR@1e-3 vs A2 with
  the threshold from the originals' impostor pairs, mean FaceNet cosine) of several choice rules.

The fused preview (alpha blend in the crop) stands in for the pasted photo there; ``e2e`` runs the
real pipeline on the same pairs and dummy seeds (optionally with another age gap or a same-side
gender test patched into the candidate loop) for the end-to-end figures.

    PYTHONPATH=src python scripts/study_attribute_keeping.py render --pairs 40 --cache runs/attr/cache.npz
    PYTHONPATH=src python scripts/study_attribute_keeping.py evaluate --cache runs/attr/cache.npz \
        --out runs/attr/evaluate.json
    PYTHONPATH=src python scripts/study_attribute_keeping.py e2e --cache runs/attr/cache.npz \
        --max-age-gap 6 --out runs/attr/e2e.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from g2face.detection import YuNetDetector
from g2face.evaluation.attributes import skin_tones
from g2face.evaluation.faces import FaceFinder
from g2face.evaluation.metrics import threshold_at_far
from g2face.evaluation.protocols import name_seed, read_lfw_pairs
from g2face.io import read_image
from g2face.models.fusion import fuse_face
from g2face.models.fusion_anonymizer import PROBE_POOL, FusionAnonymizer, candidate_seed
from g2face.models.zoo import load_model
from g2face.nn.crops import crops_to_tensor, tensor_to_crops
from g2face.priors.attributes import DlibAgeGenderEstimator, WideResNetAgeGenderEstimator
from g2face.priors.facenet import FaceNetEncoder

SHIPPED_RENDERS = 8  # count 4 × max_rounds 2
EXTRA_RENDERS = 4  # the probe's best of the larger pool not among the shipped 8
LARGE_POOL = 8 * PROBE_POOL


def probe_ranking(model: FusionAnonymizer, seed: int, male: float, age: float, pool: int):
    """Keyed candidate indices of a pool sorted as `_candidate_order` sorts them, with the probe's
    (P(male), age) prediction of each."""
    predicted = model.attribute_probe(
        model.dummy_identities([candidate_seed(seed, k) for k in range(pool)], torch.float32)
    )
    p_male, p_age = torch.sigmoid(predicted[:, 0]), predicted[:, 1]
    s = model.candidates
    gap = (p_male - male).abs() * s.gender_weight + s.age_weight * (p_age - age).abs()
    ranked = sorted(range(pool), key=lambda k: (float(gap[k]), k))
    return ranked, p_male.numpy(), p_age.numpy()


def genuine_pair_crops(data: Path, count: int) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """`count` LFW genuine pairs spread over the folds: A1's path, and the aligned crops of A1 and
    A2 (pairs where either photo has no detected face are left out)."""
    lfw = read_lfw_pairs(data)
    pairs = lfw.genuine(count)
    finder = FaceFinder(YuNetDetector())
    names, firsts, seconds = [], [], []
    for a, b in pairs:
        f1 = finder.find(read_image(data / a).rgb)
        f2 = finder.find(read_image(data / b).rgb)
        if f1 is not None and f2 is not None:
            names.append(a)
            firsts.append(f1.crop)
            seconds.append(f2.crop)
    return names, firsts, seconds


def render(args: argparse.Namespace) -> None:
    model = load_model("g2face-lite")
    assert isinstance(model, FusionAnonymizer) and model.attribute_probe is not None
    names, firsts, seconds = genuine_pair_crops(args.data, args.pairs)
    crops = crops_to_tensor(firsts)
    size = model.image_size
    reference = model.attributes(crops)
    points = (model.geometry(crops).landmarks[..., :2] * size - 0.5).numpy()
    renders, render_points, predicted, shipped = [], [], [], []
    started = time.perf_counter()
    for i, name in enumerate(tqdm(names, desc="render", unit="face")):
        seed = name_seed(name)
        male, age = float(reference.male_probability[i]), float(reference.age[i])
        small, *_ = probe_ranking(model, seed, male, age, PROBE_POOL)
        large, p_male, p_age = probe_ranking(model, seed, male, age, LARGE_POOL)
        first = small[:SHIPPED_RENDERS]
        indices = first + [k for k in large if k not in first][:EXTRA_RENDERS]
        seeds = [candidate_seed(seed, k) for k in indices]
        images = model.render_dummies(
            model.dummy_identities(seeds, torch.float32),
            model.geometry_vector(model.geometry(crops[i : i + 1])),
            model.candidates.spread,  # as the anonymizer renders its candidates
        )
        renders.append(tensor_to_crops(images))
        render_points.append((model.geometry(images).landmarks[..., :2] * size - 0.5).numpy())
        predicted.append(np.stack([p_male[indices], p_age[indices]], 1))
        shipped.append(np.arange(len(indices)) < SHIPPED_RENDERS)
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.cache,
        names=np.array(names),
        originals=np.stack(firsts),
        others=np.stack(seconds),
        original_points=points,
        renders=np.stack(renders),
        render_points=np.stack(render_points),
        predicted=np.stack(predicted),
        shipped=np.stack(shipped),
    )
    print(
        f"{len(names)} faces × {renders[0].shape[0]} candidates in "
        f"{time.perf_counter() - started:.0f} s -> {args.cache}"
    )


@dataclass(frozen=True)
class Scores:
    """Per face and candidate ([N, C]) and per face ([N]) measurements."""

    sface: np.ndarray  # cosine of the fused candidate to A1 (SFace, what the anonymizer sees)
    facenet: np.ndarray  # cosine of the fused candidate to A2 (FaceNet: anonymity)
    dlib_male: np.ndarray
    dlib_age: np.ndarray
    wrn_male: np.ndarray
    wrn_age: np.ndarray
    ita: np.ndarray
    original: dict[str, np.ndarray]  # A1 / A2 / mirrored A1 figures, per face


def measure(cache: dict, estimators, facenet, geometry, sface, fusion) -> Scores:
    dlib, wrn = estimators
    n, c = cache["renders"].shape[:2]
    out = {k: np.zeros((n, c)) for k in SCORE_FIELDS}
    originals = crops_to_tensor(cache["originals"])
    others = crops_to_tensor(cache["others"])
    a1_sface = sface(originals)
    a2_facenet = facenet(others)
    original: dict[str, np.ndarray] = {}
    for view, crops in (("a1", originals), ("a2", others), ("a1_mirror", originals.flip(3))):
        for est, key in ((dlib, "dlib"), (wrn, "wrn")):
            found = est(crops)
            original[f"{view}_{key}_male"] = found.male_probability.numpy()
            original[f"{view}_{key}_age"] = found.age.numpy()
        original[f"{view}_ita"] = skin_tones(geometry, crops)
        original[f"{view}_facenet"] = facenet(crops).numpy()
    for i in tqdm(range(n), desc="fuse + score", unit="face"):
        previews = [
            fuse_face(cache["originals"][i], cache["original_points"][i], r, p, fusion).preview
            for r, p in zip(cache["renders"][i], cache["render_points"][i], strict=True)
        ]
        batch = crops_to_tensor(previews)
        out["sface"][i] = (sface(batch) @ a1_sface[i]).numpy()
        out["facenet"][i] = (facenet(batch) @ a2_facenet[i]).numpy()
        for est, key in ((dlib, "dlib"), (wrn, "wrn")):
            found = est(batch)
            out[f"{key}_male"][i], out[f"{key}_age"][i] = found.male_probability.numpy(), found.age.numpy()
        out["ita"][i] = skin_tones(geometry, batch)
    return Scores(**out, original=original)


Rule = Callable[[Scores, int], int]


def make_rule(
    candidates: int = SHIPPED_RENDERS,
    rounds: int = 2,
    max_age_gap: float = 10.0,
    gender_margin: float | None = None,
    age_weight: float = 0.0,
    max_similarity: float = 0.3,
) -> Rule:
    """A dummy choice over the first `candidates` cached candidates (probe order), rendered in
    `rounds` equal rounds that stop at the first round with an acceptable candidate: SFace cosine
    to A1 <= `max_similarity`, dlib gender like A1's (`gender_margin` None: |P(male) difference| <
    0.5, as shipped, which lets a P(male) of 0.3 pass for an original's 0.6; a number: on A1's side
    of 0.5 by more than that), dlib age within `max_age_gap` of A1's. Among the acceptable ones the
    lowest SFace cosine + `age_weight` × |age gap| (the shipped rule: age_weight 0); none
    acceptable: fusion_anonymizer's fallbacks (different enough and closest in attributes, else the
    least similar)."""
    per_round = candidates // rounds

    def acceptable(s: Scores, i: int, k: int) -> bool:
        male, age = s.original["a1_dlib_male"][i], s.original["a1_dlib_age"][i]
        if gender_margin is None:
            same_gender = abs(s.dlib_male[i, k] - male) < 0.5
        else:
            same_gender = (1 if male > 0.5 else -1) * (s.dlib_male[i, k] - 0.5) > gender_margin
        return s.sface[i, k] <= max_similarity and same_gender and abs(s.dlib_age[i, k] - age) <= max_age_gap

    def choose(s: Scores, i: int) -> int:
        male, age = s.original["a1_dlib_male"][i], s.original["a1_dlib_age"][i]
        seen: list[int] = []
        for r in range(rounds):
            seen += list(range(r * per_round, (r + 1) * per_round))
            ok = [k for k in seen if acceptable(s, i, k)]
            if ok:
                return min(ok, key=lambda k: s.sface[i, k] + age_weight * abs(s.dlib_age[i, k] - age))
        different = [k for k in seen if s.sface[i, k] <= max_similarity]
        if different:
            return min(
                different,
                key=lambda k: (
                    s.sface[i, k]
                    + abs(s.dlib_male[i, k] - male)
                    + 0.02 * max(0, abs(s.dlib_age[i, k] - age) - 4)
                ),
            )
        return min(seen, key=lambda k: s.sface[i, k])

    return choose


RULES: dict[str, Rule] = {
    "shipped (8 of pool 64 in rounds of 4; least similar within 10 y)": make_rule(),
    "shipped, within 6 y": make_rule(max_age_gap=6),
    "shipped, within 4 y": make_rule(max_age_gap=4),
    "shipped, same side of 0.5": make_rule(gender_margin=0.0),
    "shipped, gender margin 0.3": make_rule(gender_margin=0.3),
    "shipped, gender margin 0.3, within 6 y": make_rule(gender_margin=0.3, max_age_gap=6),
    "8 at once, least similar + 0.01/y": make_rule(rounds=1, age_weight=0.01),
    "8 at once, least similar + 0.02/y": make_rule(rounds=1, age_weight=0.02),
    "8 at once, closest age": make_rule(rounds=1, age_weight=10),
    "8 at once, same side, closest age": make_rule(rounds=1, gender_margin=0.0, age_weight=10),
    "8 at once, margin 0.3, closest age": make_rule(rounds=1, gender_margin=0.3, age_weight=10),
    "12 (+4 of pool 512) in rounds of 4, within 6 y": make_rule(candidates=12, rounds=3, max_age_gap=6),
    "12 (+4 of pool 512), margin 0.3, within 6 y": make_rule(
        candidates=12, rounds=3, gender_margin=0.3, max_age_gap=6
    ),
    "12 at once, least similar + 0.02/y": make_rule(candidates=12, rounds=1, age_weight=0.02),
    "12 at once, closest age": make_rule(candidates=12, rounds=1, age_weight=10),
}


def figures(s: Scores, chosen: np.ndarray, threshold: float) -> dict[str, float]:
    rows = np.arange(len(chosen))
    o = s.original
    pick = {
        k: getattr(s, k)[rows, chosen]
        for k in ("facenet", "wrn_male", "wrn_age", "dlib_male", "dlib_age", "ita", "sface")
    }
    ita = np.abs(pick["ita"] - o["a1_ita"])
    return {
        "gender_kept/wrn": float(np.mean((pick["wrn_male"] > 0.5) == (o["a1_wrn_male"] > 0.5))),
        "gender_kept/dlib": float(np.mean((pick["dlib_male"] > 0.5) == (o["a1_dlib_male"] > 0.5))),
        "age_error/wrn": float(np.mean(np.abs(pick["wrn_age"] - o["a1_wrn_age"]))),
        "age_error/dlib": float(np.mean(np.abs(pick["dlib_age"] - o["a1_dlib_age"]))),
        "ita_difference": float(np.nanmean(ita)),
        "facenet_tar": float(np.mean(pick["facenet"] >= threshold)),
        "facenet_mean_cos": float(np.mean(pick["facenet"])),
        "sface_mean_cos_to_a1": float(np.mean(pick["sface"])),
    }


def floors(s: Scores) -> dict[str, float]:
    o = s.original
    out = {}
    for key in ("wrn", "dlib"):
        for view in ("a2", "a1_mirror"):
            out[f"{key}/gender_same_{view}"] = float(
                np.mean((o[f"a1_{key}_male"] > 0.5) == (o[f"{view}_{key}_male"] > 0.5))
            )
            out[f"{key}/age_error_{view}"] = float(
                np.mean(np.abs(o[f"a1_{key}_age"] - o[f"{view}_{key}_age"]))
            )
    out["ita_difference_a2"] = float(np.nanmean(np.abs(o["a1_ita"] - o["a2_ita"])))
    out["ita_difference_a1_mirror"] = float(np.nanmean(np.abs(o["a1_ita"] - o["a1_mirror_ita"])))
    out["wrn_dlib_gender_agreement_a1"] = float(
        np.mean((o["a1_wrn_male"] > 0.5) == (o["a1_dlib_male"] > 0.5))
    )
    out["wrn_dlib_age_difference_a1"] = float(np.mean(np.abs(o["a1_wrn_age"] - o["a1_dlib_age"])))
    return out


SCORE_FIELDS = ("sface", "facenet", "dlib_male", "dlib_age", "wrn_male", "wrn_age", "ita")


def scored(cache: dict, out: Path, reuse: bool) -> tuple[Scores, float]:
    """The cached candidates' scores (`measure`, saved beside `out`; with `reuse`, read back: only
    the rules change) and FaceNet's FAR-1e-3 threshold from the originals' impostor pairs."""
    saved = out.with_suffix(".npz")
    if reuse and saved.is_file():
        stored = dict(np.load(saved))
        s = Scores(**{k: stored.pop(k) for k in SCORE_FIELDS}, original=stored)
    else:
        model = load_model("g2face-lite")
        s = measure(
            cache,
            (DlibAgeGenderEstimator(), WideResNetAgeGenderEstimator()),
            FaceNetEncoder(),
            model.geometry,
            model.identity,
            model.fusion,
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(saved, **{k: getattr(s, k) for k in SCORE_FIELDS}, **s.original)
    n = s.sface.shape[0]
    names = [Path(str(k)).parent.name for k in cache["names"]]
    emb = s.original["a1_facenet"]
    iu = np.triu_indices(n, 1)
    different = np.array([names[i] != names[j] for i, j in zip(*iu, strict=True)])
    return s, threshold_at_far((emb @ emb.T)[iu][different], 1e-3)


def evaluate(args: argparse.Namespace) -> None:
    cache = dict(np.load(args.cache))
    s, threshold = scored(cache, args.out, args.reuse)
    n, c = s.sface.shape
    report = {
        "faces": n,
        "facenet_threshold": threshold,
        "facenet_tar_original_a1_a2": float(
            np.mean(np.sum(s.original["a1_facenet"] * s.original["a2_facenet"], 1) >= threshold)
        ),
        "estimator_floor": floors(s),
    }
    report["rules"] = {}
    for name, rule in RULES.items():
        chosen = np.array([rule(s, i) for i in range(n)])
        report["rules"][name] = figures(s, chosen, threshold)
    # Probe: predicted vs dlib on the fused candidate; pool: best reachable age gap.
    predicted = cache["predicted"]
    report["probe_vs_dlib_on_candidates"] = {
        "gender_agreement": float(np.mean((predicted[..., 0] > 0.5) == (s.dlib_male > 0.5))),
        "age_mae": float(np.mean(np.abs(predicted[..., 1] - s.dlib_age))),
        "age_corr": float(np.corrcoef(predicted[..., 1].ravel(), s.dlib_age.ravel())[0, 1]),
    }
    age_gap = np.abs(s.dlib_age - s.original["a1_dlib_age"][:, None])
    wrn_gap = np.abs(s.wrn_age - s.original["a1_wrn_age"][:, None])
    report["pool"] = {
        "best_dlib_age_gap_in_8": float(age_gap[:, :8].min(1).mean()),
        "best_dlib_age_gap_in_12": float(age_gap.min(1).mean()),
        "best_wrn_age_gap_in_8": float(wrn_gap[:, :8].min(1).mean()),
        "best_wrn_age_gap_in_12": float(wrn_gap.min(1).mean()),
        "original_dlib_age_mean": float(s.original["a1_dlib_age"].mean()),
        "candidate_dlib_age_mean": float(s.dlib_age.mean()),
        "originals_over_50_dlib": int((s.original["a1_dlib_age"] > 50).sum()),
        "candidates_over_50_dlib_share": float((s.dlib_age > 50).mean()),
        "mean_ita_original": float(np.nanmean(s.original["a1_ita"])),
        "mean_ita_candidates": float(np.nanmean(s.ita)),
    }
    args.out.write_text(json.dumps(report, indent=2, default=float))
    print(json.dumps(report, indent=2, default=float))


def end_to_end(args: argparse.Namespace) -> None:
    """The real pipeline (working tree's fusion and candidate loop; `--max-age-gap` and
    `--same-side-gender` change the loop's acceptance test) on the same pairs as `render`: one
    anonymized photo per A1, its face cropped again, compared with A1 (attributes) and A2 (FaceNet)."""
    import dataclasses

    from g2face.align import align_face
    from g2face.evaluation.attributes import compare_attributes
    from g2face.models import fusion_anonymizer
    from g2face.payload import Secret
    from g2face.pipeline.g2face import G2FacePipeline
    from g2face.priors.mediapipe_geometry import MediaPipeGeometry

    if args.same_side_gender:  # a candidate must fall on the original's side of P(male) = 0.5

        def acceptable(score, settings) -> bool:
            return (
                score.similarity <= settings.max_similarity
                and score.same_side
                and score.age_gap <= settings.max_age_gap
            )

        original_scores = fusion_anonymizer.FusionAnonymizer._scores

        def scores_with_side(self, reference, reference_attributes, faces, points=None):
            found = original_scores(self, reference, reference_attributes, faces, points)
            if reference_attributes is None:
                return found
            crops = crops_to_tensor(faces, device=reference.device, dtype=reference.dtype)
            male = self.attributes(crops).male_probability
            side = reference_attributes[0] > 0.5
            for score, p in zip(found, male, strict=True):
                object.__setattr__(score, "same_side", bool((float(p) > 0.5) == side))
            return found

        fusion_anonymizer.FusionAnonymizer._scores = scores_with_side
        fusion_anonymizer.CandidateScore.acceptable = acceptable
    cache = np.load(args.cache)
    names = [str(n) for n in cache["names"]]
    pipeline = G2FacePipeline.from_pretrained("g2face-lite")
    model = pipeline.model
    model.candidates = dataclasses.replace(model.candidates, max_age_gap=args.max_age_gap)
    detector, facenet, secret = YuNetDetector(), FaceNetEncoder(), Secret(b"A" * 32, "key")
    originals, anonymized = [], []
    for name in tqdm(names, desc="anonymize", unit="face"):
        image = read_image(args.data / name).rgb
        face = FaceFinder(detector).find(image)
        anon = pipeline.anonymize(image, secret, seeds=[name_seed(name)], detections=[face.detection])
        originals.append(face.crop)
        anonymized.append(align_face(anon.image, face.detection, 256).crop)
    a1, fake, a2 = (crops_to_tensor(x) for x in (originals, anonymized, cache["others"]))
    comparison = compare_attributes(
        a1, fake, [WideResNetAgeGenderEstimator(), DlibAgeGenderEstimator()], MediaPipeGeometry()
    )
    emb1, emb2, embf = facenet(a1).numpy(), facenet(a2).numpy(), facenet(fake).numpy()
    people = [Path(n).parent.name for n in names]
    iu = np.triu_indices(len(names), 1)
    different = np.array([people[i] != people[j] for i, j in zip(*iu, strict=True)])
    threshold = threshold_at_far((emb1 @ emb1.T)[iu][different], 1e-3)
    cos = np.sum(embf * emb2, 1)
    report = {
        "faces": len(names),
        "max_age_gap": args.max_age_gap,
        "same_side_gender": args.same_side_gender,
        **comparison.summary(),
        "facenet_threshold": threshold,
        "facenet_tar_anonymized_vs_a2": float(np.mean(cos >= threshold)),
        "facenet_mean_cos": float(cos.mean()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float))
    print(json.dumps(report, indent=2, default=float))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="step", required=True)
    r = sub.add_parser("render")
    r.add_argument("--data", type=Path, default=Path("../shared/data"))
    r.add_argument("--pairs", type=int, default=40)
    r.add_argument("--cache", type=Path, required=True)
    e = sub.add_parser("evaluate")
    e.add_argument("--cache", type=Path, required=True)
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--reuse", action="store_true", help="take the scores saved beside --out (rules only)")
    x = sub.add_parser("e2e")
    x.add_argument("--data", type=Path, default=Path("../shared/data"))
    x.add_argument("--cache", type=Path, required=True, help="the render step's cache (pairs, A2 crops)")
    x.add_argument("--out", type=Path, required=True)
    x.add_argument("--max-age-gap", type=float, default=10.0)
    x.add_argument("--same-side-gender", action="store_true")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    {"render": render, "evaluate": evaluate, "e2e": end_to_end}[args.step](args)


if __name__ == "__main__":
    main()
