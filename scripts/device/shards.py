"""Split a g2face weights file into shards small enough to travel, and merge them back.

The device tool returns files of at most 16 MiB each, and a lite model is ~40 MB in fp16:

    python scripts/device/shards.py split RUN/model.safetensors $OUT --dtype float16
    python scripts/device/shards.py merge /work/.device/.../model-*.safetensors model.safetensors

Each shard keeps the file's metadata (format, network configuration) and adds `shard` = "i/n", so a
merge refuses an incomplete or mixed set.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

MiB = 1024 * 1024


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as f:
        return dict(f.metadata() or {})


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    tmp = path.with_name(f".{path.name}.part")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def split(source: Path, folder: Path, max_mib: float = 15.0, dtype: str | None = None) -> list[Path]:
    metadata = _metadata(source)
    tensors = load_file(str(source))
    if dtype is not None:
        cast = getattr(torch, dtype)
        tensors = {k: v.to(cast) if v.is_floating_point() else v for k, v in tensors.items()}
    groups: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key in sorted(tensors):
        nbytes = tensors[key].numel() * tensors[key].element_size()
        if groups[-1] and size + nbytes > max_mib * MiB:
            groups.append({})
            size = 0
        groups[-1][key] = tensors[key].contiguous()
        size += nbytes
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, group in enumerate(groups, 1):
        path = folder / f"{source.stem}-{i:05d}-of-{len(groups):05d}.safetensors"
        _atomic_save(group, path, {**metadata, "shard": f"{i}/{len(groups)}"})
        paths.append(path)
    return paths


def merge(shards: list[Path], target: Path) -> Path:
    metadata = [_metadata(p) for p in shards]
    counts = {m.get("shard", "").partition("/")[2] for m in metadata}
    indices = sorted(int(m.get("shard", "0/0").partition("/")[0]) for m in metadata)
    if len(counts) != 1 or indices != list(range(1, int(counts.pop() or 0) + 1)):
        raise SystemExit(f"incomplete or mixed shard set: {[m.get('shard') for m in metadata]}")
    common = {k: v for k, v in metadata[0].items() if k != "shard"}
    if any({k: v for k, v in m.items() if k != "shard"} != common for m in metadata):
        raise SystemExit("shards come from different files (their metadata differ)")
    tensors: dict[str, torch.Tensor] = {}
    for path in shards:
        tensors.update(load_file(str(path)))
    _atomic_save(tensors, target, common)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("split")
    s.add_argument("source", type=Path)
    s.add_argument("folder", type=Path)
    s.add_argument("--max-mib", type=float, default=15.0)
    s.add_argument("--dtype", choices=["float16", "bfloat16", "float32"])
    m = sub.add_parser("merge")
    m.add_argument("shards", type=Path, nargs="+")
    m.add_argument("target", type=Path)
    args = parser.parse_args()
    if args.command == "split":
        for path in split(args.source, args.folder, args.max_mib, args.dtype):
            print(f"{path} {path.stat().st_size / MiB:.1f} MiB")
    else:
        print(merge(args.shards, args.target))


if __name__ == "__main__":
    main()
