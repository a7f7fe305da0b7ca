"""Building an evaluation from a YAML file and/or flags: the config, the methods and the networks.

```yaml
data: ../shared/data        # holds lfw/ and celeba/
out: runs/eval-baselines
limit: 100                  # omit for the full protocols
methods: [none, blur, {pixelate: {blocks_per_face: 8}}, box]
protocols: [lfw, celeba, utility, diversity, recovery, speed]
utility_limit: 500
```
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from g2face.evaluation.faces import FaceFinder
from g2face.evaluation.methods import Anonymizer, build_method
from g2face.evaluation.runner import EvalConfig, Toolkit

_PATHS = {"data", "out"}
_TUPLES = {"protocols", "white_box"}


def parse_methods(spec: list | str) -> list[Anonymizer]:
    """`"blur,box"`, or a list of names and `{name: {option: value}}` mappings."""
    items = spec.split(",") if isinstance(spec, str) else spec
    methods = []
    for item in items:
        if isinstance(item, dict):
            ((name, options),) = item.items()
            methods.append(build_method(name, **(options or {})))
        else:
            methods.append(build_method(str(item).strip()))
    return methods


def load_config(path: Path | None = None, **overrides) -> tuple[EvalConfig, list[Anonymizer]]:
    """The YAML file (if any), then non-None `overrides` on top; unknown keys are an error."""
    values = dict(yaml.safe_load(Path(path).read_text()) or {}) if path else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    methods = parse_methods(values.pop("methods", "none,blur,pixelate,box"))
    known = {f.name for f in dataclasses.fields(EvalConfig)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(
            f"unknown evaluation settings: {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
        )
    missing = {"data", "out"} - set(values)
    if missing:
        raise ValueError(f"say where the data is and where to write: missing {', '.join(sorted(missing))}")
    for k in _PATHS & set(values):
        values[k] = Path(values[k])
    for k in _TUPLES & set(values):
        v = values[k]
        values[k] = tuple(v.split(",") if isinstance(v, str) else v)
    return EvalConfig(**values), methods


def default_toolkit(device: str = "cpu", *, geometry: bool = True, perceptual: bool = True) -> Toolkit:
    """The lite configuration's networks: YuNet (and CenterFace, a second detector for the detection
    rate), FaceNet-CASIA (independent) and SFace (the lite model's training recognizer), MediaPipe
    geometry and LPIPS-HED, all fetched through the hub."""
    from g2face.detection.centerface import CenterFaceDetector
    from g2face.detection.yunet import YuNetDetector
    from g2face.priors.facenet import FaceNetEncoder
    from g2face.priors.sface import SFaceEncoder

    detector = YuNetDetector(device=device)
    toolkit = Toolkit(
        finder=FaceFinder(detector),
        recognizers=[FaceNetEncoder().to(device), SFaceEncoder().to(device)],
        detectors=[detector, CenterFaceDetector(device=device)],
    )
    if geometry:
        from g2face.priors.mediapipe_geometry import MediaPipeGeometry

        toolkit.geometry = MediaPipeGeometry(device=device)
    if perceptual:
        from g2face.priors.lpips_hed import LpipsHED

        toolkit.perceptual = LpipsHED().to(device)
    return toolkit
