"""Package a trained GIE as the geometric-fusion default model (`g2face-lite`).

    python scripts/build_lite_model.py RUN/model.safetensors src/g2face/weights/g2face-lite.safetensors
    python scripts/build_lite_model.py --candidates 2 --rounds 2 --spread 1.5 --steer 1 --age-stretch 0.6 \
        --away-steps 5 --second-judge dlib-resnet --warp 0.2 --shading-sigma 0.5 \
        src/g2face/weights/g2face-lite.safetensors src/g2face/weights/g2face-lite.safetensors

Takes the GIE part (f_dummy, f_mlp) of a `g2face train --stage gie` export and stores it with the
settings the anonymizer is rebuilt from (GIE configuration, prior family, fusion and candidate
settings); weight matrices in float16. Given a geometric-fusion file instead, it keeps its tensors
bit for bit (attribute probe included) and its GIE configuration, and writes the settings again
from the options (the current defaults where an option is not given); with `--gie-from EXPORT` its
f_dummy and f_mlp are replaced by that GIE export's (a GIE trained on a larger bank, say) and the
stored settings are kept:

    python scripts/build_lite_model.py src/g2face/weights/g2face-lite.safetensors new.safetensors \
        --gie-from RUN/model.safetensors
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file, save_file

from g2face.models.checkpoints import (
    FUSION_FORMAT,
    GIE_PREFIXES,
    gie_tensors,
    load_fusion_model,
    read_g2face_config,
    save_fusion_model,
    weights_format,
)
from g2face.models.fusion import FusionSettings
from g2face.models.fusion_anonymizer import SECOND_JUDGES, CandidateSettings
from g2face.models.gie import GIEConfig
from g2face.models.zoo import fusion_settings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("gie_export", type=Path, help="model.safetensors of a GIE training run")
    parser.add_argument("out", type=Path)
    parser.add_argument("--warp", type=float, default=FusionSettings.warp_strength)
    parser.add_argument("--shading-sigma", type=float, default=FusionSettings.shading_sigma)
    parser.add_argument("--candidates", type=int, default=CandidateSettings.count)
    parser.add_argument("--rounds", type=int, default=CandidateSettings.max_rounds)
    parser.add_argument("--spread", type=float, default=CandidateSettings.spread)
    parser.add_argument("--steer", type=float, default=CandidateSettings.steer)
    parser.add_argument("--glasses-weight", type=float, default=CandidateSettings.glasses_weight)
    parser.add_argument("--facial-hair-weight", type=float, default=CandidateSettings.facial_hair_weight)
    parser.add_argument("--age-stretch", type=float, default=CandidateSettings.age_stretch)
    parser.add_argument("--away-steps", type=int, default=CandidateSettings.away_steps)
    parser.add_argument(
        "--second-judge",
        choices=SECOND_JUDGES,
        default=CandidateSettings.second_judge,
        help="a second recogniser the dummy search weighs with SFace",
    )
    parser.add_argument("--full", action="store_true", help="keep float32 weights")
    parser.add_argument(
        "--gie-from",
        type=Path,
        help="with a geometric-fusion input: take f_dummy and f_mlp from this GIE export instead "
        "(the probes and corrections are kept; refit those that depend on the renders)",
    )
    args = parser.parse_args()
    fusion, candidates = (
        FusionSettings(warp_strength=args.warp, shading_sigma=args.shading_sigma),
        CandidateSettings(
            count=args.candidates,
            max_rounds=args.rounds,
            spread=args.spread,
            steer=args.steer,
            glasses_weight=args.glasses_weight,
            facial_hair_weight=args.facial_hair_weight,
            age_stretch=args.age_stretch,
            away_steps=args.away_steps,
            second_judge=args.second_judge,
        ),
    )
    if weights_format(args.gie_export) == FUSION_FORMAT:
        _, stored = load_fusion_model(args.gie_export)
        gie = GIEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored["gie"].items()})
        with safe_open(str(args.gie_export), "pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
            metadata = f.metadata()
        if args.gie_from is None:
            settings = fusion_settings(gie, stored["priors"], fusion, candidates)
            metadata = {"format": FUSION_FORMAT, "config": json.dumps(settings)}
        else:  # only the GIE changes: the stored settings stay as they are
            config = read_g2face_config(args.gie_from)
            if asdict(config.gie) != asdict(gie):
                raise SystemExit(f"{args.gie_from}'s GIE configuration differs from {args.gie_export}'s")
            tensors = {k: v for k, v in tensors.items() if not k.startswith(GIE_PREFIXES)}
            tensors.update(gie_tensors(load_file(str(args.gie_from)), half=not args.full))
        tmp = args.out.with_name(f".{args.out.name}.part")
        save_file(tensors, str(tmp), metadata=metadata)
        tmp.replace(args.out)
        what = "its GIE replaced" if args.gie_from else "new settings"
        print(f"wrote {args.out} with {what} ({args.out.stat().st_size / 1e6:.1f} MB)")
        return
    config = read_g2face_config(args.gie_export)
    if config.name != "lite":
        raise SystemExit(f"{args.gie_export} is a {config.name!r} network; g2face-lite needs a lite GIE")
    settings = fusion_settings(config.gie, "lite", fusion, candidates)
    save_fusion_model(load_file(str(args.gie_export)), settings, args.out, half=not args.full)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
