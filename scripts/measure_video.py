"""Measure video anonymization on a clip (docs/video.md): tracked (one seed per track, smoothing,
fail-closed) against per-frame processing (independent seeds).

    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/measure_video.py ../shared/data/wild/videos/d0.mp4 \
        --out runs/video_d0.json

Both runs leave out the in-pixel payload (the video default, docs/video.md; `--pixel-payload` adds
each track's one payload to the tracked run) and the photo container: the comparison is tracking
+ one chosen dummy per track against an independent per-frame candidate search.

Metrics, over the original frames' YuNet detections (score ≥ 0.7):
* unanonymized: detected original faces whose 5 landmarks are not all inside an anonymized or
  fail-closed region (target 0);
* identity consistency: FaceNet-CASIA cosine between consecutive anonymized faces of a track;
* leak: FaceNet cosine between each anonymized face and the same frame's original face; the leak
  rate is the fraction of face-frames at or above `--leak-threshold` (FaceNet's FAR-1e-3
  threshold, scripts/facenet_far_threshold.py); also the rate of those at or above the highest
  cosine between that original and another person's face in the same frame (two faces in one
  frame are two people: where FaceNet finds them that alike, e.g. dark, defocused audience faces,
  a cosine that high says nothing about who it is);
* flicker: mean |frame t − frame t−1| inside the face box, anonymized over original;
* `--sheet`: the leaking face-frames (original | anonymized) as a picture;
* throughput: seconds per frame and per face-frame of `VideoAnonymizer.process`.
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
from g2face.io.video import probe_video, read_frames
from g2face.nn.crops import crops_to_tensor
from g2face.payload import Secret
from g2face.pipeline.g2face import CarrierSettings, G2FacePipeline
from g2face.priors.facenet import FaceNetEncoder
from g2face.video import DummyPolicy, VideoAnonymizer
from g2face.video.tracking import iou


def _stats(values: list[float]) -> dict:
    a = np.asarray(values, float)
    if a.size == 0:
        return {"n": 0}
    return {"n": int(a.size), "mean": round(float(a.mean()), 4), "min": round(float(a.min()), 4)}


def save_leak_sheet(leaking: list[tuple[str, np.ndarray, np.ndarray]], path: Path, per_row: int = 4) -> None:
    """original | anonymized pairs of the leaking face-frames, labelled 'frame/track cosine method'."""
    from PIL import Image, ImageDraw

    tile, label = 128, 14
    rows = max(1, -(-len(leaking) // per_row))
    sheet = Image.new("RGB", (per_row * (2 * tile + 6), rows * (tile + label)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (text, original, anonymized) in enumerate(leaking):
        x, y = (k % per_row) * (2 * tile + 6), (k // per_row) * (tile + label)
        sheet.paste(Image.fromarray(original), (x, y + label))
        sheet.paste(Image.fromarray(anonymized), (x + tile, y + label))
        draw.text((x + 2, y + 1), text, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("clip", type=Path)
    parser.add_argument("--model", default="g2face-lite")
    parser.add_argument("--method", default="g2face")
    parser.add_argument("--limit", type=int)
    # FaceNet at FAR 1e-3: README's (780 LFW impostor pairs: their maximum) and
    # scripts/facenet_far_threshold.py's (79,800 pairs)
    parser.add_argument("--leak-threshold", type=float, nargs="+", default=[0.535, 0.573])
    parser.add_argument(
        "--cross-gap",
        type=int,
        default=25,
        help="Cross-frame leak: each tracked fake against its person's original at least this many "
        "frames earlier (another view of them), with the originals' own match there as the control.",
    )
    parser.add_argument(
        "--per-frame-limit", type=int, help="Run the per-frame baseline on the first N frames only (slow)."
    )
    parser.add_argument(
        "--max-re-searches", type=int, default=DummyPolicy.max_re_searches, help="0: the dummy never changes."
    )
    parser.add_argument("--re-search-after", type=int, default=DummyPolicy.re_search_after)
    parser.add_argument("--min-face", type=float, default=DummyPolicy.min_face)
    parser.add_argument("--small-faces", default=DummyPolicy.small_faces)
    parser.add_argument("--track-candidates", type=int, default=DummyPolicy.track_candidates)
    parser.add_argument(
        "--clip-salt",
        type=bytes.fromhex,
        help="The clip salt as hex (16 bytes): fixes the tracks' dummies, so runs compare like for like.",
    )
    parser.add_argument(
        "--fusion",
        type=json.loads,
        default=None,
        help="FusionSettings overrides as JSON, e.g. '{\"render_only\": false}' (whole mesh region).",
    )
    parser.add_argument(
        "--candidates",
        type=json.loads,
        default=None,
        help="CandidateSettings overrides as JSON, e.g. '{\"count\": 4}' (a wider search per track).",
    )
    parser.add_argument(
        "--pixel-payload",
        action="store_true",
        help="Tracked run only: each track carries its one in-pixel payload (per frame: none).",
    )
    parser.add_argument(
        "--no-smooth-geometry",
        action="store_true",
        help="DummyPolicy.smooth_geometry off: each frame rendered at its own expression and pose.",
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--sheet",
        type=Path,
        help="Save the tracked run's leaking face-frames (original | anonymized, aligned) as a PNG.",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    secret = Secret(bytes(range(32)), "key")
    carriers = CarrierSettings(container=False, pixel_payload=False)
    options = {k: v for k, v in (("fusion", args.fusion), ("candidates", args.candidates)) if v} or None
    pipe = G2FacePipeline.from_pretrained(
        args.model, method=args.method, carriers=carriers, model_options=options
    )
    facenet = FaceNetEncoder().eval()
    detector = YuNetDetector()
    info = probe_video(args.clip)
    dummies = DummyPolicy(
        re_search_after=args.re_search_after,
        max_re_searches=args.max_re_searches,
        min_face=args.min_face,
        small_faces=args.small_faces,
        track_candidates=args.track_candidates,
        smooth_geometry=not args.no_smooth_geometry,
    )
    tracked = VideoAnonymizer(
        pipe,
        secret,
        rate=float(info.rate or 25),
        dummies=dummies,
        clip_salt=args.clip_salt,
        pixel_payload=args.pixel_payload,
    )
    per_frame_pipe = G2FacePipeline.from_pretrained(
        args.model, method=args.method, carriers=carriers, model_options=options
    )

    geometry = getattr(pipe.model, "geometry", None)  # (a classic filter has no geometry prior)

    def embed(image: np.ndarray, detections) -> tuple[torch.Tensor, torch.Tensor | None]:
        """FaceNet embeddings of the image's faces at `detections`, and their blendshapes (None
        without a geometry prior), from one aligned crop each."""
        crops = crops_to_tensor([align_face(image, d, 256).crop for d in detections])
        with torch.inference_mode():
            return facenet(crops), None if geometry is None else geometry(crops).expression

    rows = {
        name: {
            "consistency": [],
            "leak": [],
            "distinct": [],
            "flicker": [],
            "expression": [],
            "unanonymized": 0,
        }
        for name in ("tracked", "per_frame")
    }
    original_flicker: list[tuple[int, float]] = []  # (frame, mean |step|) per original face
    previous: dict[str, dict] = {"tracked": {}, "per_frame": {}, "original": {}}
    timing = {"tracked_s": 0.0, "per_frame_s": 0.0, "face_frames": 0, "frames": 0, "per_frame_frames": 0}
    fail_closed = 0
    # tracked: frame, track, SFace cos (anonymizer's), FaceNet cos to original, face width (px), method,
    # the highest FaceNet cos between this original and another original face of the same frame
    per_face: list[list] = []
    seen_originals: dict = {}  # track -> [(frame, FaceNet embedding of its original face)]
    cross: dict[str, list[float]] = {"leak": [], "genuine": []}
    leaking: list[tuple[str, np.ndarray, np.ndarray]] = []  # (label, original crop, anonymized crop)
    re_searches: list[dict] = []
    for frame in read_frames(args.clip, limit=args.limit):
        rgb = frame.rgb
        start = time.perf_counter()
        result = tracked.process(rgb, frame.index)
        timing["tracked_s"] += time.perf_counter() - start
        fail_closed += len(result.fail_closed)
        re_searches += result.re_searches
        timing["face_frames"] += sum(f["state"] != "lost" for f in result.faces)
        timing["frames"] += 1
        runs = [("tracked", result.image, result.covered)]
        if args.per_frame_limit is None or frame.index < args.per_frame_limit:
            start = time.perf_counter()
            independent = per_frame_pipe.anonymize(rgb, secret)
            timing["per_frame_s"] += time.perf_counter() - start
            timing["per_frame_frames"] += 1
            per_frame_covered = np.zeros(rgb.shape[:2], bool)
            for face in independent.faces:
                x0, y0, x1, y1 = face.footprint.box
                per_frame_covered[y0:y1, x0:x1] |= face.footprint.mask
            runs.append(("per_frame", independent.image, per_frame_covered))
        originals = detector.detect(rgb)
        if not originals:
            continue
        keys = []
        for d in originals:
            best = max(result.faces, key=lambda f: iou(f["box"], d.box), default=None)
            keys.append(
                best["track"] if best and iou(best["box"], d.box) > 0.3 else f"untracked{frame.index}"
            )
        e_orig, x_orig = embed(rgb, originals)

        # Two faces seen in one frame are two people: how alike FaceNet finds them there is what
        # a match means in this frame (dark, blurred audience faces of different people score
        # 0.6-0.9, above the LFW threshold).
        between = (e_orig @ e_orig.T).numpy()
        np.fill_diagonal(between, -1.0)
        impostor = between.max(1) if len(originals) > 1 else np.full(1, -1.0)
        for name, image, covered in runs:
            e_anon, x_anon = embed(image, originals)
            for i, (d, key) in enumerate(zip(originals, keys, strict=True)):
                face = next((f for f in result.faces if f["track"] == key), {}) if name == "tracked" else {}
                pts = np.clip(np.round(d.points).astype(int), 0, [rgb.shape[1] - 1, rgb.shape[0] - 1])
                if not covered[pts[:, 1], pts[:, 0]].all():
                    rows[name]["unanonymized"] += 1
                rows[name]["leak"].append(float(e_anon[i] @ e_orig[i]))
                rows[name]["distinct"].append(float(impostor[i]))
                if x_anon is not None and (name != "tracked" or face.get("method") == "g2face"):
                    # blendshape L1 between the fake and the original frame's face (rendered faces only)
                    rows[name]["expression"].append(float((x_anon[i] - x_orig[i]).abs().mean()))
                if name == "tracked" and not str(key).startswith("untracked"):
                    # the same person on an earlier frame (at least --cross-gap back): FaceNet's match
                    # to another view of them, and, as its control, the original's own match there
                    earlier = [e for f, e in seen_originals.get(key, []) if f <= frame.index - args.cross_gap]
                    if earlier:
                        cross["leak"].append(float(e_anon[i] @ earlier[-1]))
                        cross["genuine"].append(float(e_orig[i] @ earlier[-1]))
                if name == "tracked":
                    leak = round(rows[name]["leak"][-1], 4)
                    width, method = round(d.width, 1), face.get("method")
                    per_face.append(
                        [
                            frame.index,
                            key,
                            face.get("similarity"),
                            leak,
                            width,
                            method,
                            round(float(impostor[i]), 4),
                        ]
                    )
                    if args.sheet and leak >= max(args.leak_threshold):
                        label = f"{frame.index}/{key} {leak:.2f} {method}"
                        leaking.append((label, align_face(rgb, d, 128).crop, align_face(image, d, 128).crop))
                x0, y0, x1, y1 = (int(max(0, v)) for v in d.box)
                crop = image[y0:y1, x0:x1].astype(np.float32)
                last = previous[name].get(key)
                if last is not None and last["frame"] == frame.index - 1:
                    rows[name]["consistency"].append(float(e_anon[i] @ last["embedding"]))
                    rows[name]["flicker"].append(float(np.abs(crop - last["image"][y0:y1, x0:x1]).mean()))
                previous[name][key] = {"frame": frame.index, "embedding": e_anon[i], "image": image}
            for i, (d, key) in enumerate(zip(originals, keys, strict=True)):
                if name == "tracked":
                    seen_originals.setdefault(key, []).append((frame.index, e_orig[i]))
                    x0, y0, x1, y1 = (int(max(0, v)) for v in d.box)
                    last = previous["original"].get(key)
                    if last is not None and last["frame"] == frame.index - 1:
                        step = np.abs(rgb[y0:y1, x0:x1].astype(np.float32) - last["image"][y0:y1, x0:x1])
                        original_flicker.append((frame.index, float(step.mean())))
                    previous["original"][key] = {"frame": frame.index, "image": rgb}
    summary = {
        "clip": str(args.clip),
        "model": args.model,
        "leak_thresholds": args.leak_threshold,
        "method": args.method,
        "frames": timing["frames"],
        "per_frame_frames": timing["per_frame_frames"],
        "face_frames": timing["face_frames"],
        "tracks": len(tracked.tracker.all_tracks()),
        "fail_closed_events": fail_closed,
        "dummies": vars(dummies) | {"similarity_bound": tracked.similarity_bound},
        "clip_salt": tracked.clip_salt.hex(),
        "re_searches": re_searches,
        "original_flicker": _stats([v for _, v in original_flicker]),
        "throughput": {
            "tracked_s_per_frame": round(timing["tracked_s"] / max(1, timing["frames"]), 3),
            "tracked_s_per_face_frame": round(timing["tracked_s"] / max(1, timing["face_frames"]), 3),
            "per_frame_s_per_frame": round(timing["per_frame_s"] / max(1, timing["per_frame_frames"]), 3),
        },
    }
    for name, r in rows.items():
        last_frame = timing["frames"] if name == "tracked" else timing["per_frame_frames"]
        reference = [v for f, v in original_flicker if f < last_frame]  # the frames this run covers
        summary[name] = {
            "unanonymized_faces": r["unanonymized"],
            "consistency_facenet_cos": _stats(r["consistency"]),
            "leak_facenet_cos": _stats(r["leak"]) | {"max": round(max(r["leak"]), 4) if r["leak"] else None},
            "leak_rate": {
                f"{t:g}": round(float(np.mean(np.asarray(r["leak"]) >= t)), 4) if r["leak"] else None
                for t in args.leak_threshold
            },
            # a leak also above every other person's face in that frame (where FaceNet can tell them apart)
            "leak_rate_above_same_frame_impostors": {
                f"{t:g}": round(float(np.mean(np.asarray(r["leak"]) >= np.maximum(t, r["distinct"]))), 4)
                if r["leak"]
                else None
                for t in args.leak_threshold
            },
            "flicker": _stats(r["flicker"]),
            "expression_l1": _stats(r["expression"]),
            "original_flicker": _stats(reference),
            "flicker_ratio": round(np.mean(r["flicker"]) / max(1e-6, np.mean(reference)), 3)
            if r["flicker"] and reference
            else None,
        }
    summary["tracked"]["cross_frame"] = {
        "gap": args.cross_gap,
        "pairs": len(cross["leak"]),
        "leak_rate": {
            f"{t:g}": round(float(np.mean(np.asarray(cross["leak"]) >= t)), 4) if cross["leak"] else None
            for t in args.leak_threshold
        },
        "genuine_match_rate": {
            f"{t:g}": round(float(np.mean(np.asarray(cross["genuine"]) >= t)), 4)
            if cross["genuine"]
            else None
            for t in args.leak_threshold
        },
    }
    summary["tracked_faces"] = per_face
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if args.sheet:
        save_leak_sheet(leaking, args.sheet)


if __name__ == "__main__":
    main()
