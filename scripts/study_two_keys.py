"""Why do two keys' fakes of one photo look like one person to FaceNet? (issue 11, "two keys")

Two levers on the dummy itself were tried, one candidate per key (no search), fused previews,
FaceNet-CASIA (never used by the model) on LFW genuine pairs:

* `shape`: GIE renders every dummy with the average face shape (`geometry_vector`); here each key
  gets its own keyed random shape coefficients (bank mean + scale × z × bank std).
* `mix`: style mixing — a keyed random w from the generator's mapping network (truncation psi)
  replaces f_mlp's mid (and high) styles by a fraction.

Reported per variant: mean FaceNet cosine between the two keys' fakes and their match rate at
0.573 (FaceNet's FAR-1e-3 threshold on LFW originals, docs/video.md), each fake against A2 (another
photo of the person) and A1 (the same photo); `--sheet` saves key A's fake per variant.

    PYTHONPATH=src python scripts/study_two_keys.py --variant shape --pairs 24
    PYTHONPATH=src python scripts/study_two_keys.py --variant mix --pairs 24 --sheet runs/mix.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from study_attribute_keeping import genuine_pair_crops  # noqa: E402

from g2face.evaluation.protocols import name_seed  # noqa: E402
from g2face.models.fusion_anonymizer import FusionAnonymizer  # noqa: E402
from g2face.models.zoo import load_model  # noqa: E402
from g2face.nn.crops import crops_to_tensor  # noqa: E402
from g2face.priors.facenet import FaceNetEncoder  # noqa: E402
from g2face.training.stages import load_bank  # noqa: E402

FACENET_MATCH = 0.573

SHAPE_SCALES = {"average shape": 0.0, "shape x0.7": 0.7, "shape x1": 1.0, "shape x1.5": 1.5}
MIXES = {
    "none": (0, 0),
    "mid 0.5": (0.5, 0),
    "mid 1": (1, 0),
    "mid+high 1": (1, 1),
    "mid+high 0.7": (0.7, 0.7),
}


def spread_styles(model: FusionAnonymizer, dummy: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """W+ of a dummy with the shipped spread (`render_dummies` without the rendering)."""
    wplus = model.gie.styles(dummy, vector)
    mean = model.gie.style_mlp.input_mean[: model.gie.config.identity_dim]
    return torch.lerp(model.gie.styles(mean[None], vector), wplus, model.candidates.spread)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--bank", type=Path, default=Path("runs/lite/bank"), help="for the shape spread")
    parser.add_argument("--variant", choices=["shape", "mix"], required=True)
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--psi", type=float, default=0.7, help="truncation of the mixed-in w")
    parser.add_argument("--sheet", type=Path)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = load_model("g2face-lite", attributes="free")
    assert isinstance(model, FusionAnonymizer)
    facenet, generator = FaceNetEncoder(), model.generator
    low, mid, high = model.gie.style_mlp.group_sizes
    variants = SHAPE_SCALES if args.variant == "shape" else MIXES
    if args.variant == "shape":
        bank = load_bank(args.bank, torch.device("cpu"))
        shape_mean, shape_std = bank["shape"].mean(0), bank["shape"].std(0)
    names, firsts, seconds = genuine_pair_crops(args.data, args.pairs)
    found = {v: {"keys": [], "a2": [], "a1": []} for v in variants}
    rows = []
    for name, a1, a2 in zip(names, firsts, seconds, strict=True):
        geometry = model.geometry(crops_to_tensor([a1]))
        vector = model.geometry_vector(geometry)
        points = (geometry.landmarks[..., :2] * model.image_size - 0.5).numpy()[0]
        e1, e2 = facenet(crops_to_tensor([a1, a2]))
        row = [a1]
        for variant, setting in variants.items():
            fakes = []
            for key in ("A", "B"):
                seed = name_seed(name + key)
                dummy = model.dummy_identities([seed], torch.float32)
                keyed = torch.Generator().manual_seed(seed % 2**63)
                if args.variant == "shape":
                    n_shape = geometry.shape.shape[1]
                    shaped = vector.clone()
                    shaped[0, :n_shape] = (
                        shape_mean + setting * torch.randn(n_shape, generator=keyed) * shape_std
                    )
                    wplus = spread_styles(model, dummy, shaped)
                else:
                    wplus = spread_styles(model, dummy, vector).clone()
                    w = generator.map(torch.randn(1, 512, generator=keyed), args.psi)[:, None]
                    wplus[:, low : low + mid] = torch.lerp(
                        wplus[:, low : low + mid], w.expand(-1, mid, -1), setting[0]
                    )
                    wplus[:, low + mid :] = torch.lerp(
                        wplus[:, low + mid :], w.expand(-1, high, -1), setting[1]
                    )
                (fused,) = model.fuse_renders(a1, points, generator(wplus).clamp(-1, 1))
                fakes.append(facenet(crops_to_tensor([fused.preview]))[0])
                if key == "A":
                    row.append(fused.preview)
            found[variant]["keys"].append(float(fakes[0] @ fakes[1]))
            found[variant]["a2"] += [float(f @ e2) for f in fakes]
            found[variant]["a1"] += [float(f @ e1) for f in fakes]
        rows.append(row)
    for variant in variants:
        keys, a2, a1 = (np.array(found[variant][k]) for k in ("keys", "a2", "a1"))
        print(
            f"{variant}: two keys mean {keys.mean():.3f}, match {np.mean(keys >= FACENET_MATCH):.3f} | "
            f"to A2 mean {a2.mean():.3f}, match {np.mean(a2 >= FACENET_MATCH):.3f} | "
            f"to A1 mean {a1.mean():.3f}, match {np.mean(a1 >= FACENET_MATCH):.3f}"
        )
    if args.sheet:
        tile, shown = 128, rows[:8]
        sheet = Image.new("RGB", (len(shown[0]) * tile, len(shown) * tile))
        for i, row in enumerate(shown):
            for j, image in enumerate(row):
                sheet.paste(Image.fromarray(image).resize((tile, tile)), (j * tile, i * tile))
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(args.sheet)


if __name__ == "__main__":
    main()
