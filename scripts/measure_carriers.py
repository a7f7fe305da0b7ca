"""Both recovery carriers of the shipped default, measured through the real `G2FacePipeline` on
whole photos (figures in docs/pixel-payload.md and docs/container-format.md).

Stage 1, `anonymize` (slow: the default model, ~2-8 s per face on a CPU): every photo is anonymized
by `G2FacePipeline.from_pretrained("g2face-lite")` with both carriers on; the pipeline's in-pixel
carrier is wrapped so that what it was asked to embed (the composed image before the payload, the
face's detection, its paste footprint and the frame bits) is kept beside the output, the container
and the original. One `.npz` per photo in `--cache`, so later stages rerun in seconds and a
carrier change can be measured on the very images the pipeline produced.

Stage 2, `measure`: per photo and face width (the cached pre-payload image rescaled so that the
face is W px wide; W = 0 keeps the photo as it is), the payload embedded by the carrier under test,
the image attacked (metadata stripped: bare pixels, Pillow), the face re-detected by YuNet and read
with `read_payload`: verified rate per attack and width, plus why each failure failed.

    PYTHONPATH=src python scripts/measure_carriers.py anonymize --lfw 100 --cache runs/carrier_cache
    PYTHONPATH=src python scripts/measure_carriers.py measure --widths 0,48,64,96,128,256 --out runs/w.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
LFW = ROOT.parent / "shared" / "data" / "lfw" / "lfw-deepfunneled"


def photo_paths(n_lfw: int) -> list[Path]:
    """The committed fixtures, then `n_lfw` LFW photos evenly spaced over the sorted list (as
    scripts/measure_container.py picks them)."""
    paths = sorted(p for p in FIXTURES.iterdir() if p.suffix in (".jpg", ".png"))
    if n_lfw and LFW.is_dir():
        every = sorted(LFW.rglob("*.jpg"))
        paths += [every[i] for i in np.linspace(0, len(every) - 1, n_lfw).round().astype(int)]
    return paths


class RecordingCarrier:
    """Passes `embed` through to the pipeline's carrier and keeps its inputs."""

    def __init__(self, carrier):
        self.carrier, self.calls = carrier, []

    def embed(self, image, detection, allowed, bits):
        self.calls.append((image.copy(), detection, allowed.copy(), np.asarray(bits).copy()))
        return self.carrier.embed(image, detection, allowed, bits)


def anonymize(args) -> None:
    import torch

    from g2face.payload import Secret
    from g2face.pipeline.g2face import G2FacePipeline

    torch.set_grad_enabled(False)
    args.cache.mkdir(parents=True, exist_ok=True)
    pipe = G2FacePipeline.from_pretrained("g2face-lite")
    recorder = RecordingCarrier(pipe.pixel_carrier)
    pipe.pixel_carrier = recorder
    secret = Secret(bytes(range(32)), "key")
    started = time.perf_counter()
    for n, path in enumerate(photo_paths(args.lfw)):
        target = args.cache / f"{path.stem}.npz"
        if target.exists():
            continue
        original = np.asarray(Image.open(path).convert("RGB"))
        faces = pipe.detector.detect(original)
        if not faces:
            print(f"{path.name}: no face", flush=True)
            continue
        recorder.calls.clear()
        anon = pipe.anonymize(original, secret, search=not args.no_search)
        fields = {
            "original": original,
            "output": anon.image,
            "container": np.frombuffer(anon.container or b"", np.uint8),
            "n_faces": np.array(len(anon.faces)),
        }
        for i, face in enumerate(anon.faces):
            fields[f"face{i}.box"] = np.array(face.detection.box)
            fields[f"face{i}.points"] = np.array(face.detection.points)
            fields[f"face{i}.score"] = np.array(face.detection.score)
            fields[f"face{i}.footprint"] = np.array([face.footprint.x0, face.footprint.y0])
            fields[f"face{i}.footprint_mask"] = face.footprint.mask
            fields[f"face{i}.pixel_payload"] = np.array(face.pixel_payload)
        for i, (image, detection, allowed, bits) in enumerate(recorder.calls):
            fields[f"embed{i}.image"] = image
            fields[f"embed{i}.box"] = np.array(detection.box)
            fields[f"embed{i}.points"] = np.array(detection.points)
            fields[f"embed{i}.score"] = np.array(detection.score)
            fields[f"embed{i}.allowed"] = allowed
            fields[f"embed{i}.bits"] = bits
        fields["n_embeds"] = np.array(len(recorder.calls))
        tmp = target.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **fields)
        tmp.rename(target)
        print(
            f"{n + 1} {path.name}: {len(anon.faces)} faces {time.perf_counter() - started:.0f}s", flush=True
        )


def load_embeds(path: Path):
    """(pre-payload image, detection, allowed mask, frame bits) of every face the pipeline embedded."""
    from g2face.types import FaceDetection

    z = np.load(path)
    out = []
    for i in range(int(z["n_embeds"])):
        detection = FaceDetection(
            tuple(z[f"embed{i}.box"].tolist()),
            tuple(map(tuple, z[f"embed{i}.points"].tolist())),
            float(z[f"embed{i}.score"]),
        )
        out.append((z[f"embed{i}.image"], detection, z[f"embed{i}.allowed"], z[f"embed{i}.bits"]))
    return out


def rescaled(image, detection, allowed, width: float, detector):
    """The photo rescaled so that the face is `width` px wide, the face detected again there (what
    the pipeline would have embedded with) and the allowed mask rescaled; None if not detected."""
    import cv2

    from g2face.detection.base import iou

    factor = width / detection.width
    size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LANCZOS4
    image = cv2.resize(image, size, interpolation=interpolation)
    allowed = cv2.resize(allowed.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    expected = tuple(v * factor for v in detection.box)
    found = [d for d in detector.detect(image) if iou(d.box, expected) >= 0.5]
    if not found:
        return None
    return image, max(found, key=lambda d: iou(d.box, expected)), allowed


def read_face_payload(attacked, detection, to_attacked, detector, codec, secret, carrier, bits) -> dict:
    """Read the face after an attack as the pipeline does, and when that fails, say why: the face
    not re-detected; re-detected but its landmarks moved too far (the embedding detection, moved
    by the attack, reads); or the carried bits too damaged (bit error rate at the true anchor)."""
    from g2face.detection.base import iou
    from g2face.evaluation.faces import transform_box
    from g2face.payload.carriers.pixel import face_anchor, read_payload
    from g2face.types import FaceDetection

    expected = transform_box(detection.box, to_attacked)
    found = [d for d in detector.detect(attacked) if iou(d.box, expected) >= 0.3]
    if not found:
        return {"outcome": "not re-detected"}
    redetected = max(found, key=lambda d: iou(d.box, expected))
    moved = np.hstack([np.array(detection.points), np.ones((5, 1))]) @ to_attacked.T
    truth = FaceDetection(expected, tuple(map(tuple, moved)), detection.score)
    drift = face_anchor(np.array(redetected.points))[0] - face_anchor(moved)[0]
    row = {"anchor_drift_px": [round(float(v), 1) for v in drift]}
    decoded = read_payload(attacked, redetected, codec, secret, carrier)
    if decoded is not None:
        row["outcome"] = "verified" if decoded.verified else "unverified"
        return row
    if read_payload(attacked, truth, codec, secret, carrier) is not None:
        row["outcome"] = "detection drift"
        return row
    scale = float(np.sqrt(abs(np.linalg.det(to_attacked[:, :2]))))
    candidate = next(carrier.read(attacked, truth, scales=(scale,), max_shift=0))
    carried = candidate.logits != 0
    errors = (candidate.logits[carried] > 0) != (bits[carried] == 1)
    row["outcome"] = "bit errors"
    row["bit_error_rate"] = round(float(errors.mean()), 4)
    return row


def measure(args) -> None:
    import json

    from g2face.detection import YuNetDetector
    from g2face.evaluation.carriers import ATTACKS
    from g2face.payload import PayloadCodec, Secret
    from g2face.payload.carriers.pixel import DctQimCarrier, FaceTooSmallError

    detector = YuNetDetector()
    codec = PayloadCodec()
    secret = Secret(bytes(range(32)), "key")
    carrier = DctQimCarrier(codec.n_bits, min_coverage=args.min_coverage)
    rows = []
    files = sorted(args.cache.glob("*.npz"))[: args.limit]
    started = time.perf_counter()
    for n, path in enumerate(files):
        for face_index, (image, detection, allowed, bits) in enumerate(load_embeds(path)):
            for width in args.widths:
                row = {"image": path.stem, "face": face_index, "width": width}
                rows.append(row)
                if width:
                    found = rescaled(image, detection, allowed, width, detector)
                    if found is None:
                        row["status"] = "not detected before embedding"
                        continue
                    image_w, detection_w, allowed_w = found
                else:
                    image_w, detection_w, allowed_w = image, detection, allowed
                row["face_width"] = round(detection_w.width, 1)
                capacity = carrier.capacity(image_w.shape, detection_w, allowed_w)
                row["coverage"], row["copies"] = round(capacity.coverage, 3), round(capacity.copies, 2)
                try:
                    carrying = carrier.embed(image_w, detection_w, allowed_w, bits)
                except FaceTooSmallError:
                    row["status"] = "too small"
                    continue
                row["status"] = "embedded"
                for attack in args.attacks:
                    attacked, to_attacked = ATTACKS[attack](carrying)
                    row[attack] = read_face_payload(
                        attacked, detection_w, to_attacked, detector, codec, secret, carrier, bits
                    )
        print(f"{n + 1}/{len(files)} {time.perf_counter() - started:.0f}s", flush=True)
    summary = {}
    for width in args.widths:
        sub = [r for r in rows if r["width"] == width]
        summary[str(width)] = {"faces": len(sub), "embedded": sum(r["status"] == "embedded" for r in sub)}
        for attack in args.attacks:
            outcomes = [r.get(attack, {"outcome": r["status"]})["outcome"] for r in sub]
            summary[str(width)][attack] = {
                "verified": sum(o == "verified" for o in outcomes) / max(1, len(sub)),
                "outcomes": {o: outcomes.count(o) for o in sorted(set(outcomes))},
            }
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="stage", required=True)
    a = sub.add_parser("anonymize")
    a.add_argument("--lfw", type=int, default=100)
    a.add_argument("--cache", type=Path, default=Path("runs/carrier_cache"))
    a.add_argument(
        "--no-search",
        action="store_true",
        help="render each face's first keyed dummy instead of choosing among candidates (4-8x faster; "
        "the carriers do not depend on which dummy was chosen)",
    )
    m = sub.add_parser("measure")
    m.add_argument("--cache", type=Path, default=Path("runs/carrier_cache"))
    m.add_argument("--limit", type=int)
    m.add_argument("--widths", type=lambda s: [float(v) for v in s.split(",")], default=[0.0])
    m.add_argument("--attacks", type=lambda s: s.split(","), default=["strip_jpeg90"])
    m.add_argument("--min-coverage", type=float, default=0.7)
    m.add_argument("--out", type=Path)
    args = parser.parse_args()
    {"anonymize": anonymize, "measure": measure}[args.stage](args)


if __name__ == "__main__":
    main()
