"""How much does the recovery refinement (`--refine`) buy, and in which form? A paired A/B.

On genuine pairs (A1, A2) of LFW or CelebA (every k-th of the evaluation's 150), A1 is anonymized
once (key A, the evaluation's keyed seeds) and its true SFace identity is rendered back into the
anonymized photo (perfect channel) in each arm: plainly, refined for N steps judged at the photo's
resolution (the shipped form), or refined judged on the full 256-px crop (session 26's form).
Every arm starts from the same anonymized photo, so differences are the refinement's alone.
Reported per arm: FaceNet-CASIA's mean cosine of the pasted-back recovery to A2 (FaceNet never
takes part in the refinement), the paired difference to the first refined arm with its standard
error, the share above the pairs' own FAR-1e-3 threshold, and seconds per face.

    python scripts/study_refinement.py --data ../shared/data --dataset celeba --pairs 30 \\
        --arms plain,10,10:crop,20 --out runs/refinement
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).parent))
from evaluate_default import _genuine_pairs, _main_face  # noqa: E402

from g2face.align import align_face, blend_faces, crop_source_width  # noqa: E402
from g2face.detection import YuNetDetector  # noqa: E402
from g2face.evaluation.metrics import threshold_at_far  # noqa: E402
from g2face.evaluation.protocols import name_seed  # noqa: E402
from g2face.io import read_image  # noqa: E402
from g2face.nn.crops import crops_to_tensor, tensor_to_crops  # noqa: E402
from g2face.payload import Secret  # noqa: E402
from g2face.pipeline.g2face import G2FacePipeline  # noqa: E402
from g2face.priors.facenet import FaceNetEncoder  # noqa: E402

SIZE = 256


def parse_arm(text: str) -> tuple[int, bool]:
    """'plain' → no refinement; 'N' → N steps judged at the photo's resolution; 'N:crop' → N steps
    judged on the full crop."""
    if text == "plain":
        return 0, True
    steps, _, where = text.partition(":")
    if not steps.isdigit() or where not in ("", "crop"):
        raise argparse.ArgumentTypeError(f"arm {text!r}: use plain, N or N:crop")
    return int(steps), where != "crop"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--dataset", choices=["lfw", "celeba"], default="lfw")
    parser.add_argument("--pairs", type=int, default=30, help="spread over the evaluation's 150")
    parser.add_argument("--arms", default="plain,10,10:crop", help="comma-separated: plain, N, N:crop")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    arms = {name: parse_arm(name) for name in args.arms.split(",")}
    reference = next((name for name, (steps, _) in arms.items() if steps > 0), next(iter(arms)))

    torch.set_grad_enabled(False)
    genuine, person = _genuine_pairs(args.data, args.dataset)
    spread = genuine[:: max(1, len(genuine) // 150)][:150]
    pairs = spread[:: max(1, 150 // args.pairs)][: args.pairs]
    detector, facenet = YuNetDetector(), FaceNetEncoder()
    pipeline = G2FacePipeline.from_pretrained("g2face-lite")
    model, key = pipeline.model, Secret(b"A" * 32, "key")
    rows = []
    for pair in tqdm(pairs, desc="pairs", unit="pair"):
        first, second = (read_image(args.data / p).rgb for p in pair)
        f1, f2 = _main_face(detector, first), _main_face(detector, second)
        if f1 is None or f2 is None:
            continue
        anon = pipeline.anonymize(first, key, detections=[f1], seeds=[name_seed(pair[0] + "/A")])
        aligned = align_face(anon.image, f1, SIZE)
        crops = {"original": align_face(first, f1, SIZE).crop, "other": align_face(second, f2, SIZE).crop}
        x = crops_to_tensor([aligned.crop])
        truth = model.identity(crops_to_tensor([crops["original"]]))
        width = crop_source_width(f1, SIZE)
        seconds = {}
        for name, (steps, at_photo_width) in arms.items():
            model._refinements.clear()  # each arm refines afresh (the cache is per identity)
            started = time.perf_counter()
            rendered, masks = model.render_identities(x, truth, steps, [width if at_photo_width else None])
            seconds[name] = time.perf_counter() - started
            image, _ = blend_faces(anon.image, list(tensor_to_crops(rendered)), [aligned], list(masks))
            crops[name] = align_face(image, f1, SIZE).crop
        embeddings = dict(zip(crops, facenet(crops_to_tensor(list(crops.values()))).numpy(), strict=True))
        rows.append(
            {
                "pair": list(pair),
                "width": width,
                "cosine": {k: float(embeddings[k] @ embeddings["other"]) for k in crops if k != "other"},
                "seconds": seconds,
                "original_embedding": embeddings["original"].tolist(),
            }
        )

    names = [person(row["pair"][0]) for row in rows]
    originals = np.array([row["original_embedding"] for row in rows])
    scores, upper = originals @ originals.T, np.triu_indices(len(rows), 1)
    impostor = np.array([names[i] != names[j] for i, j in zip(*upper, strict=True)])
    threshold = threshold_at_far(scores[upper][impostor], 1e-3)
    summary = {"dataset": args.dataset, "pairs": len(rows), "threshold_own": round(threshold, 4)}
    base = np.array([row["cosine"][reference] for row in rows])
    for name in ["original", *arms]:
        cosine = np.array([row["cosine"][name] for row in rows])
        difference = cosine - base
        error = difference.std(ddof=1) / np.sqrt(len(rows))
        summary[name] = {
            "mean_cosine": round(float(cosine.mean()), 4),
            f"vs_{reference}": f"{difference.mean():+.4f} ± {error:.4f}",
            "above_threshold": round(float((cosine >= threshold).mean()), 3),
            "seconds": round(float(np.mean([row["seconds"].get(name, 0.0) for row in rows])), 2),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "refinement.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
