"""How much of a clip the in-pixel payload recovers after lossy coding (docs/video.md, "In-pixel
payload"): anonymize with the payload and without the sidecar, encode at `--crf`, then recover
from the pixels alone.

    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/measure_video_payload.py \\
        ../shared/data/wild/videos/d0.mp4 --crf 18 --out runs/payload_d0_18.json

Prints the recovery counts of `recover_video` (face-frames rendered back, and of those how many
from their own payload and how many from their track's) with both passes' wall-clock times.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from g2face.io.video import EncoderSettings
from g2face.payload import Secret
from g2face.pipeline.g2face import G2FacePipeline
from g2face.video import anonymize_video, recover_video


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("clip", type=Path)
    parser.add_argument("--model", default="g2face-lite")
    parser.add_argument("--method", default="g2face")
    parser.add_argument("--crf", type=int, default=18)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    secret = Secret(bytes(range(32)), "key")
    pipeline = G2FacePipeline.from_pretrained(args.model, method=args.method)
    with tempfile.TemporaryDirectory() as folder:
        anonymized, recovered = Path(folder) / "anon.mp4", Path(folder) / "back.mp4"
        start = time.perf_counter()
        report = anonymize_video(
            pipeline,
            args.clip,
            anonymized,
            secret,
            sidecar=False,
            pixel_payload=True,
            encoder=EncoderSettings(crf=args.crf),
            progress=False,
        )
        anonymize_s = time.perf_counter() - start
        start = time.perf_counter()
        back = recover_video(pipeline, anonymized, recovered, secret, progress=False, allow_unverified=True)
        recover_s = time.perf_counter() - start
    result = {
        "clip": str(args.clip),
        "crf": args.crf,
        "frames": report.frames,
        "face_frames": report.face_frames,
        "tracks": len(report.tracks),
        "recovery": back.recovery,
        "anonymize_s": round(anonymize_s, 1),
        "recover_s": round(recover_s, 1),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
