"""Byte-mutated images in every format g2face reads, through `g2face detect` and anonymization with
the tiny model: no traceback (an unexpected exception would show as "internal error" in the
report), and every input accounted for in the report, exactly once.

The mutants come from the committed fixtures, downscaled first so that each file is small and
quick. The default run takes a few hundred files; the slow one 10,000 through detection.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import FIXTURES
from g2face.cli.detect import detect
from g2face.io import expand_inputs
from g2face.payload import Secret

FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "GIF": ".gif", "BMP": ".bmp"}


def _seeds() -> list[tuple[str, bytes]]:
    """Valid small files to mutate: each format from two fixtures, plus variants whose metadata
    and extra channels give the mutations more to break (EXIF orientation, ICC profile, alpha)."""
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Camera"
    exif[0x8825] = {1: "N", 2: (1.0, 2.0, 3.0)}
    seeds = []
    for name in ("astronaut.png", "obama.jpg"):
        image = Image.open(FIXTURES / name).convert("RGB")
        image.thumbnail((128, 128))
        for fmt, suffix in FORMATS.items():
            buffer = io.BytesIO()
            options = {"exif": exif} if fmt in ("JPEG", "PNG", "WEBP") else {}
            options |= {"icc_profile": srgb} if fmt in ("JPEG", "PNG", "WEBP", "TIFF") else {}
            source = image.convert("RGBA") if fmt in ("PNG", "WEBP") and name == "obama.jpg" else image
            source.save(buffer, fmt, **options)
            seeds.append((suffix, buffer.getvalue()))
    return seeds


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    kind = int(rng.integers(0, 5))
    if kind == 0:  # a few flipped bytes anywhere
        for i in rng.integers(0, len(out), int(rng.integers(1, 9))):
            out[i] = int(rng.integers(0, 256))
    elif kind == 1:  # damage in the headers and metadata, where parsers branch
        for i in rng.integers(0, min(len(out), 600), int(rng.integers(1, 5))):
            out[i] = int(rng.integers(0, 256))
    elif kind == 2:  # truncated
        out = out[: int(rng.integers(0, len(out)))]
    elif kind == 3:  # a slice repeated or removed
        a, b = sorted(int(x) for x in rng.integers(0, len(out), 2))
        out = out[:b] + out[a:b] + out[b:] if rng.random() < 0.5 else out[:a] + out[b:]
    else:  # random bytes inserted
        at = int(rng.integers(0, len(out)))
        out = out[:at] + rng.bytes(int(rng.integers(1, 64))) + out[at:]
    return bytes(out)


def make_mutants(folder: Path, count: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng, seeds, paths = np.random.default_rng(seed), _seeds(), []
    for i in range(count):
        suffix, data = seeds[i % len(seeds)]
        path = folder / f"m{i:05d}{suffix}"
        path.write_bytes(_mutate(data, rng))
        paths.append(path)
    return paths


def check_detect(folder: Path, paths: list[Path], out: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # damaged metadata warns, by design
        result = CliRunner().invoke(
            detect, [str(folder), "--json", str(out / "faces.json"), "--draw", str(out / "drawn")]
        )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and "internal error" not in result.output
    report = json.loads((out / "faces.json").read_text())
    accounted = [entry["path"] for entry in report["images"]] + [entry["input"] for entry in report["failed"]]
    assert sorted(accounted) == sorted(str(p) for p in paths)
    assert f"{len(paths)} inputs:" in result.stderr
    assert not list(out.rglob(".*.tmp"))


def check_anonymize(folder: Path, paths: list[Path], out: Path) -> None:
    from g2face.models.zoo import build_model, tiny_config
    from g2face.pipeline.g2face import G2FacePipeline, anonymize_files

    pipeline = G2FacePipeline(build_model(tiny_config()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = anonymize_files(pipeline, expand_inputs([folder]), out, Secret(bytes(range(32)), "key"))
    assert sorted(o.source for o in report.outcomes) == sorted(str(p) for p in paths)
    internal = [o.error for o in report.failed if "internal error" in o.error]
    assert not internal, internal[:3]
    for outcome in report.succeeded:
        assert outcome.result.output.is_file()
    assert not list(out.rglob(".*.tmp"))


def test_mutated_files_through_detect_and_anonymize(tmp_path):
    paths = make_mutants(tmp_path / "in", 300, seed=0)
    check_detect(tmp_path / "in", paths, tmp_path / "detect")
    # the model is the slow part (~0.5 s a face on a busy 2-core machine): three mutants of each
    # format through anonymization
    subset = make_mutants(tmp_path / "anon_in", 18, seed=1)
    check_anonymize(tmp_path / "anon_in", subset, tmp_path / "anon")


@pytest.mark.slow
def test_ten_thousand_mutated_files(tmp_path):
    paths = make_mutants(tmp_path / "in", 10_000, seed=2)
    check_detect(tmp_path / "in", paths, tmp_path / "detect")
    subset = make_mutants(tmp_path / "anon_in", 600, seed=3)
    check_anonymize(tmp_path / "anon_in", subset, tmp_path / "anon")
