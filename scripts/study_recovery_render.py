"""How should identity-level recovery render the decoded identity? (issue 11, perfect channel)

f_mlp regresses W+ from an identity with a squared error, so its output is pulled towards the
average face; the anonymizer undoes that for dummies with `CandidateSettings.spread`. Rendering
the *true* identity with the same push away from the average ("caricature") may bring the render
closer to the person; the SFace-guided refinement (`--refine N`) is the other lever. This study
renders A1's true SFace identity back onto its anonymized crop (the perfect channel) in several
ways and reports FaceNet-CASIA (never used by the model) TAR@FAR 1e-3 and mean cosine against A2,
another photo of the person, with the threshold from the originals' impostor pairs; SFace too
(white-box: the identity is an SFace embedding and the refinement optimises SFace).

The fused crop is compared directly (the pipeline would paste it into the photo and crop again at
the same detection: the same pixels up to resampling).

    PYTHONPATH=src python scripts/study_recovery_render.py --pairs 40 --spreads 1 1.25 1.5 1.75 2 \
        --out runs/recovery/spreads.json
    PYTHONPATH=src python scripts/study_recovery_render.py --pairs 30 --spreads 1 \
        --refine 0.02:20:10,15,20 0.05:10:5,10 --out runs/recovery/refine.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from g2face.align import align_face
from g2face.detection import YuNetDetector
from g2face.evaluation.faces import FaceFinder
from g2face.evaluation.metrics import threshold_at_far
from g2face.evaluation.protocols import name_seed, read_lfw_pairs
from g2face.io import read_image
from g2face.models.fusion_anonymizer import FusionAnonymizer
from g2face.nn.crops import crops_to_tensor, tensor_to_crops
from g2face.payload import Secret
from g2face.pipeline.g2face import G2FacePipeline
from g2face.priors.facenet import FaceNetEncoder


def refine_trajectory(model: FusionAnonymizer, wplus, identity, steps: int, lr: float, keep: set[int]):
    """`FusionAnonymizer._refine`'s loop (same losses), W+ kept after each step in `keep`: one run
    gives every checkpoint of the same trajectory."""
    snapshots = {}
    with torch.inference_mode(False), torch.enable_grad():
        w = wplus.clone().detach().requires_grad_(True)
        start = model.geometry(model.generator(w).clamp(-1, 1))
        landmarks, expression = start.landmarks.detach()[..., :2], start.expression.detach()
        optimizer = torch.optim.Adam([w], lr=lr)
        for step in range(1, steps + 1):
            image = model.generator(w).clamp(-1, 1)
            geometry = model.geometry(image)
            loss = 1 - (model.identity(image) * identity).sum(1).mean()
            loss = loss + 10 * (geometry.landmarks[..., :2] - landmarks).abs().mean()
            loss = loss + (geometry.expression - expression).abs().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step in keep:
                snapshots[step] = w.detach().clone()
    return snapshots


def recovered(model: FusionAnonymizer, crop: torch.Tensor, truth: torch.Tensor, spread: float, refine=None):
    """The true identity rendered at the anonymized crop's geometry with `spread`, fused onto the
    crop (what `render_identities` does, with the spread added); `refine` (lr, steps, checkpoints):
    one fused crop per checkpoint of the refinement instead."""
    geometry = model.geometry(crop)
    vector = model.geometry_vector(geometry)
    wplus = model.gie.styles(truth, vector)
    if spread != 1.0:
        mean = model.gie.style_mlp.input_mean[: model.gie.config.identity_dim].to(truth)
        wplus = torch.lerp(model.gie.styles(mean[None], vector), wplus, spread)
    points = (geometry.landmarks[..., :2] * model.image_size - 0.5).cpu().numpy()

    def fused(w):
        (face,) = model.fuse_renders(tensor_to_crops(crop)[0], points[0], model.generator(w).clamp(-1, 1))
        return face.crop

    if refine is None:
        return fused(wplus)
    lr, steps, checkpoints = refine
    return {
        k: fused(w) for k, w in refine_trajectory(model, wplus, truth, steps, lr, set(checkpoints)).items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--spreads", type=float, nargs="+", default=[1.0, 1.25, 1.5, 2.0])
    parser.add_argument(
        "--refine",
        nargs="+",
        default=[],
        help="refinement runs as LR:STEPS:CHECKPOINT,CHECKPOINT… (from spread 1), e.g. 0.02:20:10,15,20",
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    lfw = read_lfw_pairs(args.data)
    pairs = lfw.genuine(args.pairs)
    torch.set_grad_enabled(False)
    pipeline = G2FacePipeline.from_pretrained("g2face-lite")
    model = pipeline.model
    assert isinstance(model, FusionAnonymizer)
    finder, facenet, secret = FaceFinder(YuNetDetector()), FaceNetEncoder(), Secret(b"A" * 32, "key")
    refinements = []
    for spec in args.refine:
        lr, steps, checkpoints = spec.split(":")
        refinements.append((float(lr), int(steps), [int(c) for c in checkpoints.split(",")]))
    names, emb_a1, emb_a2, emb_s1, emb_s2 = [], [], [], [], []
    cos_facenet: dict = {}
    cos_sface: dict = {}
    started = time.perf_counter()
    for a, b in tqdm(pairs, desc="recover", unit="pair"):
        image = read_image(args.data / a).rgb
        f1 = finder.find(image)
        f2 = finder.find(read_image(args.data / b).rgb)
        if f1 is None or f2 is None:
            continue
        anon = pipeline.anonymize(image, secret, seeds=[name_seed(a)], detections=[f1.detection])
        anonymized = crops_to_tensor([align_face(anon.image, f1.detection, 256).crop])
        originals = crops_to_tensor([f1.crop, f2.crop])
        truth = model.identity(originals[:1])
        e_f, e_s = facenet(originals), model.identity(originals)
        names.append(Path(a).parent.name)
        emb_a1.append(e_f[0].numpy())
        emb_a2.append(e_f[1].numpy())
        emb_s1.append(e_s[0].numpy())
        emb_s2.append(e_s[1].numpy())
        cos_facenet.setdefault("anonymized", []).append(float(facenet(anonymized)[0] @ e_f[1]))
        cos_sface.setdefault("anonymized", []).append(float(model.identity(anonymized)[0] @ e_s[1]))
        results = {(s, 0): recovered(model, anonymized, truth, s) for s in args.spreads}
        for lr, steps, checkpoints in refinements:
            by_step = recovered(model, anonymized, truth, 1.0, (lr, steps, checkpoints))
            results |= {f"refine lr {lr:g}, {c} steps": by_step[c] for c in checkpoints}
        for v, face in results.items():
            crop = crops_to_tensor([face])
            cos_facenet.setdefault(v, []).append(float(facenet(crop)[0] @ e_f[1]))
            cos_sface.setdefault(v, []).append(float(model.identity(crop)[0] @ e_s[1]))
    n = len(names)
    iu = np.triu_indices(n, 1)
    different = np.array([names[i] != names[j] for i, j in zip(*iu, strict=True)])
    report: dict = {"pairs": n, "seconds": round(time.perf_counter() - started)}
    for key, e1, e2, table in (
        ("facenet", np.array(emb_a1), np.array(emb_a2), cos_facenet),
        ("sface", np.array(emb_s1), np.array(emb_s2), cos_sface),
    ):
        threshold = threshold_at_far((e1 @ e1.T)[iu][different], 1e-3)
        report[f"{key}_threshold"] = threshold
        report[f"{key}_tar_original"] = float(np.mean(np.sum(e1 * e2, 1) >= threshold))
        for variant, cos in table.items():
            label = variant if isinstance(variant, str) else "spread {}, refine {}".format(*variant)
            row = report.setdefault(label, {})
            row[f"{key}_tar"] = float(np.mean(np.array(cos) >= threshold))
            row[f"{key}_mean_cos"] = float(np.mean(cos))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
