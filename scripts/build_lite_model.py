"""Package a trained GIE as the geometric-fusion default model (`g2face-lite`).

    python scripts/build_lite_model.py RUN/model.safetensors src/g2face/weights/g2face-lite.safetensors

Takes the GIE part (f_dummy, f_mlp) of a `g2face train --stage gie` export and stores it with the
settings the anonymizer is rebuilt from (GIE configuration, prior family, fusion and candidate
settings); weight matrices in float16.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from safetensors.torch import load_file

from g2face.models.checkpoints import read_g2face_config, save_fusion_model
from g2face.models.fusion import FusionSettings
from g2face.models.fusion_anonymizer import CandidateSettings
from g2face.models.zoo import fusion_settings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("gie_export", type=Path, help="model.safetensors of a GIE training run")
    parser.add_argument("out", type=Path)
    parser.add_argument("--warp", type=float, default=FusionSettings.warp_strength)
    parser.add_argument("--candidates", type=int, default=CandidateSettings.count)
    parser.add_argument("--full", action="store_true", help="keep float32 weights")
    args = parser.parse_args()
    config = read_g2face_config(args.gie_export)
    if config.name != "lite":
        raise SystemExit(f"{args.gie_export} is a {config.name!r} network; g2face-lite needs a lite GIE")
    settings = fusion_settings(
        config.gie, "lite", FusionSettings(warp_strength=args.warp), CandidateSettings(count=args.candidates)
    )
    save_fusion_model(load_file(str(args.gie_export)), settings, args.out, half=not args.full)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
