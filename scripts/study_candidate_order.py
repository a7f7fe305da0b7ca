"""Can the default render fewer candidates per face without losing anonymity or attributes?
(issues 17 and 11). A candidate's dummy identity d_k = f_dummy(z_k) lives in SFace space, so its
cosine to the original's SFace embedding is known before anything is rendered; if it predicts the
fused candidate's similarity, the keyed pool can be ordered by it (and by the attribute probe) and
the search can stop at the first acceptable render.

``render``: for N LFW genuine pairs (A1, A2), the keyed pool of 64 dummies of A1 (the shipped pool:
`PROBE_POOL`), the probe's closest 16 and the 4 with the lowest dummy cosine
not among them, rendered at A1's pose and expression as the anonymizer renders (spread) and cached.

``evaluate``: each cached candidate fused and scored by `study_attribute_keeping.measure` (SFace to
A1, FaceNet to A2, dlib and wrn gender and age, ITA), the correlation of the dummy cosine with the
fused candidate's SFace and FaceNet cosines, and several search rules replayed on the same renders:
renders per face, FaceNet TAR@1e-3 vs A2 and mean cosine, gender kept and age error (wrn never
chooses), ITA.

    PYTHONPATH=src python scripts/study_candidate_order.py render --pairs 32 --cache runs/order/cache.npz
    PYTHONPATH=src python scripts/study_candidate_order.py evaluate --cache runs/order/cache.npz \
        --out runs/order/evaluate.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).parent))
from study_attribute_keeping import Scores, genuine_pair_crops, scored  # noqa: E402

from g2face.evaluation.protocols import name_seed  # noqa: E402
from g2face.models.fusion_anonymizer import PROBE_POOL, FusionAnonymizer, candidate_seed  # noqa: E402
from g2face.models.zoo import load_model  # noqa: E402
from g2face.nn.crops import crops_to_tensor, tensor_to_crops  # noqa: E402

POOL = PROBE_POOL
BY_PROBE = 16
BY_COSINE = 4


@torch.no_grad()
def render(args: argparse.Namespace) -> None:
    model = load_model("g2face-lite")
    assert isinstance(model, FusionAnonymizer) and model.attribute_probe is not None
    names, firsts, seconds = genuine_pair_crops(args.data, args.pairs)
    crops = crops_to_tensor(firsts)
    size = model.image_size
    reference = model.attributes(crops)
    embeddings = model.identity(crops)
    points = (model.geometry(crops).landmarks[..., :2] * size - 0.5).numpy()
    s = model.candidates
    out: dict[str, list] = {
        k: [] for k in ("renders", "render_points", "predicted", "dummy_cos", "probe_gap")
    }
    started = time.perf_counter()
    for i, name in enumerate(tqdm(names, desc="render", unit="face")):
        seed = name_seed(name)
        dummies = model.dummy_identities([candidate_seed(seed, k) for k in range(POOL)], torch.float32)
        predicted = model.attribute_probe(dummies)
        p_male, p_age = torch.sigmoid(predicted[:, 0]), predicted[:, 1]
        male, age = float(reference.male_probability[i]), float(reference.age[i])
        gap = (p_male - male).abs() * s.gender_weight + s.age_weight * (p_age - age).abs()
        cos = F.normalize(dummies, dim=1) @ F.normalize(embeddings[i], dim=0)
        by_probe = sorted(range(POOL), key=lambda k: (float(gap[k]), k))[:BY_PROBE]
        by_cos = [k for k in sorted(range(POOL), key=lambda k: float(cos[k])) if k not in by_probe]
        indices = by_probe + by_cos[:BY_COSINE]
        images = model.render_dummies(
            dummies[indices], model.geometry_vector(model.geometry(crops[i : i + 1])), s.spread
        )
        out["render_points"].append((model.geometry(images).landmarks[..., :2] * size - 0.5).numpy())
        out["renders"].append(tensor_to_crops(images))
        out["predicted"].append(np.stack([p_male[indices].numpy(), p_age[indices].numpy()], 1))
        out["dummy_cos"].append(cos[indices].numpy())
        out["probe_gap"].append(gap[indices].numpy())
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.cache,
        names=np.array(names),
        originals=np.stack(firsts),
        others=np.stack(seconds),
        original_points=points,
        **{k: np.stack(v) for k, v in out.items()},
    )
    print(f"{len(names)} faces x {len(indices)} candidates in {time.perf_counter() - started:.0f} s")


Rule = Callable[[Scores, dict, int], list[int]]
"""A search rule: the candidate indices it renders for face i, in order; the last is the chosen."""


def _acceptable(s: Scores, i: int, k: int, max_similarity: float = 0.3, max_age_gap: float = 10.0) -> bool:
    male, age = s.original["a1_dlib_male"][i], s.original["a1_dlib_age"][i]
    return (
        s.sface[i, k] <= max_similarity
        and (s.dlib_male[i, k] >= 0.5) == (male >= 0.5)
        and abs(s.dlib_age[i, k] - age) <= max_age_gap
    )


def _fallback(s: Scores, i: int, seen: list[int]) -> int:
    male, age = s.original["a1_dlib_male"][i], s.original["a1_dlib_age"][i]
    different = [k for k in seen if s.sface[i, k] <= 0.3]
    if different:
        return min(
            different,
            key=lambda k: (
                s.sface[i, k] + abs(s.dlib_male[i, k] - male) + 0.02 * max(0, abs(s.dlib_age[i, k] - age) - 4)
            ),
        )
    return min(seen, key=lambda k: s.sface[i, k])


def rounds_rule(order_key: str | None, per_round: int, rounds: int, first_acceptable: bool = False) -> Rule:
    """Render in `order_key` order (None: the probe's order, as shipped), `per_round` at a time, up
    to `rounds` rounds; stop after the first round with an acceptable candidate (with
    `first_acceptable`: at the first acceptable render) and keep the least similar acceptable one."""

    def rule(s: Scores, cache: dict, i: int) -> list[int]:
        n = BY_PROBE if order_key is None else s.sface.shape[1]
        order = list(range(n))
        if order_key is not None:
            order = sorted(order, key=lambda k: (float(cache[order_key][i, k]), k))
        seen: list[int] = []
        for r in range(rounds):
            for k in order[r * per_round : (r + 1) * per_round]:
                seen.append(k)
                if first_acceptable and _acceptable(s, i, k):
                    return [*seen, k]
            ok = [k for k in seen if _acceptable(s, i, k)]
            if ok:
                return [*seen, min(ok, key=lambda k: s.sface[i, k])]
        return [*seen, _fallback(s, i, seen)]

    return rule


def evaluate(args: argparse.Namespace) -> None:
    cache = dict(np.load(args.cache))
    s, threshold = scored(cache, args.out, args.reuse)
    n = s.sface.shape[0]
    # Combined pre-render order: the probe's attribute gap plus the dummy's cosine to the original.
    for weight in (0.5, 1.0, 2.0):
        cache[f"combined_{weight}"] = cache["probe_gap"] + weight * cache["dummy_cos"]
    rules = {
        "probe order, rounds of 4 (x2), least similar acceptable (shipped before)": rounds_rule(None, 4, 2),
        "probe order, one candidate": rounds_rule(None, 1, 1),
        "probe order, 4 at once (x1)": rounds_rule(None, 4, 1),
        "probe order, rounds of 2 (x2) (shipped now)": rounds_rule(None, 2, 2),
        "probe order, rounds of 3 (x2)": rounds_rule(None, 3, 2),
        "probe order, rounds of 4 (x4)": rounds_rule(None, 4, 4),
        "probe order, first acceptable (max 8)": rounds_rule(None, 1, 8, True),
        "dummy-cos order, first acceptable (max 8)": rounds_rule("dummy_cos", 1, 8, True),
        "dummy-cos order, rounds of 2 (x4)": rounds_rule("dummy_cos", 2, 4),
        "probe+0.5 cos, first acceptable (max 8)": rounds_rule("combined_0.5", 1, 8, True),
        "probe+1 cos, first acceptable (max 8)": rounds_rule("combined_1.0", 1, 8, True),
        "probe+2 cos, first acceptable (max 8)": rounds_rule("combined_2.0", 1, 8, True),
        "probe+1 cos, rounds of 2 (x4)": rounds_rule("combined_1.0", 2, 4),
    }
    o = s.original
    report = {
        "faces": n,
        "facenet_threshold": threshold,
        "corr_dummy_cos_vs_fused_sface": float(
            np.corrcoef(cache["dummy_cos"].ravel(), s.sface.ravel())[0, 1]
        ),
        "corr_dummy_cos_vs_fused_facenet_a2": float(
            np.corrcoef(cache["dummy_cos"].ravel(), s.facenet.ravel())[0, 1]
        ),
        "within_face_corr_dummy_cos_vs_sface": float(
            np.mean([np.corrcoef(cache["dummy_cos"][i], s.sface[i])[0, 1] for i in range(n)])
        ),
        "within_face_corr_dummy_cos_vs_facenet": float(
            np.mean([np.corrcoef(cache["dummy_cos"][i], s.facenet[i])[0, 1] for i in range(n)])
        ),
        "rules": {},
    }
    rows = np.arange(n)
    for name, rule in rules.items():
        picks = [rule(s, cache, i) for i in range(n)]
        chosen = np.array([p[-1] for p in picks])
        rendered = np.array([len(p) - 1 for p in picks])
        pick = {
            k: getattr(s, k)[rows, chosen]
            for k in ("facenet", "wrn_male", "wrn_age", "dlib_age", "ita", "sface")
        }
        report["rules"][name] = {
            "renders_per_face": float(rendered.mean()),
            "facenet_tar": float(np.mean(pick["facenet"] >= threshold)),
            "facenet_mean_cos": float(pick["facenet"].mean()),
            "sface_mean_cos_to_a1": float(pick["sface"].mean()),
            "gender_kept/wrn": float(np.mean((pick["wrn_male"] > 0.5) == (o["a1_wrn_male"] > 0.5))),
            "age_error/wrn": float(np.mean(np.abs(pick["wrn_age"] - o["a1_wrn_age"]))),
            "age_error/dlib": float(np.mean(np.abs(pick["dlib_age"] - o["a1_dlib_age"]))),
            "ita_difference": float(np.nanmean(np.abs(pick["ita"] - o["a1_ita"]))),
        }
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render")
    r.add_argument("--data", type=Path, default=Path("../shared/data"))
    r.add_argument("--pairs", type=int, default=32)
    r.add_argument("--cache", type=Path, required=True)
    e = sub.add_parser("evaluate")
    e.add_argument("--cache", type=Path, required=True)
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--reuse", action="store_true", help="reuse the saved scores of an earlier evaluate")
    args = parser.parse_args()
    {"render": render, "evaluate": evaluate}[args.command](args)


if __name__ == "__main__":
    main()
