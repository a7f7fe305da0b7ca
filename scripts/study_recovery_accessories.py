"""Do recovered faces add glasses or facial hair the person never had? (`keep_accessories`)

On LFW genuine pairs (A1, A2), A1 is anonymized (key A, the evaluation's keyed seeds) and its true
SFace identity is rendered back into the anonymized photo (perfect channel), once with the
identity as decoded and once moved along the attribute probe's glasses and facial-hair rows to what
the anonymized face shows (`FusionAnonymizer.keep_accessories`, the shipped behaviour), each plainly
and with `--refine` steps. Reported per arm: how many recovered faces wear glasses where the
original surely wears none (and the reverse), the same for facial hair, FaceNet-CASIA's mean
cosine to A2 (never used by the model) and its match rate at the LFW FAR-1e-3 threshold 0.565.

    python scripts/study_recovery_accessories.py --data ../shared/data --pairs 30 --refine 10
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from evaluate_default import _genuine_pairs, _main_face  # noqa: E402

from g2face.align import align_face  # noqa: E402
from g2face.detection import YuNetDetector  # noqa: E402
from g2face.evaluation.protocols import name_seed  # noqa: E402
from g2face.io import read_image  # noqa: E402
from g2face.models.fusion import (  # noqa: E402
    FACIAL_HAIR_BARE_ORIGINAL,
    FACIAL_HAIR_EDGE,
    FACIAL_HAIR_SURE_ORIGINAL,
    GLASSES_EDGE,
    GLASSES_EDGE_ORIGINAL,
    GLASSES_SURE_ORIGINAL,
    facial_hair_score,
    glasses_score,
)
from g2face.nn.crops import crops_to_tensor, tensor_to_crops  # noqa: E402
from g2face.payload import Secret  # noqa: E402
from g2face.pipeline.g2face import G2FacePipeline  # noqa: E402
from g2face.priors.facenet import FaceNetEncoder  # noqa: E402

FACENET_MATCH = 0.565  # LFW FAR 1e-3 among the evaluation's 150 originals (scripts/evaluate_default.py)


def _count(got: list[dict], rows: list[dict], key: str, edge: float, original_bar: float, added: bool) -> int:
    """Recovered faces that show the accessory (score >= `edge`) where the original surely lacks it
    (its score < `original_bar`), or, `added` False, lack it where the original surely has it."""
    if added:
        return sum(g[key] >= edge and r[key] < original_bar for g, r in zip(got, rows, strict=True))
    return sum(g[key] < edge and r[key] >= original_bar for g, r in zip(got, rows, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--refine", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="per-face results (JSON)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    genuine, _ = _genuine_pairs(args.data, "lfw")
    step = max(1, len(genuine) // args.pairs)
    pairs = genuine[::step][: args.pairs]
    pipeline = G2FacePipeline.from_pretrained("g2face-lite")
    model, detector, facenet = pipeline.model, YuNetDetector(), FaceNetEncoder()
    keep = model.keep_accessories
    arms = {"as decoded": lambda identities, *_: identities, "accessories kept": keep}
    key = Secret(b"A" * 32, "key")
    rows = []
    for n, pair in enumerate(pairs):
        a1, a2 = (read_image(args.data / p).rgb for p in pair)
        f1, f2 = _main_face(detector, a1), _main_face(detector, a2)
        if f1 is None or f2 is None:
            continue
        anon = pipeline.anonymize(a1, key, detections=[f1], seeds=[name_seed(pair[0] + "/A")])
        original = align_face(a1, f1, 256).crop
        crop = crops_to_tensor([align_face(anon.image, f1, 256).crop])
        truth = model.identity(crops_to_tensor([original]))
        points = (model.geometry(crops_to_tensor([original])).landmarks[0, :, :2] * 256 - 0.5).numpy()
        other = facenet(crops_to_tensor([align_face(a2, f2, 256).crop]))[0]
        row = {
            "pair": list(pair),
            "glasses": glasses_score(original, points),
            "facial_hair": facial_hair_score(original, points),
        }
        for arm, rule in arms.items():
            model.keep_accessories = rule
            for steps in (0, args.refine):
                rendered, _ = model.render_identities(crop, truth, steps)
                face = tensor_to_crops(rendered)[0]
                row[f"{arm}/{steps}"] = {
                    "glasses": glasses_score(face, points),
                    "facial_hair": facial_hair_score(face, points),
                    "facenet": float(facenet(rendered)[0] @ other),
                }
        model.keep_accessories = keep
        rows.append(row)
        print(f"{n + 1}/{len(pairs)}", json.dumps({k: v for k, v in row.items() if "/" in k}), flush=True)

    summary = {}
    for arm in arms:
        for steps in (0, args.refine):
            got = [r[f"{arm}/{steps}"] for r in rows]
            summary[f"{arm}, refine {steps}"] = {
                "glasses added": _count(
                    got, rows, "glasses", GLASSES_EDGE, GLASSES_EDGE_ORIGINAL, added=True
                ),
                "glasses lost": _count(
                    got, rows, "glasses", GLASSES_EDGE, GLASSES_SURE_ORIGINAL, added=False
                ),
                "facial hair added": _count(
                    got, rows, "facial_hair", FACIAL_HAIR_EDGE, FACIAL_HAIR_BARE_ORIGINAL, added=True
                ),
                "facial hair lost": _count(
                    got, rows, "facial_hair", FACIAL_HAIR_EDGE, FACIAL_HAIR_SURE_ORIGINAL, added=False
                ),
                "facenet mean cosine to A2": float(np.mean([g["facenet"] for g in got])),
                "facenet match": float(np.mean([g["facenet"] >= FACENET_MATCH for g in got])),
            }
    summary["faces"] = len(rows)
    summary["originals without glasses (surely)"] = sum(r["glasses"] < GLASSES_EDGE_ORIGINAL for r in rows)
    summary["originals without facial hair (surely)"] = sum(
        r["facial_hair"] < FACIAL_HAIR_BARE_ORIGINAL for r in rows
    )
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "faces": rows}, indent=1))


if __name__ == "__main__":
    main()
