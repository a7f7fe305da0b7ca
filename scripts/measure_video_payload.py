"""How much of a clip the in-pixel payload recovers after lossy coding, and how like the person the
recovered faces are (docs/video.md, "One payload per track"): anonymize with the payload and
without the sidecar, encode at `--crf`, then recover from the pixels alone with each `--refine`.

    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/measure_video_payload.py \\
        ../shared/data/wild/videos/d0.mp4 --crf 18 --refine 0 10 --out runs/payload_d0_18.json

Prints, per refine setting, the recovery counts of `recover_video` (face-frames rendered back, and
of those how many from their own payload and how many from their track's) and FaceNet-CASIA's
cosine between each recovered face and the same original frame's (over the original's YuNet
detections; the share at or above `--threshold`, FaceNet's FAR-1e-3 point), with the anonymized
clip's as the reference; and both passes' wall-clock times.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from g2face.align import align_face
from g2face.detection import YuNetDetector
from g2face.io.video import EncoderSettings, read_frames
from g2face.nn.crops import crops_to_tensor
from g2face.payload import Secret
from g2face.pipeline.g2face import G2FacePipeline
from g2face.priors.facenet import FaceNetEncoder
from g2face.video import anonymize_video, recover_video


def facenet_cosines(original: Path, others: list[Path]) -> list[list[float]]:
    """Per clip in `others`, FaceNet cosine of its face to the original frame's largest face."""
    facenet, detector = FaceNetEncoder().eval(), YuNetDetector()
    cosines: list[list[float]] = [[] for _ in others]
    with torch.inference_mode():
        for frames in zip(read_frames(original), *[read_frames(o) for o in others], strict=True):
            faces = detector.detect(frames[0].rgb)
            if not faces:
                continue
            face = max(faces, key=lambda d: d.width)
            embeddings = facenet(crops_to_tensor([align_face(f.rgb, face, 256).crop for f in frames]))
            for row, value in zip(cosines, (embeddings[1:] @ embeddings[0]).tolist(), strict=True):
                row.append(value)
    return cosines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("clip", type=Path)
    parser.add_argument("--model", default="g2face-lite")
    parser.add_argument("--method", default="g2face")
    parser.add_argument("--crf", type=int, default=18)
    parser.add_argument("--refine", type=int, nargs="+", default=[0])
    parser.add_argument("--threshold", type=float, default=0.573)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    secret = Secret(bytes(range(32)), "key")
    pipeline = G2FacePipeline.from_pretrained(args.model, method=args.method)
    encoder = EncoderSettings(crf=args.crf)
    result: dict = {"clip": str(args.clip), "crf": args.crf}
    with tempfile.TemporaryDirectory() as folder:
        anonymized = Path(folder) / "anon.mp4"
        start = time.perf_counter()
        report = anonymize_video(
            pipeline,
            args.clip,
            anonymized,
            secret,
            sidecar=False,
            pixel_payload=True,
            encoder=encoder,
            progress=False,
        )
        result |= {"frames": report.frames, "face_frames": report.face_frames, "tracks": len(report.tracks)}
        result["anonymize_s"] = round(time.perf_counter() - start, 1)
        recovered = []
        for steps in args.refine:
            target = Path(folder) / f"back_{steps}.mp4"
            start = time.perf_counter()
            back = recover_video(
                pipeline,
                anonymized,
                target,
                secret,
                encoder=encoder,
                progress=False,
                refine=steps,
                allow_unverified=True,
            )
            result[f"refine_{steps}"] = {
                "recovery": back.recovery,
                "recover_s": round(time.perf_counter() - start, 1),
            }
            recovered.append(target)
        for name, cosines in zip(
            ["anonymized", *[f"refine_{s}" for s in args.refine]],
            facenet_cosines(args.clip, [anonymized, *recovered]),
            strict=True,
        ):
            values = np.asarray(cosines)
            result.setdefault(name, {})["facenet_to_original"] = {
                "n": int(values.size),
                "mean": round(float(values.mean()), 4) if values.size else None,
                f"share_at_{args.threshold}": round(float((values >= args.threshold).mean()), 4)
                if values.size
                else None,
            }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
