"""The photos and frames the face studies look at (scripts/study_profile_cue.py,
scripts/study_face_presence.py): a seeded sample of LFW and CelebA stills, optionally the wild
photos, and frames of the wild clips (hamilton's first 60 all, the clip the video figures use; the
other clips every 10th); and for the fusion A/B measurements (scripts/measure_eye_tone.py,
scripts/measure_chroma_range.py) one photo per LFW person and CelebA photos, seeded, with a
pipeline per fusion variant."""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
from PIL import Image
from tqdm import tqdm


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


def first_photos(data: Path, count: int, seed: int = 11) -> list[Path]:
    """`count` LFW photos (the first of each person, people in seeded order) and `count` CelebA
    photos (seeded order) under `data` (the shared data folder)."""
    people = sorted((data / "lfw" / "lfw-deepfunneled").iterdir())
    random.Random(seed).shuffle(people)
    celeba = sorted((data / "celeba" / "images").glob("*.jpg"))
    random.Random(seed).shuffle(celeba)
    return [sorted(d.glob("*.jpg"))[0] for d in people[:count]] + celeba[:count]


def fusion_variant_pipelines(variants: dict[str, dict]):
    """One `G2FacePipeline` of the shipped default per named `FusionSettings` override, without
    recovery carriers (an A/B of the fusion alone)."""
    from g2face.pipeline.g2face import CarrierSettings, G2FacePipeline

    carriers = CarrierSettings(container=False, pixel_payload=False)
    return {
        key: G2FacePipeline.from_pretrained(
            "g2face-lite", carriers=carriers, model_options={"fusion": fusion}
        )
        for key, fusion in variants.items()
    }


def fusion_variant_fakes(pipelines: dict, files: list[Path]) -> Iterator[tuple[Path, np.ndarray, dict]]:
    """Per photo of `files` with a face: (path, the largest face's 256-px aligned crop, each
    variant's fake of it aligned the same way), every variant rendering the same keyed dummy
    (seed 7000 + the photo's index) without the search, so only the fusion differs. A face any
    variant hands to the turned-face fallback is skipped. `pipelines` as `fusion_variant_pipelines`."""
    from g2face.align import align_face
    from g2face.io import read_image
    from g2face.payload import Secret

    secret = Secret(bytes(32), "key")
    detector = next(iter(pipelines.values())).detector
    for i, path in enumerate(tqdm(files, desc="faces", unit="photo")):
        image = read_image(path).rgb
        found = detector.detect(image)
        if not found:
            continue
        face = max(found, key=lambda d: d.width)
        fakes = {}
        for key, pipeline in pipelines.items():
            done = pipeline.anonymize(image, secret, detections=[face], seeds=[7000 + i], search=False)
            if done.faces[0].fallback_reason:
                break
            fakes[key] = align_face(done.image, face, 256).crop
        else:
            yield path, align_face(image, face, 256).crop, fakes
