"""Does the default keep an original's glasses, moustache or beard? (issue 19)

One photo per LFW person (the sample of `measure_attributes.py`), grouped by the original's own
accessory reading (`--accessory glasses`: since session 36 `readers.original_glasses`, the fakes by
`glasses_score`; `facial_hair`: `facial_hair_score` and `original_facial_hair`): "sure" (the fake
should keep it), "unsure" (either fake is allowed) and "bare" (the first `--controls`: the fake
must not add one). Each face is anonymized twice with the same keyed seeds: once with the rules
before the accessory was kept (the candidates' flags for it cleared, so the search neither prefers
nor avoids it nor draws a second round for it; the `--before` candidate overrides, e.g.
`glasses_weight` 0 and `steer` 0 so the probe neither ranks nor steers by glasses;
`--before-model`, e.g. a model file whose probe has no row for it), once as `--model` says.
Reported per group: how often the chosen fake's own score says it has the accessory (white-box: the
chooser uses that score), renders per face, FaceNet-CASIA cosine of fake to original (never used by
the model), and contact sheets original | before | after with the scores, to judge by eye.

    PYTHONPATH=src python scripts/measure_accessory_keeping.py --faces 400 --out runs/glasses
        --before '{"glasses_weight": 0, "steer": 0}'        (one command)
    PYTHONPATH=src python scripts/measure_accessory_keeping.py --accessory facial_hair
        --faces 600 --out runs/facial_hair --before-model OLD.safetensors        (one command)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).parent))
from measure_attributes import DEFAULT_LFW, lfw_crops  # noqa: E402

from g2face.evaluation.protocols import name_seed  # noqa: E402
from g2face.models.fusion import (  # noqa: E402
    FACIAL_HAIR_EDGE,
    GLASSES_EDGE,
    facial_hair_score,
    glasses_score,
)
from g2face.models.fusion_anonymizer import FusionAnonymizer, original_facial_hair  # noqa: E402
from g2face.models.readers import original_glasses  # noqa: E402
from g2face.models.zoo import load_model  # noqa: E402
from g2face.nn.crops import crops_to_tensor, tensor_to_crops  # noqa: E402
from g2face.payload import Secret  # noqa: E402
from g2face.priors.facenet import FaceNetEncoder  # noqa: E402

ACCESSORIES = {
    # score(crop, points), the fake's threshold, the original's state(crop, points, score, P(male)),
    # and the candidate flags that did not exist before the accessory was kept.
    "glasses": (
        glasses_score,
        GLASSES_EDGE,
        lambda crop, points, score, male: original_glasses(crop, points),
        ("loses_glasses",),
    ),
    "facial_hair": (
        facial_hair_score,
        FACIAL_HAIR_EDGE,
        lambda crop, points, score, male: original_facial_hair(score, male),
        ("adds_facial_hair", "loses_facial_hair"),
    ),
}


class Counting:
    """Wraps `FusionAnonymizer._scores` to count fused candidates and, for the rule before the
    accessory was kept, to clear its flags."""

    def __init__(self, model: FusionAnonymizer, cleared: tuple[str, ...]):
        self.scores, self.cleared, self.calls = model._scores, cleared, 0

    def __call__(self, *args, **kwargs):
        found = self.scores(*args, **kwargs)
        self.calls += len(found)
        return [dataclasses.replace(s, **dict.fromkeys(self.cleared, False)) for s in found]


def contact_sheet(
    rows: list[dict], originals: list[np.ndarray], indices: list[int], tile: int = 128
) -> Image.Image:
    """original | before | after with each accessory score, in blocks of 12 rows side by side."""
    per_column, line = 12, 14
    columns = max(1, -(-len(rows) // per_column))
    sheet = Image.new("RGB", (columns * (3 * tile + 12), per_column * (tile + line)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, row in enumerate(rows):
        x0, y = (k // per_column) * (3 * tile + 12), (k % per_column) * (tile + line)
        images = [originals[indices[k]], row["before"]["crop"], row["after"]["crop"]]
        scores = [row["original_score"], row["before"]["score"], row["after"]["score"]]
        for j, (image, score) in enumerate(zip(images, scores, strict=True)):
            sheet.paste(Image.fromarray(image).resize((tile, tile)), (x0 + j * tile, y))
            label = ("original", "before", "after")[j]
            draw.text((x0 + j * tile + 2, y + tile), f"{label} {score:.0f}", fill="black")
    return sheet


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="lfw-deepfunneled folder")
    parser.add_argument("--accessory", choices=sorted(ACCESSORIES), default="glasses")
    parser.add_argument("--faces", type=int, default=400, help="LFW people scanned for the accessory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--controls", type=int, default=40, help="originals without the accessory anonymized too (added ones)"
    )
    parser.add_argument(
        "--groups", nargs="+", choices=["sure", "unsure", "bare"], default=["sure", "unsure", "bare"]
    )
    parser.add_argument("--model", default="g2face-lite", help="packaged name or fusion weights file")
    parser.add_argument(
        "--before", type=json.loads, default={}, help="CandidateSettings overrides of the 'before' run (JSON)"
    )
    parser.add_argument("--before-model", help="model of the 'before' run [default: --model]")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if not args.lfw.is_dir():
        print(f"LFW not found at {args.lfw}: pass --lfw; nothing measured")
        return 0
    torch.set_grad_enabled(False)
    score_of, edge, state_of, cleared = ACCESSORIES[args.accessory]
    models = {
        "before": load_model(args.before_model or args.model, candidates=args.before),
        "after": load_model(args.model),
    }
    model = models["after"]
    assert isinstance(model, FusionAnonymizer)
    facenet, secret = FaceNetEncoder(), Secret(b"G" * 32, "key")
    crops, names = lfw_crops(args.lfw, args.faces, args.seed)
    size = model.image_size
    points = (model.geometry(crops).landmarks[..., :2] * size - 0.5).numpy()
    originals = tensor_to_crops(crops)
    found = [score_of(o, p) for o, p in zip(originals, points, strict=True)]
    male = model.attributes(crops).male_probability.tolist()
    state = [state_of(o, p, s, m) for o, p, s, m in zip(originals, points, found, male, strict=True)]
    indices = {
        "sure": [i for i, g in enumerate(state) if g is True],
        "unsure": [i for i, g in enumerate(state) if g is None],
        "bare": [i for i, g in enumerate(state) if g is False][: args.controls],
    }
    indices = {group: members for group, members in indices.items() if group in args.groups}
    print({k: len(v) for k, v in indices.items()}, f"of {len(crops)} originals")

    def both_rules(i: int) -> dict:
        row = {"name": names[i], "original_score": found[i]}
        reference = facenet(crops[i : i + 1])[0]
        for label, clear in (("before", cleared), ("after", ())):
            counting = Counting(models[label], clear)
            models[label]._scores = counting
            try:
                out = models[label].anonymize(
                    crops[i : i + 1], secret, seeds=[name_seed(names[i])], salts=[b"s" * 8]
                )
            finally:
                del models[label]._scores
            # The crop is the render in the original's frame; the photo gets it through the mask.
            mask = out.masks[0][..., None]
            fake = tensor_to_crops(out.images)[0] * mask + originals[i] * (1 - mask)
            fake = np.round(fake).astype(np.uint8)
            row[label] = {
                "score": score_of(fake, points[i]),
                "renders": counting.calls,
                "facenet_to_original": float(facenet(crops_to_tensor([fake]))[0] @ reference),
                "crop": fake,
            }
        return row

    started = time.perf_counter()
    groups: dict[str, list[dict]] = {group: [] for group in indices}
    for group, members in indices.items():
        for i in members:
            row = both_rules(i)
            groups[group].append(row)
            before, after = row["before"]["score"], row["after"]["score"]
            print(
                f"{group} {names[i]}: {args.accessory} score before {before:.0f}, after {after:.0f}",
                flush=True,
            )
    summary: dict = {
        "accessory": args.accessory,
        "scanned": len(crops),
        "seconds": time.perf_counter() - started,
    }
    for group, rows in groups.items():
        summary[group] = {"faces": len(rows)}
        for label in ("before", "after"):
            summary[group][label] = {
                "fake_has_it": float(np.mean([r[label]["score"] >= edge for r in rows])),
                "renders_per_face": float(np.mean([r[label]["renders"] for r in rows])),
                "facenet_to_original": float(np.mean([r[label]["facenet_to_original"] for r in rows])),
            }
    args.out.mkdir(parents=True, exist_ok=True)
    listed = {
        group: [
            {
                k: {kk: vv for kk, vv in v.items() if kk != "crop"} if isinstance(v, dict) else v
                for k, v in r.items()
            }
            for r in rows
        ]
        for group, rows in groups.items()
    }
    (args.out / f"{args.accessory}.json").write_text(json.dumps({**summary, "rows": listed}, indent=2))
    for group in indices:
        sheet = contact_sheet(groups[group], originals, indices[group])
        sheet.save(args.out / f"{args.accessory}_{group}.png")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
