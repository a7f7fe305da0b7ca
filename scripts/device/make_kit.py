"""Build the kit that a training run on a lent accelerator carries (the `device` tool, DESIGN §6).

The accelerator machine has PyTorch, ONNX, OpenCV and safetensors but no network, and each call may
carry at most 64 MiB (repository included). The converted priors alone are ~145 MB in fp32, so the
kit holds fp16 copies (the loaders cast to float32) split over two carries that two back-to-back
calls bring to the same warm machine:

    .device/a   wheels the machine lacks + MobileStyleGAN + LPIPS-HED          (~55 MiB)
    .device/b   SFace + MediaPipe geometry (fp32) + prepared training crops (JPEG q90)  (~57 MiB)

    python scripts/device/make_kit.py --data <folder from `g2face data prepare`> --faces 2000
    then, with the device tool:  see docs/training.md, "Training on a lent accelerator".

Needs the converted priors in this machine's cache (`g2face weights fetch --all` and one use, or
this script builds them). FaceNet is evaluation-only and never travels.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
from dataclasses import asdict, replace
from importlib.metadata import version
from pathlib import Path

import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from g2face.data.prepare import HEADER, MANIFEST, read_manifest
from g2face.hub import cache_dir
from g2face.hub.store import sha256_file
from g2face.priors import lpips_hed, mediapipe_geometry, mobilestylegan, sface

MiB = 1024 * 1024
CARRY_LIMIT_MIB = 64
HEADROOM_MIB = 0.5  # untracked files a session leaves beside the tracked ones
# Packages the accelerator's image lacks (its list: /work/.library/device/KINDS.md), for Python 3.12.
WHEELS = ("cryptography", "cffi", "pycparser", "reedsolo", "platformdirs")
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux_2_34_x86_64",
)


def _copy(source: Path, home: Path, half: bool = True) -> Path:
    """The converted file (floating tensors in fp16 if `half`) at the same place under `home` as
    under the cache, with the sha256 sidecar the hub checks before it trusts a converted file."""
    target = home / source.relative_to(cache_dir())
    target.parent.mkdir(parents=True, exist_ok=True)
    with safe_open(str(source), "pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(source))
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    save_file(tensors, str(target), metadata=metadata)
    digest = sha256_file(target)
    target.with_name(target.name + ".sha256").write_text(digest + "\n")
    return target


def _wheels(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    command += ["--python-version", "3.12", "--implementation", "cp", "-d", str(folder)]
    command += [f"--platform={p}" for p in PLATFORMS]
    command += [f"{name}=={version(name)}" for name in WHEELS]
    subprocess.run(command, check=True)


def _crops(dataset: Path, folder: Path, n: int, quality: int, seed: int) -> int:
    """A seeded sample of prepared crops, re-encoded as JPEG (the training faces of the run)."""
    records = read_manifest(dataset)
    picked = random.Random(seed).sample(records, min(n, len(records)))
    (folder / "crops").mkdir(parents=True, exist_ok=True)
    lines = []
    for record in picked:
        name = f"crops/{Path(record.crop).stem}.jpg"
        with Image.open(dataset / record.crop) as image:
            image.convert("RGB").save(folder / name, quality=quality)
        lines.append(json.dumps(asdict(replace(record, crop=name))))
    (folder / MANIFEST).write_text("\n".join(lines) + "\n")
    header = json.loads((dataset / HEADER).read_text())
    header["subset"] = f"{len(picked)} of {len(records)} crops, seed {seed}, JPEG quality {quality}"
    (folder / HEADER).write_text(json.dumps(header, indent=1) + "\n")
    return len(picked)


def _repository_mib() -> float:
    """What of the working tree travels with every call besides the carry: the tracked files
    (measured, not assumed: the committed weights and fixtures grow from session to session)."""
    listed = subprocess.run(["git", "ls-files", "-z"], check=True, capture_output=True).stdout
    paths = [Path(p) for p in listed.decode().split("\0") if p]
    return sum(_disk_bytes(p) for p in paths if p.is_file()) / MiB + HEADROOM_MIB


def _disk_bytes(path: Path) -> int:
    """Space on disk (whole blocks), which is what the device tool counts against its limit: a
    carry of ~2,000 small JPEGs measured 51.6 MiB by length and was refused as over 64 MiB with
    the repository."""
    return max(path.stat().st_blocks * 512, path.stat().st_size)


def _size_mib(folder: Path) -> float:
    return sum(_disk_bytes(p) for p in folder.rglob("*") if p.is_file()) / MiB


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, help="prepared dataset folder (default: generator faces only)")
    parser.add_argument("--faces", type=int, default=2000, help="crops to carry")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of the carried crops")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(".device"))
    args = parser.parse_args()

    shutil.rmtree(args.out, ignore_errors=True)
    a, b = args.out / "a", args.out / "b"
    _wheels(a / "wheels")
    for locate in (mobilestylegan.weights_path, lpips_hed.lpips_hed_weights_path):
        _copy(locate(), a / "home")
    _copy(sface.sface_weights_path(), b / "home")
    # Small, and it holds the canonical mesh and shape basis next to the weights: kept in float32.
    _copy(mediapipe_geometry.converted_weights_path(), b / "home", half=False)
    budget = CARRY_LIMIT_MIB - _repository_mib()
    if args.data is not None:
        room = budget - _size_mib(b)
        n = _crops(args.data, b / "data", args.faces, args.quality, args.seed)
        carried = _size_mib(b / "data")
        if carried > room:  # fewer crops, so that the carry fits
            shutil.rmtree(b / "data")
            n = _crops(args.data, b / "data", int(n * room / carried * 0.97), args.quality, args.seed)
        print(f"{n} training crops in {b / 'data'}")
    for part in (a, b):
        size = _size_mib(part)
        print(f"{part}: {size:.1f} MiB{'  (over the carry limit!)' if size > budget else ''}")
    print(f"torch here: {torch.__version__}; the kit's fp16 priors load into float32 modules")


if __name__ == "__main__":
    main()
