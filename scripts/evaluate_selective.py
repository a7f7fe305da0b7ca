"""Figures of selective anonymization (issue 16, docs/selective.md) on LFW and the committed fixtures.

keep    anonymity cost of kept regions: FaceNet-CASIA (never used by the anonymizer) and SFace
        (white-box) TAR of anonymized A1 vs A2 (two photos of one person) per region set, at FAR 1e-3
        from impostor pairs of `--impostors` distinct people's original photos.
exempt  the identity decision of `--exempt`: references = one photo each of `--people` LFW people,
        processed = another photo of each (their main face must be exempt; any other face in it
        must not) and the photos of `--others` people not among the references and the committed
        fixtures (every face must be anonymized).
small   faces below `--min-face`: grids of downscaled fixture portraits; every detected face must be
        handled by the fallback and changed.

    python scripts/evaluate_selective.py keep --data ../shared/data --pairs 20
    python scripts/evaluate_selective.py exempt --data ../shared/data --people 100 --others 300
    python scripts/evaluate_selective.py small
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from g2face.align import align_face
from g2face.detection import YuNetDetector
from g2face.evaluation.metrics import threshold_at_far
from g2face.evaluation.protocols import read_lfw_pairs
from g2face.io import read_image
from g2face.models.fusion import FusionSettings
from g2face.nn.crops import crops_to_tensor
from g2face.pipeline.g2face import G2FacePipeline
from g2face.pipeline.selection import FaceSelector, sface_embedder
from g2face.priors.facenet import FaceNetEncoder
from g2face.priors.sface import SFaceEncoder

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
KEEP_SETS = ((), ("eyes",), ("mouth",), ("eyes", "brows"), ("nose", "mouth"))


def _main_face(detector, image):
    faces = detector.detect(image)
    if not faces:
        return None, faces
    h, w = image.shape[:2]
    main = min(
        faces, key=lambda f: np.hypot((f.box[0] + f.box[2]) / 2 - w / 2, (f.box[1] + f.box[3]) / 2 - h / 2)
    )
    return main, faces


def _spread(items: list, n: int) -> list:
    return items[:: max(1, len(items) // n)][:n]


def keep_cost(args) -> dict:
    lfw = read_lfw_pairs(args.data)
    genuine = [(a, b) for a, b, s in zip(lfw.first, lfw.second, lfw.same, strict=True) if s]
    pairs = _spread(genuine, args.pairs)
    detector = YuNetDetector()
    pipeline = G2FacePipeline.from_pretrained("g2face-lite")
    encoders = {"facenet": FaceNetEncoder(), "sface": SFaceEncoder()}

    def embed(crops):
        batch = crops_to_tensor(crops)
        return {k: e(batch).numpy() for k, e in encoders.items()}

    # Thresholds: distinct people's original photos (first photos of distinct pairs' people).
    impostor_paths = {Path(p).parent.name: p for p in lfw.first + lfw.second}
    impostor_crops = []
    for path in _spread(sorted(impostor_paths.values()), args.impostors):
        image = read_image(args.data / path).rgb
        face, _ = _main_face(detector, image)
        if face is not None:
            impostor_crops.append(align_face(image, face, 256).crop)
    impostor = embed(impostor_crops)
    iu = np.triu_indices(len(impostor_crops), 1)
    thresholds = {k: threshold_at_far((v @ v.T)[iu], 1e-3) for k, v in impostor.items()}
    scores = {"+".join(k) or "none": {"facenet": [], "sface": []} for k in KEEP_SETS}
    started = time.perf_counter()
    for n, (first, second) in enumerate(pairs):
        a1, a2 = read_image(args.data / first).rgb, read_image(args.data / second).rgb
        (f1, _), (f2, _) = _main_face(detector, a1), _main_face(detector, a2)
        if f1 is None or f2 is None:
            continue
        crops = [align_face(a2, f2, 256).crop]
        for keep in KEEP_SETS:
            pipeline.model.fusion = FusionSettings(keep=keep)
            anon = pipeline.anonymize(a1, "evaluation password", seed=n, detections=[f1])
            crops.append(align_face(anon.image, f1, 256).crop)
        found = embed(crops)
        for k, emb in found.items():
            for keep, row in zip(KEEP_SETS, emb[1:], strict=True):
                scores["+".join(keep) or "none"][k].append(float(row @ emb[0]))
        print(f"{n + 1}/{len(pairs)} {time.perf_counter() - started:.0f}s", flush=True)
    return {
        "pairs": len(scores["none"]["facenet"]),
        "impostor_photos": len(impostor_crops),
        "thresholds_far_1e-3": thresholds,
        "keep": {
            name: {f"{k}_tar": float(np.mean(np.array(v) >= thresholds[k])) for k, v in by_encoder.items()}
            | {f"{k}_mean_cosine": float(np.mean(v)) for k, v in by_encoder.items()}
            for name, by_encoder in scores.items()
        },
        "seconds": time.perf_counter() - started,
    }


def exempt_decisions(args) -> dict:
    lfw = read_lfw_pairs(args.data)
    genuine, seen = [], set()
    for a, b, same in zip(lfw.first, lfw.second, lfw.same, strict=True):
        person = Path(a).parent.name
        if same and person not in seen:
            seen.add(person)
            genuine.append((a, b))
    people = _spread(genuine, args.people)
    references = {Path(a).parent.name for a, _ in people}
    others = sorted({p for p in lfw.first + lfw.second if Path(p).parent.name not in references})
    others = _spread(sorted({Path(p).parent.name: p for p in others}.values()), args.others)
    detector = YuNetDetector()
    embedder = sface_embedder()
    started = time.perf_counter()
    # The threshold at FAR `--far` per comparison, from distinct people outside both sets.
    used = references | {Path(p).parent.name for p in others}
    spare = {Path(p).parent.name: p for p in lfw.first + lfw.second if Path(p).parent.name not in used}
    calibration = []
    for path in _spread(sorted(spare.values()), args.calibration):
        image = read_image(args.data / path).rgb
        face, _ = _main_face(detector, image)
        if face is not None:
            calibration.append(embedder(image, [face])[0])
    calibration = np.stack(calibration)
    iu = np.triu_indices(len(calibration), 1)
    threshold = args.threshold or threshold_at_far((calibration @ calibration.T)[iu], args.far)
    selector = FaceSelector.from_photos(
        [args.data / a for a, _ in people], "exempt", detector, embedder, threshold=threshold
    )
    kept, exempt_scores, other_scores, exposed_others, ambiguous = 0, [], [], [], 0
    missing = 0
    for _, b in people:
        image = read_image(args.data / b).rgb
        main, faces = _main_face(detector, image)
        if main is None:
            missing += 1
            continue
        for face, match in zip(faces, selector.decide(image, faces), strict=True):
            if face is main:
                kept += match.exempt
                exempt_scores.append(match.score)
                ambiguous += match.ambiguous
            else:  # a bystander in the exempt person's photo
                other_scores.append(match.score)
                if match.exempt:
                    exposed_others.append(b)
    other_paths = [args.data / p for p in others] + sorted(FIXTURES.glob("*.*"))
    for path in other_paths:
        image = read_image(path).rgb
        faces = detector.detect(image)
        for match in selector.decide(image, faces):
            other_scores.append(match.score)
            if match.exempt:
                exposed_others.append(str(path))
    processed = len(people) - missing
    return {
        "reference_people": len(people),
        "exempt_photos_with_a_face": processed,
        "exempt_kept_rate": kept / processed,
        "exempt_ambiguous": ambiguous,
        "exempt_score_median": float(np.median(exempt_scores)),
        "other_faces": len(other_scores),
        "other_photos": len(other_paths),
        "other_anonymized_rate": 1 - len(exposed_others) / len(other_scores),
        "other_exposed": exposed_others,
        "other_score_max": float(np.max(other_scores)),
        "other_score_p999": float(np.quantile(other_scores, 0.999)),
        "calibration_photos": len(calibration),
        "far_per_comparison": args.far,
        "threshold": selector.threshold,
        "margin": selector.margin,
        "seconds": time.perf_counter() - started,
    }


def small_faces(args) -> dict:
    from PIL import Image

    pipeline = G2FacePipeline.from_pretrained("g2face-lite")
    results, detected, handled = [], 0, 0
    started = time.perf_counter()
    for path in sorted(FIXTURES.glob("*.*")):
        photo = Image.open(path).convert("RGB")
        for factor in (4, 6, 8):
            tile = np.asarray(photo.resize((photo.width // factor, photo.height // factor), Image.BILINEAR))
            crowd = np.concatenate([np.concatenate([tile] * 3, 1)] * 2, 0)
            faces = pipeline.detector.detect(crowd)
            out = pipeline.anonymize(crowd, "evaluation password", detections=faces, min_face=args.min_face)
            ok = 0
            for d in out.decisions:
                x0, y0, x1, y1 = (int(v) for v in d.detection.box)
                changed = np.any(out.image[y0:y1, x0:x1] != crowd[y0:y1, x0:x1])
                ok += int(d.action == "small-face fallback" and changed)
            widths = [round(d.width) for d in faces]
            results.append(
                {"photo": path.name, "factor": factor, "faces": len(faces), "widths": widths, "ok": ok}
            )
            detected += len(faces)
            handled += ok
    return {
        "min_face": args.min_face,
        "grids": results,
        "detected": detected,
        "handled_rate": handled / max(1, detected),
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["keep", "exempt", "small"])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--pairs", type=int, default=20, help="keep: LFW genuine pairs")
    parser.add_argument("--impostors", type=int, default=300, help="keep: photos for the FAR thresholds")
    parser.add_argument("--people", type=int, default=100, help="exempt: reference people")
    parser.add_argument("--others", type=int, default=300, help="exempt: photos of other people")
    parser.add_argument("--calibration", type=int, default=500, help="exempt: photos for the threshold")
    parser.add_argument("--far", type=float, default=1e-4, help="exempt: FAR per comparison")
    parser.add_argument("--threshold", type=float, help="exempt: use this threshold instead")
    parser.add_argument("--min-face", type=float, default=64, help="small: the --min-face threshold")
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.what != "small" and not (args.data / "lfw" / "pairs.txt").is_file():
        raise SystemExit(f"no LFW under {args.data}: pass --data pointing at the shared data folder")
    torch.set_grad_enabled(False)
    figures = {"keep": keep_cost, "exempt": exempt_decisions, "small": small_faces}[args.what](args)
    text = json.dumps(figures, indent=2, default=float)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
