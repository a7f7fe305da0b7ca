"""The README picture: each committed public-domain photo as original | blur | g2face-lite with two
different keys | recovered (exact, from the container), cropped around the face.

    python scripts/make_readme_figure.py --out docs/images/g2face_lite_fixtures.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from g2face.io import read_image
from g2face.models.classic import ClassicAnonymizer
from g2face.payload import Secret
from g2face.pipeline.g2face import G2FacePipeline

FIXTURES = ("grace_hopper.jpg", "obama.jpg", "biden.jpg", "astronaut.png")
COLUMNS = ("original", "blur", "g2face-lite, key A", "g2face-lite, key B", "recovered (key A)")


def _face_window(image: np.ndarray, box, side: int) -> np.ndarray:
    """A square around the face (2× its box), resized to `side`."""
    x0, y0, x1, y1 = box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)
    h, w = image.shape[:2]
    left, top = int(max(0, cx - half)), int(max(0, cy - half))
    right, bottom = int(min(w, cx + half)), int(min(h, cy + half))
    return np.asarray(Image.fromarray(image[top:bottom, left:right]).resize((side, side), Image.LANCZOS))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fixtures", type=Path, default=Path("tests/fixtures"))
    parser.add_argument("--out", type=Path, default=Path("docs/images/g2face_lite_fixtures.jpg"))
    parser.add_argument("--model", default="g2face-lite")
    parser.add_argument("--side", type=int, default=256)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    lite = G2FacePipeline.from_pretrained(args.model)
    blur = G2FacePipeline(ClassicAnonymizer("blur", lite.model), lite.detector)
    key_a, key_b = Secret(b"A" * 32, "key"), Secret(b"B" * 32, "key")
    rows = []
    for name in FIXTURES:
        photo = read_image(args.fixtures / name).rgb
        faces = lite.detector.detect(photo)
        main_face = max(faces, key=lambda f: f.width * f.height)
        anon_a = lite.anonymize(photo, key_a, detections=faces)
        anon_b = lite.anonymize(photo, key_b, detections=faces)
        blurred = blur.anonymize(photo, key_a, detections=faces)
        back = lite.recover(anon_a.image, key_a, container=anon_a.container)
        views = [photo, blurred.image, anon_a.image, anon_b.image, back.image]
        rows.append(np.concatenate([_face_window(v, main_face.box, args.side) for v in views], 1))
        print(name, [round(f.similarity or 0, 3) for f in anon_a.faces], flush=True)
    header = Image.new("RGB", (rows[0].shape[1], 28), "white")
    draw = ImageDraw.Draw(header)
    for i, title in enumerate(COLUMNS):
        draw.text((i * args.side + 8, 8), title, fill="black")
    grid = np.concatenate([np.asarray(header), *rows], 0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(args.out, quality=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
