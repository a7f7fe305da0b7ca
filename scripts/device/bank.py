"""A large GIE bank rendered on a lent accelerator, brought back small (DESIGN §6, issue 11).

The bank stage (MobileStyleGAN samples, each recorded as w, SFace identity, MediaPipe geometry)
costs ~0.4 s per sample on this 2-core CPU, so the shipped GIE was fitted on 1,088 samples and its
held-out loss was still falling with bank size. An H200 renders hundreds of samples per second, but
only 64 MiB may come back from a call. So the device returns only what needs the generator's image
(identity and geometry, fp16: 446 bytes a sample) and each batch's seed; w is recomputed here from the
seed by the mapping network, which is cheap on a CPU and exactly what the device fed the generator
(the device maps on its CPU too, in float32, so that both sides compute the same w).

    device:  python scripts/device/bank.py render --out $OUT --minutes 5      (carry .device/bank)
    here:    python scripts/device/bank.py expand <files_at>/bank-*.safetensors RUN/bank

`expand` writes the bank stage's own batch files (`batch_NNNNNN.safetensors`, float32), so
`g2face train --stage gie --run-dir RUN` reads it like a bank rendered here. `kit` builds the carry
(the three priors, fp16 where the kit's loaders accept it), ~45 MiB.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

KEYS = ("identity", "shape", "expression", "pose")  # what the image gives; w comes from the seed
MiB = 1024 * 1024
# training.stages.BANK_SEED_STRIDE (not imported: the training package pulls in the payload codec,
# whose cryptography wheel would have to travel); tests/test_device_bank.py checks they agree.
SEED_STRIDE = 1_000_003


def _batch_seed(seed: int, index: int) -> int:
    return seed * SEED_STRIDE + index


def _priors(device: str):
    # The priors directly, not g2face.models.zoo: that imports the payload codec, whose
    # cryptography wheel would have to travel too.
    from g2face.priors.mediapipe_geometry import MediaPipeGeometry
    from g2face.priors.mobilestylegan import load_mobilestylegan
    from g2face.priors.sface import SFaceEncoder

    generator = load_mobilestylegan()
    identity = SFaceEncoder(crop_size=generator.output_resolution)
    return generator, identity.to(device), MediaPipeGeometry().to(device)


def _map_on_cpu(generator, n: int, seed: int) -> torch.Tensor:
    """w exactly as `expand` recomputes it: z drawn and mapped on the CPU in float32."""
    with torch.no_grad():
        return generator.map(generator.sample_z(n, seed))


def _save_shard(records: list[dict[str, torch.Tensor]], first_batch: int, path: Path, meta: dict) -> None:
    tensors = {k: torch.cat([r[k] for r in records]).half().contiguous() for k in KEYS}
    tmp = path.with_name(f".{path.name}.part")
    save_file(
        tensors, str(tmp), metadata={**meta, "first_batch": str(first_batch), "batches": str(len(records))}
    )
    os.replace(tmp, path)


def render_bank(
    mapper,
    synthesis,
    identity,
    geometry,
    out: Path,
    *,
    seed: int,
    batch: int,
    minutes: float,
    max_batches: int = 10**9,
    shard_mib: float = 15.0,
) -> dict:
    """Render batches until `minutes` or `max_batches` are spent; fp16 shards of ≤ `shard_mib` in
    `out`, each written as soon as it is full (a run stopped at its limit keeps them). `mapper` is
    the generator on the CPU (seeds → w), `synthesis` the same generator on the device."""
    device = next(synthesis.parameters()).device
    per_shard = None  # batches per shard, from the first batch's size in fp16
    meta = {"seed": str(seed), "batch_size": str(batch), "format": "g2face-bank-fp16"}
    out.mkdir(parents=True, exist_ok=True)
    started, records, first, shards, index = time.perf_counter(), [], 0, 0, 0
    last_print = started
    while index < max_batches and time.perf_counter() - started < minutes * 60:
        w = _map_on_cpu(mapper, batch, _batch_seed(seed, index)).to(device)
        with torch.no_grad():
            images = synthesis(w[:, None, :].expand(-1, synthesis.n_styles, -1)).clamp(-1, 1)
            g = geometry(images)
            record = {
                "identity": identity(images),
                "shape": g.shape,
                "expression": g.expression,
                "pose": g.pose,
            }
        records.append({k: v.float().cpu() for k, v in record.items()})
        if per_shard is None:
            per_sample = 2 * sum(v[0].numel() for v in records[0].values())
            per_shard = max(1, int(shard_mib * MiB // (per_sample * batch)))
        index += 1
        if len(records) == per_shard:
            _save_shard(records, first, out / f"bank-{shards:03d}.safetensors", meta)
            shards, first, records = shards + 1, index, []
        if time.perf_counter() - last_print > 20:
            last_print = time.perf_counter()
            print(
                f"[bank] {index * batch} samples, {index * batch / (last_print - started):.0f}/s", flush=True
            )
    if records:
        _save_shard(records, first, out / f"bank-{shards:03d}.safetensors", meta)
    seconds = time.perf_counter() - started
    # The first batch's w, for `expand` to check that its CPU maps the seeds to the same latents.
    save_file({"w": _map_on_cpu(mapper, batch, _batch_seed(seed, 0))}, str(out / "w-check.safetensors"))
    return {
        "samples": index * batch,
        "seconds": round(seconds, 1),
        "per_second": round(index * batch / seconds, 1),
    }


def render(args: argparse.Namespace) -> None:
    device = args.device
    if device == "cuda":
        # TF32 for the synthesis and the priors; w itself is mapped in float32 on the CPU.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    mapper, identity, geometry = _priors(device)  # the generator stays on the CPU to map seeds
    summary = render_bank(
        mapper,
        copy.deepcopy(mapper).to(device),
        identity,
        geometry,
        args.out,
        seed=args.seed,
        batch=args.batch,
        minutes=args.minutes,
        max_batches=args.max_batches,
        shard_mib=args.shard_mib,
    )
    summary.update(device=device, torch=torch.__version__)
    if device == "cuda":
        summary["gpu"] = torch.cuda.get_device_name()
        summary["max_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    (args.out / "bank.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))


def round_like_kit(generator) -> None:
    """The kit carries the generator in fp16: here it must map seeds with the same rounded numbers."""
    with torch.no_grad():
        for tensor in [*generator.parameters(), *generator.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())


def expand_shards(generator, shards: list[Path], run_bank: Path, name_offset: int = 0) -> int:
    """The bank stage's batch files (float32, w recomputed from each batch's seed) from rendered
    shards; returns the number of samples written."""
    from tqdm import tqdm

    run_bank.mkdir(parents=True, exist_ok=True)
    written = 0
    for shard in sorted(shards):
        with safe_open(str(shard), "pt") as f:
            meta = f.metadata()
        seed, batch = int(meta["seed"]), int(meta["batch_size"])
        first, batches = int(meta["first_batch"]), int(meta["batches"])
        data = load_file(str(shard))
        for i in tqdm(range(batches), desc=shard.name, unit="batch"):
            rows = slice(i * batch, (i + 1) * batch)
            record = {"w": _map_on_cpu(generator, batch, _batch_seed(seed, first + i))}
            record.update({k: data[k][rows].float().contiguous() for k in KEYS})
            path = run_bank / f"batch_{name_offset + first + i:06d}.safetensors"
            tmp = path.with_name(f".{path.name}.part")
            save_file(record, str(tmp))
            os.replace(tmp, path)
            written += batch
        check = shard.parent / "w-check.safetensors"
        if first == 0 and check.is_file():
            w_device = load_file(str(check))["w"]
            w_here = _map_on_cpu(generator, len(w_device), _batch_seed(seed, 0))
            print(f"w of batch 0: max |device − here| = {(w_device - w_here).abs().max():.2e}")
    return written


def expand(args: argparse.Namespace) -> None:
    from g2face.priors.mobilestylegan import load_mobilestylegan

    generator = load_mobilestylegan()
    round_like_kit(generator)
    written = expand_shards(generator, args.shards, args.run_bank, args.name_offset)
    print(f"{written} samples in {args.run_bank}")


def kit(args: argparse.Namespace) -> None:
    """The carry: the three priors' converted files (with their sha256 sidecars) under home/."""
    from make_kit import _copy  # same folder; fp16 copies the loaders cast back to float32

    from g2face.priors import mediapipe_geometry, mobilestylegan, sface

    home = args.out / "home"
    _copy(mobilestylegan.weights_path(), home)
    _copy(sface.sface_weights_path(), home)
    _copy(mediapipe_geometry.converted_weights_path(), home, half=False)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file()) / MiB
    print(f"{args.out}: {size:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="on the accelerator: render the bank, write fp16 shards")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--minutes", type=float, default=5.0, help="wall-clock budget of the rendering")
    r.add_argument("--max-batches", type=int, default=10**9)
    r.add_argument("--batch", type=int, default=128)
    r.add_argument("--seed", type=int, default=1, help="run seed (the shipped bank used 0)")
    r.add_argument("--shard-mib", type=float, default=15.0)
    r.add_argument("--device", default="cuda")
    e = sub.add_parser("expand", help="here: recompute w, write the bank stage's batch files")
    e.add_argument("shards", type=Path, nargs="+")
    e.add_argument("run_bank", type=Path)
    e.add_argument(
        "--name-offset",
        type=int,
        default=0,
        help="added to the batch numbers in the file names (a second render's seed)",
    )
    k = sub.add_parser("kit", help="here: build the carry")
    k.add_argument("--out", type=Path, default=Path(".device/bank"))
    args = parser.parse_args()
    {"render": render, "expand": expand, "kit": kit}[args.command](args)


if __name__ == "__main__":
    main()
