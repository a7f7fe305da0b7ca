"""Where does the flicker of an anonymized track come from? (docs/video.md, "Flicker")

Runs one face track of a clip through the default model with a fixed dummy seed (search=False)
several times, each time freezing one more per-frame input to its first frame's value, and prints
the mean absolute frame-to-frame difference inside the face box for each variant against the
original's, plus the per-frame signals themselves:

* detections: raw YuNet per frame, or One-Euro smoothed by the tracker;
* pixel payload: the in-pixel identity payload (fresh random salt per call, so different bits and
  a different DCT pattern every frame), on or off;
* geometry: the expression + pose vector the renderer gets (MediaPipe on each frame's crop);
* colour: the Lab mean/std the rendered skin is matched to (the original's skin, per frame);
* render: mean |render_t − render_t−1| in crop pixels (texture re-synthesis), against the aligned
  original crops' own difference.

    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/diagnose_video_flicker.py \
        ../shared/data/wild/videos/d0.mp4 --limit 30

`--payload-survival K` instead checks whether the in-pixel payload of the first K anonymized
frames can still be read after H.264 (libx264, yuv420p, `--crf`, as `g2face video anonymize` writes).

Freezing is a diagnosis on a still clip, not a fix: a moving face needs its own geometry.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

import g2face.models.fusion as fusion_module
from g2face.detection import YuNetDetector
from g2face.io.video import read_frames
from g2face.payload import Secret
from g2face.pipeline.g2face import G2FacePipeline
from g2face.video.tracking import FaceTracker

SEED = 9165168282293681131


class Probe:
    """Wraps the default model's per-frame inputs: records them, optionally freezes them."""

    def __init__(self, model, freeze: set[str]):
        self.model, self.freeze = model, freeze
        self.geometry: list[np.ndarray] = []
        self.colour: list[np.ndarray] = []
        self.renders: list[np.ndarray] = []
        self.originals: list[np.ndarray] = []
        self._first_geometry = None
        self._first_colour = None
        self._geometry_vector = model.geometry_vector
        self._fuse_renders = model.fuse_renders
        self._transfer_colour = fusion_module.transfer_colour
        model.geometry_vector = self.geometry_vector
        model.fuse_renders = self.fuse_renders
        fusion_module.transfer_colour = self.transfer_colour

    def close(self) -> None:
        del self.model.geometry_vector, self.model.fuse_renders
        fusion_module.transfer_colour = self._transfer_colour

    def geometry_vector(self, geometry):
        vector = self._geometry_vector(geometry)
        self.geometry.append(vector[0].cpu().numpy().copy())
        if self._first_geometry is None:
            self._first_geometry = vector.clone()
        return self._first_geometry.clone() if "geometry" in self.freeze else vector

    def fuse_renders(self, original, original_points, renders, settings=None, render_points=None, **kwargs):
        self.renders.append(((renders[0].permute(1, 2, 0).cpu().numpy() + 1) * 127.5).astype(np.float32))
        self.originals.append(original.astype(np.float32))
        return self._fuse_renders(original, original_points, renders, settings, render_points, **kwargs)

    def transfer_colour(self, render, original, render_skin, original_skin, region, width, settings):
        import cv2

        lab = cv2.cvtColor(original, cv2.COLOR_RGB2LAB).astype(np.float32)[original_skin]
        stats = np.concatenate([lab.mean(0), lab.std(0)])
        self.colour.append(stats)
        if "colour" in self.freeze:
            if self._first_colour is None:
                self._first_colour = (original.copy(), original_skin.copy())
            original, original_skin = self._first_colour
        return self._transfer_colour(render, original, render_skin, original_skin, region, width, settings)


def mean_step(values: list[np.ndarray]) -> float:
    if len(values) < 2:
        return float("nan")
    a = np.stack(values)
    return float(np.abs(np.diff(a, axis=0)).mean())


def payload_survival(clip: Path, model: str, secret: Secret, frames: int, crf: int) -> None:
    import tempfile

    import av

    from g2face.payload.carriers.pixel import read_payload

    pipe = G2FacePipeline.from_pretrained(model)
    detector = YuNetDetector()
    originals = [f.rgb for f in read_frames(clip, limit=frames)]
    faces = [max(detector.detect(f), key=lambda d: d.width) for f in originals]
    anonymized = [
        pipe.anonymize(f, secret, seeds=[SEED], detections=[d], search=False).image
        for f, d in zip(originals, faces, strict=True)
    ]

    def verified(images: list[np.ndarray]) -> int:
        found = [
            read_payload(im, d, pipe.model.codec, secret, pipe.pixel_carrier, search_resized=False)
            for im, d in zip(images, faces, strict=True)
        ]
        return sum(p is not None and p.verified for p in found)

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "payload.mp4"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=25, options={"crf": str(crf)})
            stream.height, stream.width = originals[0].shape[:2]
            stream.pix_fmt = "yuv420p"
            for i, image in enumerate(anonymized):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = i
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        decoded = [f.rgb for f in read_frames(path)]
        result = {
            "frames": frames,
            "verified_before": verified(anonymized),
            f"verified_crf{crf}": verified(decoded),
        }
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("clip", type=Path)
    parser.add_argument("--model", default="g2face-lite")
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--payload-survival", type=int, metavar="K")
    parser.add_argument("--crf", type=int, default=18)
    args = parser.parse_args()
    torch.set_num_threads(1)
    secret = Secret(bytes(range(32)), "key")
    if args.payload_survival:
        payload_survival(args.clip, args.model, secret, args.payload_survival, args.crf)
        return
    frames = [f.rgb for f in read_frames(args.clip, limit=args.limit)]
    detector = YuNetDetector()
    raw = [max(detector.detect(f), key=lambda d: d.width) for f in frames]
    tracker = FaceTracker(25.0)
    smoothed = [tracker.update([d], i).faces[0].detection for i, d in enumerate(raw)]
    boxes = [tuple(int(max(0, v)) for v in d.box) for d in raw]

    def box_flicker(images: list[np.ndarray]) -> float:
        steps = []
        for t in range(1, len(images)):
            x0, y0, x1, y1 = boxes[t]
            a = images[t][y0:y1, x0:x1].astype(np.float32)
            steps.append(float(np.abs(a - images[t - 1][y0:y1, x0:x1]).mean()))
        return float(np.mean(steps))

    original = box_flicker(frames)
    variants = [
        ("raw detections", raw, True, set()),
        ("smoothed detections", smoothed, True, set()),
        ("+ no pixel payload", smoothed, False, set()),
        ("+ frozen colour statistics", smoothed, False, {"colour"}),
        ("+ frozen geometry (expression, pose)", smoothed, False, {"colour", "geometry"}),
    ]
    base = G2FacePipeline.from_pretrained(args.model)
    rows = []
    for name, detections, payload, freeze in variants:
        pipe = G2FacePipeline(
            base.model, carriers=dataclasses.replace(base.carriers, pixel_payload=payload, container=False)
        )
        probe = Probe(pipe.model, freeze)
        try:
            out = [
                pipe.anonymize(f, secret, seeds=[SEED], detections=[d], search=False).image
                for f, d in zip(frames, detections, strict=True)
            ]
        finally:
            probe.close()
        row = {
            "variant": name,
            "flicker": round(box_flicker(out), 3),
            "ratio": round(box_flicker(out) / original, 2),
            "render_step_crop_px": round(mean_step(probe.renders), 3),
            "original_crop_step": round(mean_step(probe.originals), 3),
            "geometry_step": round(mean_step(probe.geometry), 4),
            "colour_step_lab": round(mean_step(probe.colour), 3),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        "clip": str(args.clip),
        "frames": len(frames),
        "original_flicker": round(original, 3),
        "rows": rows,
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
