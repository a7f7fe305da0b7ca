"""Named models: the priors each configuration family uses, untrained models for training and
tests, and trained models loaded from weights files.

A weights file is what `save_g2face` writes (safetensors with the network configuration as
metadata); the configuration name inside it says which priors (identity, geometry, generator) the
network was trained with, so loading rebuilds exactly those.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from g2face import hub
from g2face.models.anonymizer import G2FaceModel
from g2face.models.base import FaceAnonymizer
from g2face.models.checkpoints import (
    FUSION_FORMAT,
    GIE_PREFIXES,
    WeightsFileError,
    load_fusion_model,
    load_g2face,
    read_g2face_config,
    weights_format,
)
from g2face.models.config import PRESETS, G2FaceNetConfig, GIEConfig
from g2face.models.fusion import FusionSettings
from g2face.models.fusion_anonymizer import (
    GENDER_PROBE_KEYS,
    PROBE_KEYS,
    CandidateSettings,
    FusionAnonymizer,
)
from g2face.models.g2face import G2FaceNet
from g2face.models.generator_api import style_group_sizes
from g2face.models.gie import EXPRESSION_KEYS, GIE, POSE_KEYS, ExpressionCorrection, PoseCorrection
from g2face.models.stylegan2 import StyleGAN2Synthesis
from g2face.payload import PayloadCodec
from g2face.payload.layouts import ReferenceFloatPayload, RepeatedPayload
from g2face.priors.base import GenerativePrior, GeometryEncoder, IdentityEncoder, PerceptualDistance, freeze

PACKAGED_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
"""Trained weights shipped inside the package, `<name>.safetensors` (with a model card)."""


PayloadLayout = PayloadCodec | RepeatedPayload | ReferenceFloatPayload

PAPER_MODELS = {"g2face-paper": None, "g2face-paper-reference": "reference"}
"""Names of the imported paper model, by compat mode: `-reference` is the reference's insecure
behaviour (raw float payload, whole-image framing), for reproducing its numbers only."""


class ModelNotAvailableError(RuntimeError):
    """A named model or prior family whose weights are not available here."""


@dataclass(frozen=True)
class Priors:
    """Frozen priors of one family. `generator` is the pretrained prior as shipped; a G2Face
    network fine-tunes a copy of it (`trainable_generator`)."""

    generator: GenerativePrior
    identity: IdentityEncoder
    geometry: GeometryEncoder
    perceptual: PerceptualDistance | None

    def trainable_generator(self) -> nn.Module:
        """A copy of the generator with its fine-tunable parameters marked trainable."""
        if hasattr(self.generator, "trainable_copy"):
            return self.generator.trainable_copy()
        twin = copy.deepcopy(self.generator)
        twin.train()
        twin.requires_grad_(True)
        return twin

    def to(self, device: torch.device | str) -> Priors:
        for prior in (self.generator, self.identity, self.geometry, self.perceptual):
            if isinstance(prior, nn.Module):
                prior.to(device)
        return self


def _tiny_priors(config: G2FaceNetConfig, seed: int) -> Priors:
    from g2face.priors.tiny import TinyGeometryEncoder, TinyIdentityEncoder, TinyPerceptual

    if config.stylegan2 is None:
        raise ValueError(f"tiny priors need a StyleGAN2 configuration, {config.name!r} has none")
    geo = config.gie.geometry_dim - 3
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = freeze(StyleGAN2Synthesis(config.stylegan2))
    return Priors(
        generator=generator,
        identity=TinyIdentityEncoder(config.gie.identity_dim, seed=seed),
        geometry=TinyGeometryEncoder(shape_dim=geo // 2, expression_dim=geo - geo // 2, seed=seed + 1),
        perceptual=TinyPerceptual(seed=seed + 2),
    )


def _lite_priors(perceptual: bool) -> Priors:
    """The offline priors, fetched through the asset hub on first use."""
    from g2face.priors.lpips_hed import LpipsHED
    from g2face.priors.mediapipe_geometry import MediaPipeGeometry
    from g2face.priors.mobilestylegan import load_mobilestylegan
    from g2face.priors.sface import SFaceEncoder

    generator = load_mobilestylegan()
    return Priors(
        generator,
        SFaceEncoder(crop_size=generator.output_resolution),
        MediaPipeGeometry(),
        LpipsHED() if perceptual else None,
    )


def _paper_priors(perceptual: bool, compat: str | None) -> Priors:
    """The paper's priors, from the files `g2face weights import-official` converted."""
    from g2face.models.official import PAPER_MODEL
    from g2face.priors.arcface import ArcFaceEncoder
    from g2face.priors.deep3d import Deep3DGeometry

    try:
        files, _ = hub.imported_files(PAPER_MODEL)
    except hub.HubError as e:
        raise ModelNotAvailableError(str(e)) from None
    generator = StyleGAN2Synthesis(PRESETS["paper"].stylegan2)
    generator.load_state_dict(load_file(str(files["stylegan2.safetensors"])))
    perceptual_prior = None
    if perceptual:
        from g2face.priors.lpips_hed import LpipsHED

        perceptual_prior = LpipsHED()
    return Priors(
        freeze(generator),
        ArcFaceEncoder(files["arcface.safetensors"], crop_size=generator.output_resolution, compat=compat),
        Deep3DGeometry(files["deep3d.safetensors"], files["bfm.safetensors"], compat=compat),
        perceptual_prior,
    )


def build_priors(
    name: str, config: G2FaceNetConfig, seed: int = 0, *, perceptual: bool = True, compat: str | None = None
) -> Priors:
    """The priors of a family: `tiny` (random stand-ins, for tests), `lite` (offline assets) or
    `paper` (the authors' files, once imported; `compat="reference"` frames the crops as the
    reference code does). Inference needs no perceptual distance (`perceptual=False`)."""
    if compat is not None and name != "paper":
        raise ValueError(f"compat={compat!r} applies to the paper priors only, not {name!r}")
    if name == "tiny":
        return _tiny_priors(config, seed)
    if name == "lite":
        return _lite_priors(perceptual)
    if name == "paper":
        return _paper_priors(perceptual, compat)
    raise ModelNotAvailableError(f"unknown priors {name!r}; known: tiny, lite, paper")


def codec_for(config: G2FaceNetConfig, compat: str | None = None) -> PayloadLayout:
    """The payload layout of a configuration: the secure codec, repeated over a larger bit budget
    (the paper's 512 x 32 slots), or with `compat="reference"` the reference's raw float bits."""
    if compat == "reference":
        return ReferenceFloatPayload(config.gie.identity_dim)
    if compat is not None:
        raise ValueError(f"unknown compat mode {compat!r} (known: reference)")
    codec = PayloadCodec(embedding_dim=config.gie.identity_dim)
    if codec.n_bits == config.n_bits:
        return codec
    if codec.n_bits < config.n_bits:
        return RepeatedPayload(codec, config.n_bits)
    raise ValueError(f"configuration {config.name!r} carries {config.n_bits} bits; its codec {codec.n_bits}")


def tiny_config() -> G2FaceNetConfig:
    """The tiny test configuration, sized to carry a full payload of its identity dimension."""
    tiny = PRESETS["tiny"]
    return dataclasses.replace(tiny, n_bits=PayloadCodec(tiny.gie.identity_dim).n_bits)


def build_model(config: G2FaceNetConfig, *, seed: int = 0) -> G2FaceModel:
    """An untrained model (random new parts) of a configuration: for training and tests."""
    priors = build_priors(config.name, config, seed, perceptual=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = G2FaceNet(config, None if config.stylegan2 else priors.trainable_generator())
    return G2FaceModel(net.eval(), priors.identity, priors.geometry, codec_for(config))


def _weights_file(name_or_path: str | Path) -> Path:
    if name_or_path in PAPER_MODELS:
        from g2face.models.official import PAPER_MODEL

        try:
            return hub.imported_files(PAPER_MODEL)[0]["g2face.safetensors"]
        except hub.HubError as e:
            raise ModelNotAvailableError(str(e)) from None
    path = Path(name_or_path)
    if path.suffix == ".safetensors" or path.exists():
        if not path.is_file():
            raise ModelNotAvailableError(f"model weights file {path} does not exist")
        return path
    packaged = PACKAGED_WEIGHTS / f"{name_or_path}.safetensors"
    if packaged.is_file():
        return packaged
    shipped = sorted(p.stem for p in PACKAGED_WEIGHTS.glob("*.safetensors"))
    raise ModelNotAvailableError(
        f"no model named {str(name_or_path)!r} is shipped with this release "
        f"(shipped: {', '.join(shipped) or 'none yet'}); pass a weights file written by `g2face train`"
    )


def fusion_settings(
    gie: GIEConfig,
    priors: str,
    fusion: FusionSettings | None = None,
    candidates: CandidateSettings | None = None,
) -> dict:
    """The JSON settings stored with a geometric-fusion model (what `load_model` rebuilds it from)."""
    return {
        "name": "g2face-lite" if priors == "lite" else f"fusion-{priors}",
        "priors": priors,
        "gie": dataclasses.asdict(gie),
        "fusion": dataclasses.asdict(fusion or FusionSettings()),
        "candidates": dataclasses.asdict(candidates or CandidateSettings()),
    }


def _with_overrides(kind: type, stored: dict, override: object | None):
    """Settings of `kind` from a model file's stored values, replaced by an `override` instance or
    updated field by field by an `override` dict (a user's `--warp` keeps the stored mask)."""
    if isinstance(override, kind):
        return override
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()}
    return kind(**(values | dict(override or {})))


def build_fusion_anonymizer(
    state: dict[str, torch.Tensor],
    settings: dict,
    *,
    priors: Priors | None = None,
    fusion: FusionSettings | dict | None = None,
    candidates: CandidateSettings | dict | None = None,
    attributes: str = "keep",
) -> FusionAnonymizer:
    """A geometric-fusion anonymizer from GIE tensors and stored settings; `fusion` / `candidates`
    replace the stored ones (an instance) or update some of their fields (a dict: a user's
    `--warp` or `--candidates`). `attributes` "keep"
    chooses dummies of the original's apparent gender and age (dlib-cydral estimator), "free" not."""
    if attributes not in ("keep", "free"):
        raise ValueError(f"attributes must be 'keep' or 'free', got {attributes!r}")
    gie_config = GIEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings["gie"].items()})
    if priors is None:
        if settings["priors"] != "lite":
            raise ModelNotAvailableError(f"geometric fusion with {settings['priors']!r} priors is not built")
        priors = _lite_priors(perceptual=False)
    generator = priors.generator
    groups = style_group_sizes(
        generator.style_resolutions(), gie_config.low_max_resolution, gie_config.mid_max_resolution
    )
    gie = GIE(gie_config, generator.style_dim, groups)
    # A learned network's weights file holds the GIE too: take just its part.
    gie.load_state_dict({k: v.float() for k, v in state.items() if k.startswith(GIE_PREFIXES)})
    fusion = _with_overrides(FusionSettings, settings.get("fusion", {}), fusion)
    candidates = _with_overrides(CandidateSettings, settings.get("candidates", {}), candidates)
    judges = candidates.second_judge == "dlib-resnet"
    reads_gender = attributes == "keep" and all(k in state for k in GENDER_PROBE_KEYS)
    dlib_descriptor = None  # one dlib recogniser for both its uses
    if judges or reads_gender:
        from g2face.priors.dlib_face import DlibFaceEncoder

        dlib_descriptor = DlibFaceEncoder(crop_size=generator.output_resolution)
    estimator, probe = None, None
    if attributes == "keep":
        from g2face.priors.attributes import DlibAgeGenderEstimator, ProbedGenderEstimator

        estimator = DlibAgeGenderEstimator(crop_size=generator.output_resolution)
        if reads_gender:
            weight, bias = (state[k].float() for k in GENDER_PROBE_KEYS)
            gender_probe = nn.Linear(weight.shape[1], 1)
            gender_probe.load_state_dict({"weight": weight, "bias": bias})
            estimator = ProbedGenderEstimator(estimator, dlib_descriptor, gender_probe)
        if all(k in state for k in PROBE_KEYS):
            weight, bias = (state[k].float() for k in PROBE_KEYS)
            probe = nn.Linear(weight.shape[1], weight.shape[0])
            probe.load_state_dict({"weight": weight, "bias": bias})
    pose_correction = None
    if all(k in state for k in POSE_KEYS):
        pose_correction = PoseCorrection(generator.style_dim, groups[0] + groups[1])
        pose_correction.load_state_dict({k.split(".", 1)[1]: state[k].float() for k in POSE_KEYS})
    expression_correction = None
    if all(k in state for k in EXPRESSION_KEYS):
        expression_correction = ExpressionCorrection(generator.style_dim, groups[0] + groups[1])
        expression_correction.load_state_dict({k.split(".", 1)[1]: state[k].float() for k in EXPRESSION_KEYS})
    return FusionAnonymizer(
        gie.eval(),
        generator,
        priors.identity,
        priors.geometry,
        PayloadCodec(embedding_dim=gie_config.identity_dim),
        fusion=fusion,
        candidates=candidates,
        attributes=estimator,
        attribute_probe=probe,
        second_identity=dlib_descriptor if judges else None,
        pose_correction=pose_correction,
        expression_correction=expression_correction,
    )


def load_model(
    name_or_path: str | Path,
    *,
    device: str | torch.device = "cpu",
    fusion: FusionSettings | dict | None = None,
    candidates: CandidateSettings | dict | None = None,
    attributes: str = "keep",
) -> FaceAnonymizer:
    """A trained anonymizer: a packaged name (e.g. "g2face-lite") or a weights file — a learned
    G2Face network written by training, or a geometric-fusion model (GIE weights + settings)."""
    path = _weights_file(name_or_path)
    try:
        kind = weights_format(path)
        if kind == FUSION_FORMAT:
            state, settings = load_fusion_model(path)
            return build_fusion_anonymizer(
                state, settings, fusion=fusion, candidates=candidates, attributes=attributes
            ).to(device)
        config = read_g2face_config(path)
        compat = PAPER_MODELS.get(str(name_or_path))
        codec = codec_for(config, compat)
        priors = build_priors(config.name, config, perceptual=False, compat=compat)
        net = load_g2face(path, None if config.stylegan2 else priors.trainable_generator(), device=device)
    except (WeightsFileError, ValueError) as e:  # one line each; a bad file is not a bug
        raise ModelNotAvailableError(f"cannot load model {path}: {e}") from None
    return G2FaceModel(net.eval(), priors.identity, priors.geometry, codec).to(device)
