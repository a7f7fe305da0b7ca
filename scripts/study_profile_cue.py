"""Does the detector see a profile that the geometry prior reads as half-turned? (issue 13, hamilton)

For every face YuNet finds in a sample of stills (LFW, CelebA) and video frames, compares the
geometry prior's yaw (what `FusionSettings.max_yaw` judges) with the detector's five-point cue
`align.seen_in_profile` (eyes nearly on top of each other, nose beside both), per yaw bin: how
often the cue fires, and the eye span over the box width. Faces flagged below `max_yaw` are listed:
they are the ones the cue turns from a fake into the turned-face fallback.

    PYTHONPATH=src python scripts/study_profile_cue.py --data ../shared/data --out runs/profile_cue.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from face_samples import add_sample_arguments, sample_images

from g2face.align import align_face, seen_in_profile
from g2face.nn.crops import crops_to_tensor
from g2face.pipeline.g2face import G2FacePipeline

YAW_BINS = ((0, 10), (10, 20), (20, 30), (30, 40), (40, 60), (60, 90))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_sample_arguments(parser)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    pipeline = G2FacePipeline.from_pretrained("g2face-lite")
    model = pipeline.model
    rows: list[dict] = []

    def faces(rgb: np.ndarray, source: str) -> None:
        detections = pipeline.detector.detect(rgb)
        if not detections:
            return
        crops = crops_to_tensor([align_face(rgb, d, model.image_size).crop for d in detections])
        with torch.inference_mode():
            yaws = model.geometry(crops).pose[:, 0].tolist()
        for d, yaw in zip(detections, yaws, strict=True):
            eyes = np.sort(d.points[:2, 0])
            rows.append(
                {
                    "source": source,
                    "yaw": round(float(yaw), 1),
                    "eye_span": round(float(eyes[1] - eyes[0]) / d.width, 3),
                    "profile": bool(seen_in_profile(d)),
                    "width": round(d.width),
                }
            )

    for rgb, source in sample_images(args.data, args.stills, args.frames, wild_photos=False):
        faces(rgb, source)

    yaw = np.abs([r["yaw"] for r in rows])
    span = np.array([r["eye_span"] for r in rows])
    flagged = np.array([r["profile"] for r in rows])
    summary = {"faces": len(rows), "bins": []}
    for lo, hi in YAW_BINS:
        inside = (yaw >= lo) & (yaw < hi)
        if inside.any():
            summary["bins"].append(
                {
                    "yaw": f"{lo}-{hi}",
                    "faces": int(inside.sum()),
                    "flagged": int(flagged[inside].sum()),
                    "eye_span_p5_median_p95": [
                        round(float(np.percentile(span[inside], q)), 3) for q in (5, 50, 95)
                    ],
                }
            )
    summary["flagged_under_40"] = [r for r in rows if r["profile"] and abs(r["yaw"]) < 40]
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"summary": summary, "rows": rows}))


if __name__ == "__main__":
    main()
