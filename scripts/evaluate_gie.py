"""How well GIE alone turns identity + geometry into a face (no fusion, no payload: the generator's
output straight from f_mlp's W+), on generator samples of a held-out seed and on real crops.

For each face x, with the model's own priors (SFace identity, MediaPipe geometry):
    recon = G(f_mlp(SFace(x), geometry(x)))      the best recovery can give back through GIE
    anon  = G(f_mlp(f_dummy(z), geometry(x)))    the dummy face GIE builds on x's geometry
Reported: SFace cosine to x (white-box: the encoder GIE was trained with), FaceNet-CASIA cosine
and match rate at the threshold where distinct people match 1 in 1000 (black-box), mean absolute
yaw/pitch/roll error and blendshape L1 against x. A picture of generator samples (x | recon | anon)
is written for people to look at (no dataset faces in it).

    python scripts/evaluate_gie.py --model runs/lite/model.safetensors --data <prepared crops> --out out/gie
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
import torch.nn.functional as F

from g2face.data import AlignedFaceDataset
from g2face.data.prepare import read_manifest
from g2face.evaluation.report import save_grid
from g2face.models.zoo import load_model
from g2face.nn.crops import tensor_to_crops
from g2face.priors.facenet import FaceNetEncoder
from g2face.training.sources import broadcast_w, sample_w


def _batches(x: torch.Tensor, size: int):
    for start in range(0, len(x), size):
        yield x[start : start + size]


@torch.no_grad()
def measure(
    model, facenet, faces: torch.Tensor, labels: list[str], seed: int, batch: int, keep: int = 6
) -> tuple[dict, tuple[torch.Tensor, torch.Tensor]]:
    """The metrics of one set, and the first `keep` (recon, anon) images for the picture."""
    net, generator = model.net, model.net.generator
    kept: tuple[list, list] = ([], [])
    rows: dict[str, list] = {k: [] for k in ("recon", "anon", "id_x", "fn_x", "fn_r", "fn_a")}
    geo: dict[str, list] = {k: [] for k in ("pose_x", "pose_r", "pose_a", "exp_x", "exp_r", "exp_a")}
    z_gen = torch.Generator().manual_seed(seed)
    for x in _batches(faces, batch):
        identity, geometry = model.identity(x), model.geometry(x)
        z = torch.randn(len(x), net.config.gie.z_dim, generator=z_gen)
        recon = generator(net.styles(identity, geometry.as_vector())).clamp(-1, 1)
        anon = generator(net.styles(net.dummy_identity(z), geometry.as_vector())).clamp(-1, 1)
        kept[0].append(recon)
        kept[1].append(anon)
        for name, image in (("x", x), ("recon", recon), ("anon", anon)):
            g = model.geometry(image)
            geo[f"pose_{name[0]}"].append(g.pose)
            geo[f"exp_{name[0]}"].append(g.expression)
        rows["id_x"].append(identity)
        rows["recon"].append(model.identity(recon))
        rows["anon"].append(model.identity(anon))
        rows["fn_x"].append(facenet(x))
        rows["fn_r"].append(facenet(recon))
        rows["fn_a"].append(facenet(anon))
    cat = {k: torch.cat(v) for k, v in {**rows, **geo}.items()}
    # FaceNet threshold at FAR 1e-3 from pairs of distinct people within this set
    fn = cat["fn_x"]
    sims = fn @ fn.T
    distinct = torch.tensor([[a != b for b in labels] for a in labels])
    impostor = sims[distinct & ~torch.eye(len(fn), dtype=torch.bool)]
    threshold = float(torch.quantile(impostor, 0.999))

    def cos(a, b):
        return F.cosine_similarity(a, b, dim=1)

    result = {"faces": len(fn), "facenet_threshold_far1e-3": threshold}
    for name, key, fkey in (("recon", "recon", "fn_r"), ("anon", "anon", "fn_a")):
        c = name[0]
        result[name] = {
            "sface_cos": float(cos(cat[key], cat["id_x"]).mean()),
            "facenet_cos": float(cos(cat[fkey], fn).mean()),
            "facenet_match_rate": float((cos(cat[fkey], fn) > threshold).float().mean()),
            "pose_abs_err_deg": [float(v) for v in (cat[f"pose_{c}"] - cat["pose_x"]).abs().mean(0)],
            "blendshape_l1": float((cat[f"exp_{c}"] - cat["exp_x"]).abs().mean()),
        }
    return result, (torch.cat(kept[0])[:keep], torch.cat(kept[1])[:keep])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="weights file (model.safetensors) or packaged name")
    parser.add_argument(
        "--data", type=Path, help="prepared crops (g2face data prepare) for the real-face rows"
    )
    parser.add_argument("--n", type=int, default=128, help="faces per set")
    parser.add_argument("--seed", type=int, default=12345, help="generator samples (keep it off the bank's)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model)
    facenet = FaceNetEncoder()
    results = {}

    with torch.no_grad():
        generator = model.net.generator
        w = sample_w(generator, args.n, args.seed)
        samples = torch.cat(
            [generator(broadcast_w(generator, c)).clamp(-1, 1) for c in _batches(w, args.batch)]
        )
    results["generator samples"], (recon, anon) = measure(
        model, facenet, samples, [str(i) for i in range(args.n)], args.seed, args.batch
    )
    if args.data is not None:
        records = read_manifest(args.data)
        picks = random.Random(args.seed).sample(range(len(records)), min(args.n, len(records)))
        dataset = AlignedFaceDataset(args.data, size=model.image_size)
        crops = torch.stack([dataset[i] for i in picks])
        labels = [records[i].identity or f"#{i}" for i in picks]
        results["real crops"], _ = measure(model, facenet, crops, labels, args.seed, args.batch)

    columns = {"generator sample": samples[: len(recon)], "recon": recon, "anon": anon}
    save_grid(
        args.out / "gie_samples.png", {k: list(tensor_to_crops(v)) for k, v in columns.items()}, cell=192
    )
    (args.out / "gie_metrics.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [
        "| set | output | SFace cos (white-box) | FaceNet cos | FaceNet match @FAR1e-3 "
        "| mean abs Δ yaw/pitch/roll (°) | blendshape L1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for output in ("recon", "anon"):
            m = r[output]
            pose = "/".join(f"{v:.1f}" for v in m["pose_abs_err_deg"])
            lines.append(
                f"| {name} ({r['faces']}) | {output} | {m['sface_cos']:.3f} | {m['facenet_cos']:.3f} | "
                f"{m['facenet_match_rate']:.3f} | {pose} | {m['blendshape_l1']:.3f} |"
            )
    (args.out / "gie_metrics.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
