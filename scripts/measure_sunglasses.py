"""Does the default keep an original's dark glasses, and what does keeping them cost? (issue 19)

CelebA photos (every `--every`-th of the first `--scan`) are scored with `sunglasses_score` on their
aligned crop; those at or above `SUNGLASSES_EYES` are anonymized twice with the same keyed seed:
with the lenses kept (the shipped `keep_sunglasses`) and without (`--fusion` override). Reported:
how many photos wear dark glasses by the score; how often the fake still does (the same score on
the anonymized photo's crop: white-box, it is the rule that keeps them); FaceNet-CASIA cosine
(never used by the model) of each fake to another photo of the person (A2) and to the same photo;
and a contact sheet original | lenses not kept | kept, to judge by eye. All scores are written to
`scores.txt` so the threshold can be checked on the sorted crops.

`--files LIST.json` (CelebA file names, as in `identities.csv`) takes those photos instead of the
scan, e.g. the partly dark lenses the shipped default tints (`wears_tinted_glasses`); `--wears` is
then the eye darkness from which a fake counts as still wearing them (`SUNGLASSES_EYES_TINTED`).
`--threshold`: FaceNet's cosine at CelebA's FAR 1e-3 (0.540, `scripts/evaluate_default.py
--dataset celeba`), to count the fakes that match another photo of the person.

    PYTHONPATH=src python scripts/measure_sunglasses.py --data ../shared/data --out runs/sunglasses
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from g2face.align import align_face
from g2face.detection import YuNetDetector
from g2face.evaluation.protocols import name_seed
from g2face.io import read_image
from g2face.models.fusion import SUNGLASSES_EYES, sunglasses_score
from g2face.nn.crops import crops_to_tensor
from g2face.payload import Secret
from g2face.pipeline.g2face import G2FacePipeline
from g2face.priors.facenet import FaceNetEncoder

SIZE = 256


def _main_face(detector, image):
    faces = detector.detect(image)
    return max(faces, key=lambda f: f.width) if faces else None


def contact_sheet(rows: list[dict], tile: int = 112) -> Image.Image:
    """original | not kept | kept, in blocks of 12 rows side by side, with the sunglasses score."""
    per_column, line = 12, 14
    columns = max(1, -(-len(rows) // per_column))
    sheet = Image.new("RGB", (columns * (3 * tile + 12), per_column * (tile + line)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, row in enumerate(rows):
        x0, y = (k // per_column) * (3 * tile + 12), (k % per_column) * (tile + line)
        for j, view in enumerate(("original", "not_kept", "kept")):
            sheet.paste(Image.fromarray(row["crops"][view]).resize((tile, tile)), (x0 + j * tile, y))
            draw.text((x0 + j * tile + 2, y + tile), f"{view} {row['score'][view]:.2f}", fill="black")
    return sheet


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--scan", type=int, default=4500, help="CelebA photos considered (in index order)")
    parser.add_argument("--every", type=int, default=3, help="score every N-th of them")
    parser.add_argument("--model", default="g2face-lite")
    parser.add_argument("--files", type=Path, help="JSON list of CelebA files to take instead of the scan")
    parser.add_argument("--wears", type=float, default=SUNGLASSES_EYES, help="eye darkness worn")
    parser.add_argument("--threshold", type=float, default=0.540, help="FaceNet match threshold (FAR 1e-3)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    index = args.data / "celeba" / "identities.csv"
    if not index.is_file():
        print(f"no CelebA under {args.data}: pass --data; nothing measured")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    rows_csv = list(csv.DictReader(index.open()))
    by_identity: dict[str, list[str]] = {}
    for row in rows_csv:
        by_identity.setdefault(row["identity"], []).append(row["file"])
    detector = YuNetDetector()
    pipelines = {
        "kept": G2FacePipeline.from_pretrained(args.model),
        "not_kept": G2FacePipeline.from_pretrained(
            args.model, model_options={"fusion": {"keep_sunglasses": False}}
        ),
    }
    model = pipelines["kept"].model
    facenet, secret = FaceNetEncoder(), Secret(b"S" * 32, "key")
    started = time.perf_counter()
    scores, wearing = [], []
    chosen = None if args.files is None else set(json.loads(args.files.read_text()))
    considered = rows_csv[: args.scan : args.every]
    if chosen is not None:
        considered = [r for r in rows_csv if r["file"] in chosen]
    for row in considered:
        image = read_image(args.data / "celeba" / row["file"]).rgb
        face = _main_face(detector, image)
        if face is None:
            continue
        crop = align_face(image, face, SIZE).crop
        score = sunglasses_score(crop, _points(model, crop))
        scores.append((score, row["file"]))
        if chosen is not None or score >= SUNGLASSES_EYES:
            wearing.append((row, image, face, crop, score))
    print(
        f"scored {len(scores)} photos in {time.perf_counter() - started:.0f}s;",
        f"{len(wearing)} wear dark glasses",
    )
    (args.out / "scores.txt").write_text("".join(f"{s:.3f} {f}\n" for s, f in sorted(scores, reverse=True)))

    rows = []
    for n, (row, image, face, crop, score) in enumerate(wearing):
        others = [f for f in by_identity[row["identity"]] if f != row["file"]]
        other = None
        for name in others:
            other_image = read_image(args.data / "celeba" / name).rgb
            other_face = _main_face(detector, other_image)
            if other_face is not None:
                other = align_face(other_image, other_face, SIZE).crop
                break
        crops = {"original": crop}
        result = {"file": row["file"], "score": {"original": score}}
        for view, pipeline in pipelines.items():
            anon = pipeline.anonymize(image, secret, detections=[face], seeds=[name_seed(row["file"])])
            crops[view] = align_face(anon.image, face, SIZE).crop
            result["score"][view] = sunglasses_score(crops[view], _points(model, crops[view]))
            result[f"{view}_similarity"] = anon.faces[0].similarity
        views = list(crops) + (["other"] if other is not None else [])
        batch = crops_to_tensor(list(crops.values()) + ([other] if other is not None else []))
        emb = dict(zip(views, facenet(batch).numpy(), strict=True))
        for view in ("kept", "not_kept"):
            result[f"facenet_{view}_vs_same_photo"] = float(emb[view] @ emb["original"])
            if other is not None:
                result[f"facenet_{view}_vs_other_photo"] = float(emb[view] @ emb["other"])
        if other is not None:
            result["facenet_original_vs_other_photo"] = float(emb["original"] @ emb["other"])
        result["crops"] = crops
        rows.append(result)
        print(f"{n + 1}/{len(wearing)} {time.perf_counter() - started:.0f}s", flush=True)

    def mean(key: str) -> float | None:
        values = [r[key] for r in rows if r.get(key) is not None]  # (a turned face has no similarity)
        return round(float(np.mean(values)), 4) if values else None

    summary = {
        "scored": len(scores),
        "wearing_dark_glasses": len(wearing),
        "threshold": SUNGLASSES_EYES,
        "fake_still_wears_them": {
            v: round(float(np.mean([r["score"][v] >= args.wears for r in rows])), 3) if rows else None
            for v in ("kept", "not_kept")
        },
        "wears_from": args.wears,
        "fakes_matching_other_photo": {
            v: sum(r.get(f"facenet_{v}_vs_other_photo", -1) >= args.threshold for r in rows)
            for v in ("kept", "not_kept", "original")
        },
        "match_threshold": args.threshold,
        "facenet_vs_other_photo": {
            v: mean(f"facenet_{v}_vs_other_photo") for v in ("kept", "not_kept", "original")
        },
        "facenet_vs_same_photo": {v: mean(f"facenet_{v}_vs_same_photo") for v in ("kept", "not_kept")},
        "anonymizer_similarity": {v: mean(f"{v}_similarity") for v in ("kept", "not_kept")},
        "seconds": round(time.perf_counter() - started),
    }
    paired = [
        r["facenet_kept_vs_other_photo"] - r["facenet_not_kept_vs_other_photo"]
        for r in rows
        if "facenet_kept_vs_other_photo" in r
    ]
    if paired:
        summary["facenet_vs_other_photo_paired_difference"] = {
            "mean": round(float(np.mean(paired)), 4),
            "standard_error": round(float(np.std(paired) / np.sqrt(len(paired))), 4),
            "pairs": len(paired),
        }
    contact_sheet(rows).save(args.out / "faces.png")
    for r in rows:
        del r["crops"]
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
    (args.out / "metrics.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


def _points(model, crop: np.ndarray) -> np.ndarray:
    return model.geometry(crops_to_tensor([crop])).landmarks[0, :, :2].numpy() * SIZE - 0.5


if __name__ == "__main__":
    raise SystemExit(main())
