"""The colour step across a fake's visible edge, with `FusionSettings.match_seam` off and on
(issue 19; docs/measurements.md, session 37).

Every face of the photos is anonymized by the shipped default (its keyed search, as a user runs
it); the first candidate the search fuses for each face is fused again with the seam matching off
and on, from the same render, and each composite's step is read where it shows: `EdgeMismatch`
(`models.fusion.edge_mismatch`) along the edge of `FusedFace.shown`, where the original's skin
meets the fake's skin, the mean |step of L*| (CIE). Writes seams.json (per face and summary) and
seams.png (original | off | on for the faces with the largest step without).

    PYTHONPATH=src python scripts/measure_seams.py --data ../shared/data --faces 20 --wild --out runs/seams

`--faces` photos from LFW (each person's first, seeded order) and as many from CelebA, and with
`--wild` the wild photos.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import torch
from face_samples import first_photos
from PIL import Image
from tqdm import tqdm

import g2face.models.fusion_anonymizer as fusion_anonymizer
from g2face.io import read_image
from g2face.models.fusion import edge_mismatch, face_width, fuse_face, skin_coloured, skin_mask
from g2face.payload import Secret
from g2face.pipeline.g2face import CarrierSettings, G2FacePipeline


def step_of(original: np.ndarray, points: np.ndarray, fused) -> float | None:
    """Mean |step of L*| across the edge `fused.shown` draws (None: no skin meets skin there)."""
    fake_skin = skin_coloured(fused.crop, skin_mask(points, fused.crop))
    original_skin = skin_coloured(original, skin_mask(points, original))
    return edge_mismatch(
        fused.crop, original, fused.shown, fake_skin, original_skin, face_width(points)
    ).contrast()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--faces", type=int, default=20, help="photos per dataset")
    parser.add_argument("--wild", action="store_true", help="the wild photos too")
    parser.add_argument("--sheet-faces", type=int, default=12)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    files = first_photos(args.data, args.faces)
    if args.wild:
        files += sorted((args.data / "wild" / "photos").glob("*"))
    pipeline = G2FacePipeline.from_pretrained(
        "g2face-lite", carriers=CarrierSettings(container=False, pixel_payload=False)
    )
    rows, tiles, current = [], [], {}

    def recording_fuse_face(original, points, render, render_points, settings, *rest, **options):
        key = original[::16, ::16].tobytes()  # one reading per face: its first candidate
        if key not in current["seen"]:
            current["seen"].add(key)
            both = {
                on: fuse_face(
                    original,
                    points,
                    render,
                    render_points,
                    dataclasses.replace(settings, match_seam=on),
                    *rest,
                    **options,
                )
                for on in (False, True)
            }
            steps = {on: step_of(original, points[:, :2], fused) for on, fused in both.items()}
            rows.append({"file": current["file"], "off": steps[False], "on": steps[True]})
            tiles.append((steps[False] or 0.0, [original, both[False].preview, both[True].preview]))
        return fuse_face(original, points, render, render_points, settings, *rest, **options)

    fusion_anonymizer.fuse_face = recording_fuse_face
    secret = Secret(bytes(32), "key")
    for path in tqdm(files, desc="photos", unit="photo"):
        current.update(file=f"{path.parent.name}/{path.name}", seen=set())
        pipeline.anonymize(read_image(path).rgb, secret)
    read = np.array([(r["off"], r["on"]) for r in rows if r["off"] is not None and r["on"] is not None])
    summary = {
        "faces": len(rows),
        "read": len(read),
        "off": {"mean": round(float(read[:, 0].mean()), 2), "median": round(float(np.median(read[:, 0])), 2)},
        "on": {"mean": round(float(read[:, 1].mean()), 2), "median": round(float(np.median(read[:, 1])), 2)},
        "larger_with_matching": int((read[:, 1] > read[:, 0] + 0.5).sum()),
    }
    print(json.dumps(summary, indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seams.json").write_text(json.dumps({"summary": summary, "faces": rows}, indent=1))
    worst = [crops for _, crops in sorted(tiles, key=lambda t: -t[0])[: args.sheet_faces]]
    if worst:
        strips = [np.concatenate([cv2.resize(c, (192, 192)) for c in crops], 1) for crops in worst]
        Image.fromarray(np.concatenate(strips, 0)).save(args.out / "seams.png")


if __name__ == "__main__":
    main()
