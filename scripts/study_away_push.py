"""Does pushing a too-similar fake away from the original help? (`CandidateSettings.away_steps`)

Takes a finished `scripts/evaluate_default.py` run (its rows.json), re-anonymizes the pairs whose
kept face the search pushed or left above its SFace bar (`--above`, the shipped 0.3) with the same
keyed seeds, once as shipped and once with the given candidate settings, and prints, per face and on
average, before → after: FaceNet-CASIA cosine to A2 (never used by the anonymizer), SFace cosine to A2
(white-box), the anonymizer's own similarity to the same photo, and wrn-imdbwiki's gender and age
of the fake (never used either). Seconds per face are printed too.

    python scripts/study_away_push.py --data ../shared/data --rows runs/eval-lfw/rows.json \\
        --candidates '{"away_steps": 5}'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from evaluate_default import _main_face as main_face  # noqa: E402
from evaluate_default import anonymized_with_key_a  # noqa: E402

from g2face.align import align_face  # noqa: E402
from g2face.detection import YuNetDetector  # noqa: E402
from g2face.io import read_image  # noqa: E402
from g2face.nn.crops import crops_to_tensor  # noqa: E402
from g2face.pipeline.g2face import G2FacePipeline  # noqa: E402
from g2face.priors.attributes import WideResNetAgeGenderEstimator  # noqa: E402
from g2face.priors.facenet import FaceNetEncoder  # noqa: E402
from g2face.priors.sface import SFaceEncoder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--rows", type=Path, required=True, help="rows.json of an evaluate_default run")
    parser.add_argument("--above", type=float, default=0.3, help="re-run faces kept above this similarity")
    parser.add_argument("--candidates", type=json.loads, default={}, help="CandidateSettings overrides")
    parser.add_argument("--limit", type=int, default=0, help="at most this many faces (0: all)")
    parser.add_argument("--out", type=Path, default=None, help="write the per-face results here (JSON)")
    parser.add_argument("--sheet", type=Path, default=None, help="save original | before | after (PNG)")
    args = parser.parse_args()

    # the faces the search pushed (rows of runs since session 15 say so) or left above the bar
    rows = [
        r
        for r in json.loads(args.rows.read_text())
        if r.get("pushed") or (r["chosen_similarity"] or 0) > args.above
    ]
    if args.limit:
        rows = rows[: args.limit]
    torch.set_grad_enabled(False)
    detector = YuNetDetector()
    baseline = G2FacePipeline.from_pretrained("g2face-lite")
    pipeline = G2FacePipeline.from_pretrained("g2face-lite", model_options={"candidates": args.candidates})
    facenet, sface, wrn = FaceNetEncoder(), SFaceEncoder(), WideResNetAgeGenderEstimator()
    results, tiles = [], []
    for n, row in enumerate(rows):
        a1 = read_image(args.data / row["pair"][0]).rgb
        a2 = read_image(args.data / row["pair"][1]).rgb
        f1, f2 = main_face(detector, a1), main_face(detector, a2)
        before = anonymized_with_key_a(baseline, a1, f1, row["pair"][0])
        started = time.perf_counter()
        anon = anonymized_with_key_a(pipeline, a1, f1, row["pair"][0])
        seconds = time.perf_counter() - started
        crops = [
            align_face(im, f, 256).crop
            for im, f in ((a1, f1), (before.image, f1), (anon.image, f1), (a2, f2))
        ]
        batch = crops_to_tensor(crops)
        ef, es = facenet(batch).numpy(), sface(batch).numpy()
        attributes = wrn(batch[:3])
        male = [bool(p >= 0.5) for p in attributes.male_probability.tolist()]
        age = attributes.age.tolist()
        result = {
            "pair": row["pair"],
            "facenet": [float(ef[1] @ ef[3]), float(ef[2] @ ef[3])],
            "sface": [float(es[1] @ es[3]), float(es[2] @ es[3])],
            "chosen": [before.faces[0].similarity, anon.faces[0].similarity],
            "wrn_gender_kept": [male[0] == male[1], male[0] == male[2]],
            "wrn_age_error": [abs(age[0] - age[1]), abs(age[0] - age[2])],
            "seconds": seconds,
        }
        results.append(result)
        tiles.append(np.concatenate(crops[:3], 1))
        print(
            f"{n + 1}/{len(rows)} {Path(row['pair'][0]).name}: facenet {result['facenet'][0]:.3f} -> "
            f"{result['facenet'][1]:.3f}, chosen {result['chosen'][0]:.3f} -> {result['chosen'][1]:.3f}, "
            f"gender kept {result['wrn_gender_kept']}, {seconds:.1f} s",
            flush=True,
        )
    summary = {
        key: [float(np.mean([r[key][i] for r in results])) for i in (0, 1)]
        for key in ("facenet", "sface", "chosen", "wrn_gender_kept", "wrn_age_error")
    }
    threshold = 0.5651807686437103 if "lfw" in str(results[0]["pair"][0]) else None
    if threshold:
        summary["facenet_matches_at_lfw_far_1e-3"] = [
            sum(r["facenet"][i] >= threshold for r in results) for i in (0, 1)
        ]
    difference = np.array([r["facenet"][1] - r["facenet"][0] for r in results])
    error = difference.std(ddof=1) / np.sqrt(len(results)) if len(results) > 1 else float("nan")
    summary["facenet_paired_difference"] = f"{difference.mean():+.4f} ± {error:.4f}"
    summary["seconds_per_face"] = float(np.mean([r["seconds"] for r in results]))
    summary["faces"] = len(results)
    print(json.dumps(summary, indent=1))
    if args.sheet:
        sheet = Image.fromarray(np.concatenate(tiles, 0)).resize((3 * 128, 128 * len(tiles)))
        sheet.save(args.sheet)
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "faces": results}, indent=1))


if __name__ == "__main__":
    main()
