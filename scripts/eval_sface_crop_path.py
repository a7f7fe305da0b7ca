"""LFW check: SFace on G2Face crops (fixed warp) verifies faces as well as OpenCV's own alignCrop.

Paths compared on the standard 6000-pair protocol (10 folds, threshold chosen on 9 folds, accuracy
on the 10th):
  opencv     photo -> YuNet 5 landmarks -> cv2.FaceRecognizerSF.alignCrop -> OpenCV SFace (folded fp32)
  torch      the same alignCrop crops -> our SFaceNet (network parity on real faces)
  crop-path  photo -> YuNet -> similarity to the FFHQ template -> 256 G2Face crop -> SFaceEncoder
             (fixed differentiable warp to the ArcFace 112 crop)

    python scripts/eval_sface_crop_path.py --lfw ../shared/data/lfw [--per-fold 60] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from g2face import hub
from g2face.align import estimate_similarity, template_points
from g2face.priors.sface import SFaceEncoder, sface_reference_onnx_path


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    same: bool
    fold: int


def read_pairs(lfw: Path, per_fold: int) -> list[Pair]:
    lines = (lfw / "pairs.txt").read_text().split("\n")
    n_folds, n = map(int, lines[0].split())
    image = lambda name, i: f"{name}/{name}_{int(i):04d}.jpg"  # noqa: E731
    pairs = []
    for k, line in enumerate(lines[1 : 1 + 2 * n * n_folds]):
        fold, within = divmod(k, 2 * n)
        if within % n >= per_fold:
            continue
        f = line.split()
        if len(f) == 3:
            pairs.append(Pair(image(f[0], f[1]), image(f[0], f[2]), True, fold))
        else:
            pairs.append(Pair(image(f[0], f[1]), image(f[2], f[3]), False, fold))
    return pairs


def ten_fold_accuracy(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> tuple[float, float]:
    """Mean and std of held-out accuracy, each fold's threshold fitted on the other folds."""
    accs = []
    for k in np.unique(folds):
        train, test = folds != k, folds == k
        candidates = np.unique(scores[train])
        train_acc = [((scores[train] >= t) == same[train]).mean() for t in candidates]
        t = candidates[int(np.argmax(train_acc))]
        accs.append(((scores[test] >= t) == same[test]).mean())
    return float(np.mean(accs)), float(np.std(accs))


def detect(detector: cv2.FaceDetectorYN, img: np.ndarray) -> np.ndarray | None:
    """The YuNet face nearest the image centre (LFW's labelled face), or None."""
    h, w = img.shape[:2]
    detector.setInputSize((w, h))
    _, faces = detector.detect(img)
    if faces is None:
        return None
    centres = faces[:, :2] + faces[:, 2:4] / 2
    return faces[int(np.argmin(np.linalg.norm(centres - [w / 2, h / 2], axis=1)))]


def to_tensor(bgr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1).float()


PATHS = ("opencv", "torch", "crop-path")


@torch.no_grad()
def embed_all(lfw: Path, names: list[str], paths: list[str], batch: int = 32) -> tuple[dict, dict]:
    """Embeddings {path: {image: unit vector}} and run info (misses, time per image per path)."""
    detector = cv2.FaceDetectorYN.create(str(hub.asset_path("yunet")), "", (250, 250), 0.5)
    recognizer = cv2.FaceRecognizerSF.create(str(sface_reference_onnx_path()), "")
    encoder = SFaceEncoder()
    on_batch = {  # (alignCrop crops 0..255, G2Face crops in [-1, 1]) -> embeddings
        "torch": lambda aligned, _: encoder.embed_aligned(aligned),
        "crop-path": lambda _, crops: encoder(crops),
    }
    template = template_points(256)
    emb: dict[str, list[np.ndarray]] = {k: [] for k in paths}
    seconds = dict.fromkeys(paths, 0.0)
    missed, fallback_face, aligned, g2face = [], None, [], []
    for i, name in enumerate(names):
        t = time.perf_counter()
        img = cv2.imread(str(lfw / "lfw-deepfunneled" / name))
        face = detect(detector, img)
        if face is None:  # deep-funneled LFW is centred: reuse the first detected face's geometry
            missed.append(name)
            face = fallback_face
        fallback_face = face if fallback_face is None else fallback_face
        crop = recognizer.alignCrop(img, face)
        if "opencv" in paths:
            emb["opencv"].append(recognizer.feature(crop).reshape(1, -1))
            seconds["opencv"] += time.perf_counter() - t  # includes YuNet
        matrix = estimate_similarity(face[4:14].reshape(5, 2), template)
        aligned.append(to_tensor(crop))
        g2face.append(to_tensor(cv2.warpAffine(img, matrix, (256, 256), flags=cv2.INTER_LINEAR)) / 127.5 - 1)
        if len(aligned) == batch or i == len(names) - 1:
            for key in set(paths) & set(on_batch):
                t = time.perf_counter()
                emb[key].append(on_batch[key](torch.stack(aligned), torch.stack(g2face)).numpy())
                seconds[key] += time.perf_counter() - t
            aligned.clear()
            g2face.clear()
        if (i + 1) % 500 == 0:
            print(f"  {i + 1}/{len(names)} images", flush=True)
    out = {}
    for key, chunks in emb.items():
        e = np.concatenate(chunks)
        out[key] = dict(zip(names, e / np.linalg.norm(e, axis=1, keepdims=True), strict=True))
    ms = {k: round(1000 * v / len(names), 1) for k, v in seconds.items()}
    return out, {"images": len(names), "no_face_detected": missed, "ms_per_image": ms}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lfw", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/lfw")
    parser.add_argument("--per-fold", type=int, default=300, help="pairs of each kind per fold (300 = all)")
    parser.add_argument("--paths", type=lambda v: v.split(","), default=list(PATHS), help="comma-separated")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)

    pairs = read_pairs(args.lfw, args.per_fold)
    names = sorted({p.a for p in pairs} | {p.b for p in pairs})
    print(f"{len(pairs)} pairs, {len(names)} images")
    emb, info = embed_all(args.lfw, names, args.paths)
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    results: dict = {"pairs": len(pairs), **info}
    scores = {}
    for key, e in emb.items():
        scores[key] = np.array([e[p.a] @ e[p.b] for p in pairs])
        mean, std = ten_fold_accuracy(scores[key], same, folds)
        results[key] = {"accuracy": mean, "accuracy_std": std}
        print(f"{key:15s} 10-fold accuracy {100 * mean:.2f} ± {100 * std:.2f} %")
    for key in set(emb) - {"opencv"}:
        cos = np.array([emb["opencv"][n] @ emb[key][n] for n in names])
        diff = 100 * (results[key]["accuracy"] - results["opencv"]["accuracy"])
        results[key] |= {"cosine_to_opencv": {"min": float(cos.min()), "mean": float(cos.mean())}}
        results[key] |= {"accuracy_minus_opencv_pp": diff}
        print(
            f"{key:15s} vs opencv: {diff:+.2f} pp, embedding cosine min {cos.min():.5f} mean {cos.mean():.5f}"
        )
    print(f"no face detected in {len(info['no_face_detected'])} images; ms/image {info['ms_per_image']}")
    if args.json:
        args.json.write_text(json.dumps({"pairs_per_fold_and_kind": args.per_fold, **results}, indent=1))


if __name__ == "__main__":
    main()
