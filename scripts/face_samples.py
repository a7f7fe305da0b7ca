"""The photos and frames the face studies look at (scripts/study_profile_cue.py,
scripts/study_face_presence.py): a seeded sample of LFW and CelebA stills, optionally the wild
photos, and frames of the wild clips (hamilton's first 60 all, the clip the video figures use; the
other clips every 10th)."""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
from PIL import Image


def sample_images(
    data: Path, stills: int, frames: int, *, wild_photos: bool = False, seed: int = 0
) -> Iterator[tuple[np.ndarray, str]]:
    """(RGB uint8 image, "set:file" or "clip:frame") for `stills` photos of each still set and the
    first `frames` frames of each clip under `data` (the shared data folder)."""
    rng = random.Random(seed)
    lfw = sorted((data / "lfw" / "lfw-deepfunneled").glob("*/*.jpg"))
    celeba = sorted((data / "celeba" / "images").glob("*"))
    sets = [
        ("lfw", rng.sample(lfw, min(stills, len(lfw)))),
        ("celeba", rng.sample(celeba, min(stills, len(celeba)))),
    ]
    if wild_photos:
        sets.append(("wild", sorted((data / "wild" / "photos").glob("*"))))
    for name, files in sets:
        for path in files:
            yield np.asarray(Image.open(path).convert("RGB")), f"{name}:{path.name}"
    for clip in sorted((data / "wild" / "videos").glob("*.mp4")):
        with av.open(str(clip)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index >= frames:
                    break
                if index % 10 == 0 or ("hamilton" in clip.name and index < 60):
                    yield frame.to_ndarray(format="rgb24"), f"{clip.stem}:{index}"


def add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    """--data, --stills and --frames, as `sample_images` takes them."""
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--stills", type=int, default=300, help="photos per still set (LFW, CelebA)")
    parser.add_argument("--frames", type=int, default=300, help="first frames of each clip (every 10th)")
