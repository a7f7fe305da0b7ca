"""Does fine-tuning f_mlp with an identity loss through the frozen generator help? (issue 11)

f_mlp regresses the bank's W+ with a squared error, so the face it renders for an identity is far
from that person (SFace mean 0.24 on the perfect channel). This fine-tunes f_mlp (f_dummy frozen)
on real aligned CelebA crops: render G(f_mlp(SFace(X), geo₀(X))), and pull the render's SFace
identity towards SFace(X), keeping the render's MediaPipe landmarks and blendshapes where the
untouched f_mlp put them, while the bank's W+ regression continues as an anchor.

Judged by FaceNet-CASIA, which takes no part, on LFW genuine pairs: A1 is anonymized once with the
shipped g2face-lite, then its true SFace identity is rendered back onto the anonymized crop (the
perfect channel) with each checkpoint of f_mlp and compared with A2, another photo of the person.

    OMP_NUM_THREADS=2 PYTHONPATH=src python scripts/study_identity_finetune.py \
        --cache /work/runs/s7/idft --steps 300 --eval-every 50
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from g2face.align import align_face
from g2face.detection import YuNetDetector
from g2face.evaluation.faces import FaceFinder
from g2face.evaluation.metrics import threshold_at_far
from g2face.evaluation.protocols import name_seed, read_lfw_pairs
from g2face.io import read_image
from g2face.models.fusion_anonymizer import FusionAnonymizer
from g2face.nn.crops import crops_to_tensor
from g2face.payload import Secret
from g2face.pipeline.g2face import G2FacePipeline
from g2face.priors.facenet import FaceNetEncoder
from g2face.training.stages import load_bank


@torch.no_grad()
def prepare_train(model: FusionAnonymizer, data: Path, count: int, out: Path) -> dict:
    """CelebA crops (identities interleaved): SFace identity, geo₀ vector, and the landmarks and
    blendshapes of the untouched f_mlp's render (the geometry the fine-tuned render must keep)."""
    if out.exists():
        return torch.load(out)
    finder = FaceFinder(YuNetDetector())
    rows = list(csv.DictReader((data / "celeba" / "identities.csv").open()))
    # Identities interleaved (every identity's first photo, then every second photo, ...).
    by_identity: dict[str, list[str]] = {}
    for row in rows:
        by_identity.setdefault(row["identity"], []).append(row["file"])
    depth = max(len(v) for v in by_identity.values())
    picked = [files[k] for k in range(depth) for files in by_identity.values() if k < len(files)]
    record: dict = {"identity": [], "vector": [], "landmarks": [], "expression": []}
    for name in tqdm(picked, desc="train crops", unit="crop"):
        if len(record["identity"]) >= count:
            break
        face = finder.find(read_image(data / "celeba" / name).rgb)
        if face is None:
            continue
        crop = crops_to_tensor([face.crop])
        identity = model.identity(crop)
        vector = model.geometry_vector(model.geometry(crop))
        render = model.generator(model.gie.styles(identity, vector)).clamp(-1, 1)
        geometry = model.geometry(render)
        record["identity"].append(identity[0])
        record["vector"].append(vector[0])
        record["landmarks"].append(geometry.landmarks[0, :, :2])
        record["expression"].append(geometry.expression[0])
    record = {k: torch.stack(v) for k, v in record.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(record, out)
    return record


@torch.no_grad()
def prepare_val(pipeline: G2FacePipeline, data: Path, pairs: int, out: Path) -> dict:
    """LFW genuine pairs: A1 anonymized by the shipped model (crop), A1's SFace identity, FaceNet
    embeddings of A1 and A2 (threshold at FAR 1e-3 from A1's impostor pairs)."""
    if out.exists():
        return torch.load(out)
    model = pipeline.model
    finder, facenet, secret = FaceFinder(YuNetDetector()), FaceNetEncoder(), Secret(b"A" * 32, "key")
    lfw = read_lfw_pairs(data)
    chosen = lfw.genuine(pairs)
    record: dict = {"names": [], "anonymized": [], "truth": [], "facenet_a1": [], "facenet_a2": []}
    for a, b in tqdm(chosen, desc="val pairs", unit="pair"):
        image = read_image(data / a).rgb
        f1, f2 = finder.find(image), finder.find(read_image(data / b).rgb)
        if f1 is None or f2 is None:
            continue
        anon = pipeline.anonymize(image, secret, seeds=[name_seed(a)], detections=[f1.detection])
        record["anonymized"].append(crops_to_tensor([align_face(anon.image, f1.detection, 256).crop])[0])
        originals = crops_to_tensor([f1.crop, f2.crop])
        e = facenet(originals)
        record["truth"].append(model.identity(originals[:1])[0])
        record["facenet_a1"].append(e[0])
        record["facenet_a2"].append(e[1])
        record["names"].append(Path(a).parent.name)
    record = {k: (v if k == "names" else torch.stack(v)) for k, v in record.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(record, out)
    return record


@torch.no_grad()
def evaluate(model: FusionAnonymizer, val: dict, facenet: FaceNetEncoder, threshold: float) -> dict:
    """Perfect channel: each A1's true identity rendered and fused onto its anonymized crop."""
    cos_f, cos_s = [], []
    for crop, truth, a2 in zip(val["anonymized"], val["truth"], val["facenet_a2"], strict=True):
        images, masks = model.render_identities(crop[None], truth[None])
        # Through the mask into the anonymized crop, as the pipeline pastes it into the photo.
        mask = torch.from_numpy(masks)[:, None].to(images)
        images = images * mask + crop[None] * (1 - mask)
        cos_f.append(float(facenet(images)[0] @ a2))
        cos_s.append(float(model.identity(images)[0] @ truth))
    return {
        "facenet_tar": float(np.mean(np.array(cos_f) >= threshold)),
        "facenet_mean_cos": float(np.mean(cos_f)),
        "sface_to_truth": float(np.mean(cos_s)),
    }


@torch.no_grad()
def dummy_spread(model: FusionAnonymizer, train: dict, facenet: FaceNetEncoder, n: int = 8) -> float:
    """Mean FaceNet cosine between two keyed dummies rendered at the same geometry (lower = more
    diverse fakes)."""
    seeds = list(range(2 * n))
    dummies = model.dummy_identities(seeds, torch.float32)
    cos = []
    for i in range(n):
        vector = train["vector"][i : i + 1]
        renders = model.render_dummies(dummies[2 * i : 2 * i + 2], vector, model.candidates.spread)
        e = facenet(renders)
        cos.append(float(e[0] @ e[1]))
    return float(np.mean(cos))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--bank", type=Path, default=Path("/work/runs/lite/bank"))
    parser.add_argument("--train-crops", type=int, default=512)
    parser.add_argument("--val-pairs", type=int, default=60)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.05, help="Adam lr (f_mlp layers use lr_mul 0.01)")
    parser.add_argument("--bank-weight", type=float, default=1.0)
    parser.add_argument("--anchor-weight", type=float, default=0.0, help="MSE to the untouched W+")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--save", type=Path, help="write the fine-tuned f_mlp state here")
    args = parser.parse_args()

    pipeline = G2FacePipeline.from_pretrained("g2face-lite")
    model = pipeline.model
    assert isinstance(model, FusionAnonymizer)
    facenet = FaceNetEncoder()
    train = prepare_train(model, args.data, args.train_crops, args.cache / "train.pt")
    val = prepare_val(pipeline, args.data, args.val_pairs, args.cache / "val.pt")
    names, a1 = val["names"], val["facenet_a1"].numpy()
    iu = np.triu_indices(len(names), 1)
    different = np.array([names[i] != names[j] for i, j in zip(*iu, strict=True)])
    threshold = threshold_at_far((a1 @ a1.T)[iu][different], 1e-3)
    bank = load_bank(args.bank, torch.device("cpu"))
    bank_geometry = torch.cat([bank["shape"], bank["expression"], bank["pose"]], 1)
    n_bank_train = len(bank["w"]) - len(bank["w"]) // 20
    frozen = copy.deepcopy(model.gie.style_mlp).eval()

    history = []

    def log(step: int, extra: dict) -> None:
        row = {"step": step, **evaluate(model, val, facenet, threshold)}
        row |= {"dummy_pair_cos": dummy_spread(model, train, facenet), **extra}
        history.append(row)
        print(json.dumps(row), flush=True)
        settings = {k: str(v) for k, v in vars(args).items()}
        report = {"threshold": threshold, "args": settings, "history": history}
        (args.cache / "history.json").write_text(json.dumps(report, indent=2))

    log(0, {})
    style_mlp = model.gie.style_mlp
    optimizer = torch.optim.Adam(style_mlp.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(0)
    n_train = len(train["identity"])
    started, running = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        pick = torch.randint(n_train, (args.batch,), generator=generator)
        identity, vector = train["identity"][pick], train["vector"][pick]
        with torch.enable_grad():
            style_mlp.train()
            wplus = model.gie.styles(identity, vector)
            image = model.generator(wplus).clamp(-1, 1)
            geometry = model.geometry(image)
            identity_loss = 1 - (model.identity(image) * identity).sum(1).mean()
            geometry_loss = 10 * (geometry.landmarks[..., :2] - train["landmarks"][pick]).abs().mean()
            geometry_loss = geometry_loss + (geometry.expression - train["expression"][pick]).abs().mean()
            pick_bank = torch.randint(n_bank_train, (256,), generator=generator)
            w_bank = model.gie.styles(bank["identity"][pick_bank], bank_geometry[pick_bank])
            bank_loss = F.mse_loss(w_bank, bank["w"][pick_bank][:, None].expand_as(w_bank))
            loss = identity_loss + geometry_loss + args.bank_weight * bank_loss
            if args.anchor_weight > 0:
                with torch.no_grad():
                    anchor = frozen(identity, vector)
                loss = loss + args.anchor_weight * F.mse_loss(wplus, anchor)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            style_mlp.eval()
        running.append([identity_loss.item(), geometry_loss.item(), bank_loss.item()])
        if step % 10 == 0:
            r = np.mean(running[-10:], 0)
            print(
                f"step {step}: id {r[0]:.3f} geo {r[1]:.3f} bank {r[2]:.4f} "
                f"({(time.perf_counter() - started) / step:.1f} s/step)",
                flush=True,
            )
        if step % args.eval_every == 0 or step == args.steps:
            log(step, {"train_identity_loss": float(np.mean([r[0] for r in running[-args.eval_every :]]))})
            if args.save:
                torch.save(style_mlp.state_dict(), args.save)


if __name__ == "__main__":
    main()
