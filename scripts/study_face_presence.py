"""Is every detection a face? The face mesh's presence score on what YuNet finds (issue 13: on
hamilton a raised hand was detected and given a fake face).

The MediaPipe face mesh (the geometry prior) also outputs a face-presence logit for its crop; the
anonymizer ignored it. For every face YuNet finds in a sample of stills (LFW, CelebA, the wild
photos) and video frames, records that logit with the detector's score, the face's width in
pixels, its brightness (mean luma of the crop's middle) and the geometry prior's yaw, prints the
percentiles per source and the detections below `--show` logit, and saves the lowest-scoring crops
as a picture (`--sheet`) to see what they are.

    PYTHONPATH=src python scripts/study_face_presence.py --data ../shared/data --out runs/presence.json \\
        --sheet runs/presence.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from face_samples import add_sample_arguments, sample_images
from PIL import Image, ImageDraw

from g2face.align import align_face
from g2face.nn.crops import crops_to_tensor
from g2face.pipeline.g2face import G2FacePipeline

TILE = 96


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_sample_arguments(parser)
    parser.add_argument("--show", type=float, default=0.0, help="list detections below this logit")
    parser.add_argument("--lowest", type=int, default=32, help="crops in the sheet")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--sheet", type=Path, default=None)
    args = parser.parse_args()
    pipeline = G2FacePipeline.from_pretrained("g2face-lite")
    model = pipeline.model
    rows: list[dict] = []
    crops_kept: list[np.ndarray] = []

    def faces(rgb: np.ndarray, source: str) -> None:
        detections = pipeline.detector.detect(rgb)
        if not detections:
            return
        aligned = [align_face(rgb, d, model.image_size).crop for d in detections]
        crops = crops_to_tensor(aligned)
        with torch.inference_mode():
            _, presence = model.geometry.face.landmarks(crops)
            yaws = model.geometry(crops).pose[:, 0].tolist()
        s = model.image_size
        for d, crop, logit, yaw in zip(detections, aligned, presence.tolist(), yaws, strict=True):
            middle = crop[s // 4 : 3 * s // 4, s // 4 : 3 * s // 4].astype(np.float32)
            rows.append(
                {
                    "source": source,
                    "presence": round(float(logit), 2),
                    "score": round(float(d.score), 3),
                    "width": round(d.width),
                    "luma": round(float((middle @ np.array([0.299, 0.587, 0.114])).mean()), 1),
                    "yaw": round(float(yaw), 1),
                }
            )
            crops_kept.append(np.asarray(Image.fromarray(crop).resize((TILE, TILE))))

    for rgb, source in sample_images(args.data, args.stills, args.frames, wild_photos=True):
        faces(rgb, source)

    presence = np.array([r["presence"] for r in rows])
    summary: dict = {"detections": len(rows), "sources": {}}
    for group in sorted({r["source"].split(":")[0] for r in rows}):
        inside = np.array([r["source"].split(":")[0] == group for r in rows])
        summary["sources"][group] = {
            "detections": int(inside.sum()),
            "presence_min_p1_p5_median": [
                round(float(np.percentile(presence[inside], q)), 2) for q in (0, 1, 5, 50)
            ],
            "below_0": int((presence[inside] < 0).sum()),
        }
    summary["below_show"] = sorted(
        (r for r in rows if r["presence"] < args.show), key=lambda r: r["presence"]
    )
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"summary": summary, "rows": rows}))
    if args.sheet:
        order = np.argsort(presence)[: args.lowest]
        per_row = 8
        sheet = Image.new("RGB", (per_row * TILE, -(-len(order) // per_row) * (TILE + 12)), "white")
        draw = ImageDraw.Draw(sheet)
        for k, i in enumerate(order):
            x, y = (k % per_row) * TILE, (k // per_row) * (TILE + 12)
            sheet.paste(Image.fromarray(crops_kept[i]), (x, y + 12))
            draw.text((x + 1, y), f"{rows[i]['presence']:.1f} {rows[i]['source'][-14:]}", fill="black")
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(args.sheet)


if __name__ == "__main__":
    main()
