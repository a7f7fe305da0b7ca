"""What `g2face eval` cannot see of the geometric-fusion default: recovery through the image-level
carriers, and apparent attributes. On genuine pairs (A1, A2 = two photos of one person) of LFW
(the protocol's) or CelebA (`--dataset celeba`: each identity's first two photos):

* anonymity: FaceNet-CASIA (never a loss) and SFace (white-box) of anonymized A1 vs A2;
* two keys, same face: FaceNet match of the two anonymized versions of A1;
* recovery, perfect channel: A1's true SFace identity rendered back into the anonymized photo;
* recovery, published: the anonymized PNG stripped of its container and re-encoded as JPEG q90,
  then `recover` (in-pixel payload → identity rendered back); verified rate and FaceNet match;
* exact: the container restores A1 bit for bit;
* attributes: apparent gender kept and age error with wrn-imdbwiki (never used by the anonymizer)
  and dlib-cydral (the one it chooses dummies with: white-box), also where the two agree on the
  original's gender, and cheek ITA difference.
Thresholds: FAR 1e-3 from impostor pairs of distinct people's original photos in the same set.
Written to --out: metrics.json, rows.json (per pair, with wrn and dlib age, gender and P(male) before/after)
and faces.png (original | key A | key B per pair). Dummy seeds and (since session 46) payload salts
come from the file names, so two runs of the same code are the same to the bit and two runs of
different settings are paired exactly (`--random-salts`: salts from the OS, as in the product).

    python scripts/evaluate_default.py --data ../shared/data --pairs 150 --out runs/eval-default
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import random
import secrets
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from g2face.align import align_face, blend_faces, crop_source_width
from g2face.detection import YuNetDetector
from g2face.evaluation.attributes import compare_attributes
from g2face.evaluation.metrics import threshold_at_far
from g2face.evaluation.protocols import name_seed, read_lfw_pairs
from g2face.io import read_image
from g2face.nn.crops import crops_to_tensor, tensor_to_crops
from g2face.payload import Secret
from g2face.pipeline.g2face import G2FacePipeline
from g2face.priors.attributes import DlibAgeGenderEstimator, WideResNetAgeGenderEstimator
from g2face.priors.facenet import FaceNetEncoder
from g2face.priors.mediapipe_geometry import MediaPipeGeometry
from g2face.priors.sface import SFaceEncoder


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


DATASET_INDEX = {"lfw": "lfw/pairs.txt", "celeba": "celeba/identities.csv"}


def _genuine_pairs(data: Path, dataset: str):
    """(A1, A2) paths under `data` (two photos of one person, in the set's order), and path -> who
    is in the photo (LFW's folder name, CelebA's identity label)."""
    if dataset == "lfw":
        return read_lfw_pairs(data).genuine(), lambda path: Path(path).parent.name
    labels = {
        f"celeba/{row['file']}": row["identity"]
        for row in csv.DictReader((data / DATASET_INDEX[dataset]).open())
    }
    by_identity: dict[str, list[str]] = {}
    for path, identity in labels.items():
        by_identity.setdefault(identity, []).append(path)
    pairs = [(files[0], files[1]) for files in by_identity.values() if len(files) >= 2]
    return pairs, labels.__getitem__


KEY_A, KEY_B = Secret(b"A" * 32, "key"), Secret(b"B" * 32, "key")
"""The evaluation's two keys (the dummy seeds come from the file name and the key's letter)."""


def evaluation_pairs(data: Path, dataset: str, count: int):
    """The evaluation's genuine pairs: `count` spread evenly over the set, and path -> who is in
    the photo (also what the session studies in scripts/ run over, so their faces are these)."""
    genuine, person = _genuine_pairs(data, dataset)
    step = max(1, len(genuine) // count)
    return genuine[::step][:count], person


def first_photo_faces(data: Path, pairs, detector):
    """(index, path, image, main face) of each pair's first photo where the detector finds a face."""
    for n, pair in enumerate(pairs):
        image = read_image(data / pair[0]).rgb
        face = _main_face(detector, image)
        if face is not None:
            yield n, pair[0], image, face


@contextlib.contextmanager
def salts_from_name(name: str):
    """Within it, the payloads' salts (`secrets.token_bytes`) come from a generator seeded by `name`
    instead of the OS, so two runs of the same pairs embed the same bits and a paired difference
    is the settings', not the payload's (its random salt moved FaceNet's cosine of one render by
    ±0.016 between runs, session 46). For measurement only: a real salt must be unpredictable."""
    generator = random.Random(name_seed(name))
    token_bytes = secrets.token_bytes
    secrets.token_bytes = lambda count=32: generator.randbytes(count)
    try:
        yield
    finally:
        secrets.token_bytes = token_bytes


def anonymized_with_key_a(pipeline: G2FacePipeline, image: np.ndarray, face, path: str):
    """The photo anonymized with the evaluation's key A (`KEY_A`) and dummy seed."""
    return pipeline.anonymize(image, KEY_A, detections=[face], seeds=[name_seed(path + "/A")])


def add_face_set_arguments(parser: argparse.ArgumentParser, default_dataset: str = "lfw") -> None:
    """--data, --pairs, --dataset and --model: which faces, and which model anonymizes them."""
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--pairs", type=int, default=150, help="genuine pairs (spread over the set)")
    parser.add_argument(
        "--dataset",
        choices=sorted(DATASET_INDEX),
        default=default_dataset,
        help="lfw: the protocol's genuine pairs; celeba: the first two photos of each identity",
    )
    parser.add_argument("--model", default="g2face-lite")


def _short(estimator_name: str) -> str:
    """An estimator's name as rows.json and metrics.json key it: "wrn-imdbwiki" -> "wrn"."""
    return estimator_name.split("-")[0]


def _main_face(detector, image):
    faces = detector.detect(image)
    if not faces:
        return None
    h, w = image.shape[:2]
    return min(
        faces, key=lambda f: np.hypot((f.box[0] + f.box[2]) / 2 - w / 2, (f.box[1] + f.box[3]) / 2 - h / 2)
    )


def contact_sheet(rows: list[dict], tile: int = 112) -> Image.Image:
    """original | key A | key B per pair, in blocks of 10 rows side by side, to look at."""
    per_column = 10
    columns = max(1, -(-len(rows) // per_column))
    sheet = Image.new("RGB", (columns * (3 * tile + 8), per_column * tile), "white")
    for k, r in enumerate(rows):
        x0, y = (k // per_column) * (3 * tile + 8), (k % per_column) * tile
        for j, view in enumerate(("original", "anonymized", "anonymized_b")):
            sheet.paste(Image.fromarray(r["crops"][view]).resize((tile, tile)), (x0 + j * tile, y))
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_face_set_arguments(parser)
    parser.add_argument("--attributes", choices=["keep", "free"], default="keep")
    parser.add_argument(
        "--candidates",
        type=json.loads,
        default=None,
        help="CandidateSettings overrides as JSON, e.g. '{\"steer\": 0}' (an A/B run of one file)",
    )
    parser.add_argument(
        "--fusion",
        type=json.loads,
        default=None,
        help="FusionSettings overrides as JSON, e.g. '{\"warp_strength\": 0.25}'",
    )
    parser.add_argument(
        "--refine", type=int, default=0, help="also measure perfect-channel recovery refined N steps"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/eval-default"))
    parser.add_argument(
        "--random-salts",
        action="store_true",
        help="payload salts from the OS, as the product draws them (default: from the file name, "
        "so two runs are paired exactly)",
    )
    args = parser.parse_args()
    if not (args.data / DATASET_INDEX[args.dataset]).is_file():
        raise SystemExit(
            f"no {args.dataset} under {args.data}: pass --data pointing at the shared data folder"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    pairs, person = evaluation_pairs(args.data, args.dataset, args.pairs)

    def payload_salts(name: str):
        return contextlib.nullcontext() if args.random_salts else salts_from_name(name)

    torch.set_grad_enabled(False)
    detector = YuNetDetector()
    options: dict = (
        {"attributes": args.attributes}
        | ({"candidates": args.candidates} if args.candidates else {})
        | ({"fusion": args.fusion} if args.fusion else {})
    )
    pipeline = G2FacePipeline.from_pretrained(args.model, model_options=options)
    facenet, sface = FaceNetEncoder(), SFaceEncoder()
    size = 256
    rows = []
    started = time.perf_counter()
    for n, pair in enumerate(pairs):
        a1 = read_image(args.data / pair[0]).rgb
        a2 = read_image(args.data / pair[1]).rgb
        f1, f2 = _main_face(detector, a1), _main_face(detector, a2)
        if f1 is None or f2 is None:
            continue
        # Dummy seeds and payload salts from the file name and the key: reproducible, and paired
        # across A/B runs of different settings (`salts_from_name`, unless --random-salts).
        timed = time.perf_counter()
        with payload_salts(pair[0] + "/A"):
            anon = anonymized_with_key_a(pipeline, a1, f1, pair[0])
        anonymize_seconds = time.perf_counter() - timed
        # whether the search pushed the kept dummy away from the original (the push is remembered
        # by dummy seed for a video track's later frames; a measurement script may look)
        pushed = anon.faces[0].dummy_seed in getattr(pipeline.model, "_pushes", {})
        # and whether it came from the neutral round (CandidateSettings.neutral_round), remembered alike
        neutral = anon.faces[0].dummy_seed in getattr(pipeline.model, "_neutral_seeds", {})
        with payload_salts(pair[0] + "/B"):
            anon_b = pipeline.anonymize(a1, KEY_B, detections=[f1], seeds=[name_seed(pair[0] + "/B")])
        neutral_b = anon_b.faces[0].dummy_seed in getattr(pipeline.model, "_neutral_seeds", {})
        exact = pipeline.recover(anon.image, KEY_A, container=anon.container)
        published = _jpeg(anon.image, 90)
        back = pipeline.recover(published, KEY_A)
        crops = {
            "original": align_face(a1, f1, size).crop,
            "other": align_face(a2, f2, size).crop,
            "anonymized": align_face(anon.image, f1, size).crop,
            "anonymized_b": align_face(anon_b.image, f1, size).crop,
        }
        # Perfect channel: the true identity rendered back into the anonymized photo.
        x = crops_to_tensor([crops["anonymized"]])
        truth = sface(crops_to_tensor([crops["original"]]))
        width = [crop_source_width(f1, size)]  # the recovery judges its refinement at this width
        rendered, masks = pipeline.model.render_identities(x, truth, 0, width)
        aligned = align_face(anon.image, f1, size)
        perfect, _ = blend_faces(anon.image, list(tensor_to_crops(rendered)), [aligned], list(masks))
        crops["recovered_perfect"] = align_face(perfect, f1, size).crop
        if args.refine:
            refined, masks = pipeline.model.render_identities(x, truth, args.refine, width)
            refined_image, _ = blend_faces(anon.image, list(tensor_to_crops(refined)), [aligned], list(masks))
            crops["recovered_refined"] = align_face(refined_image, f1, size).crop
        verified = bool(back.faces) and any(f.verified for f in back.faces)
        crops["recovered_q90"] = align_face(back.image, f1, size).crop if verified else crops["anonymized"]
        batch = crops_to_tensor(list(crops.values()))
        emb_f = dict(zip(crops, facenet(batch).numpy(), strict=True))
        emb_s = dict(zip(crops, sface(batch).numpy(), strict=True))
        rows.append(
            {
                "pair": list(pair),
                "facenet": {k: float(emb_f[k] @ emb_f["other"]) for k in crops if k != "other"},
                "facenet_keys": float(emb_f["anonymized"] @ emb_f["anonymized_b"]),
                "sface": {k: float(emb_s[k] @ emb_s["other"]) for k in crops if k != "other"},
                "exact": bool(np.array_equal(exact.image, a1)),
                "verified_q90": verified,
                # what the anonymizer itself saw: its recognizer's cosine to the same photo, and
                # whether it replaced the whole face region (its anonymity fallback)
                "chosen_similarity": anon.faces[0].similarity,
                "whole_region": anon.faces[0].whole_region,
                # filtered, not faked: turned beyond what the generator renders
                "fallback": anon.faces[0].fallback_reason is not None,
                "pushed": pushed,
                "neutral": neutral,
                "neutral_b": neutral_b,
                "anonymize_seconds": anonymize_seconds,
                "emb_original_facenet": emb_f["original"].tolist(),
                "emb_original_sface": emb_s["original"].tolist(),
                "crops": {k: v for k, v in crops.items() if k in ("original", "anonymized", "anonymized_b")},
            }
        )
        print(f"{n + 1}/{len(pairs)} {time.perf_counter() - started:.0f}s", flush=True)

    # Thresholds at FAR 1e-3 from distinct people's originals (first photos of different pairs).
    names = [person(r["pair"][0]) for r in rows]
    results = {"pairs": len(rows)}
    for recognizer in ("facenet", "sface"):
        emb = np.array([r[f"emb_original_{recognizer}"] for r in rows])
        scores = emb @ emb.T
        iu = np.triu_indices(len(rows), 1)
        different = np.array([names[i] != names[j] for i, j in zip(*iu, strict=True)])
        threshold = threshold_at_far(scores[iu][different], 1e-3)
        results[f"{recognizer}_threshold"] = threshold
        views = ["original", "anonymized", "recovered_perfect", "recovered_q90"]
        for view in views + (["recovered_refined"] if args.refine else []):
            results[f"{recognizer}_tar_{view}"] = float(
                np.mean([r[recognizer][view] >= threshold for r in rows])
            )
        if recognizer == "facenet":
            results["facenet_two_keys_match"] = float(np.mean([r["facenet_keys"] >= threshold for r in rows]))
    results["exact_container"] = float(np.mean([r["exact"] for r in rows]))
    results["verified_after_strip_jpeg90"] = float(np.mean([r["verified_q90"] for r in rows]))
    results["pushed"] = int(sum(r["pushed"] for r in rows))
    results["neutral"] = int(sum(r["neutral"] for r in rows))
    results["neutral_b"] = int(sum(r["neutral_b"] for r in rows))
    results["anonymize_seconds_mean"] = float(np.mean([r["anonymize_seconds"] for r in rows]))
    pushed_seconds = [r["anonymize_seconds"] for r in rows if r["pushed"]]
    results["anonymize_seconds_mean_pushed"] = float(np.mean(pushed_seconds)) if pushed_seconds else None
    results["facenet_mean_cosine_anonymized"] = float(np.mean([r["facenet"]["anonymized"] for r in rows]))
    originals = crops_to_tensor([r["crops"]["original"] for r in rows])
    anonymized = crops_to_tensor([r["crops"]["anonymized"] for r in rows])
    comparison = compare_attributes(
        originals, anonymized, [WideResNetAgeGenderEstimator(), DlibAgeGenderEstimator()], MediaPipeGeometry()
    )
    results["attributes"] = comparison.summary()
    results["seconds"] = time.perf_counter() - started
    for name, (before, after) in comparison.estimates.items():
        for k, r in enumerate(rows):
            # Per face, to see where attributes are lost (wrn never chooses dummies).
            r[_short(name)] = {
                "age": [round(float(before.age[k]), 1), round(float(after.age[k]), 1)],
                "male": [bool(before.male[k]), bool(after.male[k])],
                # the probabilities too: most losses are originals read near 0.5 (session 29)
                "male_probability": [
                    round(float(before.male_probability[k]), 3),
                    round(float(after.male_probability[k]), 3),
                ],
            }
    if comparison.ita_difference is not None:
        for r, difference in zip(rows, comparison.ita_difference, strict=True):
            # per face, for paired comparisons of skin-tone changes (None: no skin tone read)
            r["ita_difference"] = None if np.isnan(difference) else float(difference)
    if comparison.face_ita_difference is not None:
        for r, difference in zip(rows, comparison.face_ita_difference, strict=True):
            r["face_ita_difference"] = None if np.isnan(difference) else float(difference)
    agree, kept = comparison.gender_kept_where_estimators_agree()
    results["attributes"]["originals_gender_estimators_agree"] = agree
    for name, value in kept.items():
        results["attributes"][f"gender_kept_where_estimators_agree/{_short(name)}"] = value
    # A turned face is blurred (the turned-face fallback), and a blur has no gender of its own
    # (each estimator reads it by habit): gender kept over the faces given a fake, apart from them.
    rendered = np.array([not r["fallback"] for r in rows])
    results["attributes"]["faces_filtered_turned"] = int((~rendered).sum())
    for name, value in comparison.gender_kept_among(rendered).items():
        results["attributes"][f"gender_kept_rendered/{_short(name)}"] = value
    for name, (share, value) in comparison.gender_kept_where_clear().items():
        # an original an estimator reads near 0.5 is a coin flip to it whatever the fake shows
        results["attributes"][f"originals_gender_clear/{_short(name)}"] = share
        results["attributes"][f"gender_kept_where_clear/{_short(name)}"] = value
    contact_sheet(rows).save(args.out / "faces.png")
    for r in rows:
        del r["crops"], r["emb_original_facenet"], r["emb_original_sface"]
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
    (args.out / "metrics.json").write_text(json.dumps(results, indent=2, default=float))
    print(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
