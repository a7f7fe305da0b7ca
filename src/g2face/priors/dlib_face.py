"""dlib's ResNet face recogniser (dlib-models `dlib_face_recognition_resnet_model_v1`, CC0; 99.38 %
on LFW) in plain PyTorch: a second identity judge for choosing dummies, of another family and
training set than SFace (`FusionAnonymizer`'s `second_identity`).

The weights are read straight out of dlib's serialised network (no dlib needed at run time): the
file holds each layer's details innermost first, and the converter takes the parameter tensors of
its 29 `con_` and `affine_` layers and of the final `fc_` in that order. The architecture is dlib's
`dnn_face_recognition_ex` network: a 7x7 stride-2 stem, max pool, 14 residual blocks (32 ... 256
channels; dlib's unpadded stride-2 downsampling, `dlib_layers`), global average, 128-d projection.
Input: a 150 px chip cut as dlib's `get_face_chip(…, 150, 0.25)` would, here by a fixed warp from
the FFHQ-framed crop (`dlib_layers.ffhq_to_dlib_chip`), RGB (x - mean) / 256. dlib compares faces by the
Euclidean distance of the raw descriptors (same person below 0.6); `DlibFaceEncoder` returns them
L2-normalised like every `IdentityEncoder`, and `raw_descriptors` as dlib gives them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from g2face import hub
from g2face.priors.base import freeze
from g2face.priors.dlib_layers import ConvAffine, DlibNormalise, DlibResidual, ffhq_to_dlib_chip

ASSET = "dlib-face-recognition"
CONVERTER_TAG = "v1"
CHIP_SIZE = 150
CHIP_PADDING = 0.25  # dlib's get_face_chip default, which the recogniser's examples use
EMBEDDING_DIM = 128
SAME_PERSON_DISTANCE = 0.6
"""dlib's documented threshold on the raw descriptors' Euclidean distance."""

# (in, out, downsample) of the residual blocks, input side first (alevel4 ... alevel0).
BLOCKS = (
    (32, 32, False), (32, 32, False), (32, 32, False),
    (32, 64, True), (64, 64, False), (64, 64, False), (64, 64, False),
    (64, 128, True), (128, 128, False), (128, 128, False),
    (128, 256, True), (256, 256, False), (256, 256, False),
    (256, 256, True),
)  # fmt: skip


class DlibFaceNet(nn.Module):
    """150 px chip, normalised (RGB - mean) / 256 -> raw 128-d descriptor."""

    def __init__(self):
        super().__init__()
        self.stem = ConvAffine(3, 32, 7, 2, 0)
        self.blocks = nn.Sequential(*(DlibResidual(cin, cout, down) for cin, cout, down in BLOCKS))
        self.fc = nn.Linear(256, EMBEDDING_DIM, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        return self.fc(self.blocks(x).mean(dim=(2, 3)))


class _DlibReader:
    """Reads dlib's serialisation: integers as a control byte (byte count, 0x80 = negative) and
    little-endian bytes; strings as a length and characters; tensors as version 2, four
    dimensions and raw little-endian float32."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def integer(self) -> int:
        control = self.data[self.pos]
        count = control & 0x0F
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + count], "little")
        self.pos += 1 + count
        return -value if control & 0x80 else value

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            raise ValueError(f"unknown dlib tensor version {version}")
        dims = [self.integer() for _ in range(4)]
        count = int(np.prod(dims))
        values = np.frombuffer(self.data, "<f4", count, self.pos)
        self.pos += 4 * count
        return values.reshape(dims)


LAYER_TAGS = {b"con_4": 0, b"affine_": 0, b"fc_2": 2}
"""The serialised layers with parameters: each is its name string (length-prefixed), this many
integers (fc_: its output and input counts), then its parameter tensor."""


def read_dlib_layers(path: Path) -> list[tuple[str, np.ndarray]]:
    """(layer name, flat parameters) of every `LAYER_TAGS` layer in a dlib network file, in file
    order (innermost, i.e. input side, first)."""
    data = path.read_bytes()
    layers, pos = [], 0
    while True:
        # A layer's name as dlib writes it: a one-byte length integer, then the characters. (Float
        # data could only mimic one by chance; the layer counts and the parity test would show it.)
        found = [(data.find(bytes([1, len(t)]) + t, pos), t) for t in LAYER_TAGS]
        found = [(at, t) for at, t in found if at >= 0]
        if not found:
            return layers
        at, tag = min(found)
        reader = _DlibReader(data)
        reader.pos = at + 2 + len(tag)
        for _ in range(LAYER_TAGS[tag]):
            reader.integer()
        layers.append((tag.decode(), reader.tensor().ravel()))
        pos = reader.pos


def convert_dlib_face(dat_path: Path, out_path: Path) -> None:
    """dlib's serialised recogniser -> a safetensors state dict of `DlibFaceNet`."""
    layers = read_dlib_layers(dat_path)
    convs = [p for name, p in layers if name == "con_4"]
    affines = [p for name, p in layers if name == "affine_"]
    fcs = [p for name, p in layers if name == "fc_2"]
    if (len(convs), len(affines), len(fcs)) != (29, 29, 1):
        raise ValueError(f"{dat_path} is not dlib's ResNet face recogniser: {len(convs)} conv layers")
    net = DlibFaceNet()
    modules = [net.stem] + [m for block in net.blocks for m in (block.first, block.second)]
    state = {}
    for index, (module, conv, affine) in enumerate(zip(modules, convs, affines, strict=True)):
        name = "stem" if index == 0 else f"blocks.{(index - 1) // 2}.{'first' if index % 2 else 'second'}"
        weight = module.conv.weight
        n_weight = weight.numel()
        state[f"{name}.conv.weight"] = torch.from_numpy(conv[:n_weight].reshape(weight.shape).copy())
        state[f"{name}.conv.bias"] = torch.from_numpy(conv[n_weight:].copy())
        channels = weight.shape[0]
        state[f"{name}.scale"] = torch.from_numpy(affine[:channels].reshape(1, -1, 1, 1).copy())
        state[f"{name}.offset"] = torch.from_numpy(affine[channels:].reshape(1, -1, 1, 1).copy())
    # dlib's fc_ stores [inputs, outputs]; nn.Linear wants [outputs, inputs].
    state["fc.weight"] = torch.from_numpy(fcs[0].reshape(256, EMBEDDING_DIM).T.copy())
    net.load_state_dict(state)  # names and shapes checked before anything is written
    save_file(state, str(out_path), metadata={"converter": CONVERTER_TAG})


def weights_path() -> Path:
    def build(out: Path) -> None:
        convert_dlib_face(hub.fetch(ASSET) / "dlib_face_recognition_resnet_model_v1.dat", out)

    return hub.converted_path(ASSET, "dlib_face_recognition.safetensors", build, tag=CONVERTER_TAG)


class DlibFaceEncoder(nn.Module):
    """`IdentityEncoder` with dlib's recogniser: aligned G2Face crops [B, 3, S, S] in [-1, 1] ->
    L2-normalised 128-d embeddings."""

    name = "dlib-resnet"
    embedding_dim = EMBEDDING_DIM

    def __init__(
        self,
        crop_size: int = 256,
        weights: Path | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.net = DlibFaceNet()
        self.net.load_state_dict(load_file(str(weights or weights_path())))
        self.to_chip = ffhq_to_dlib_chip(crop_size, CHIP_SIZE, CHIP_PADDING)
        self.normalise = DlibNormalise()
        freeze(self.to(device, dtype))

    def descriptors_of_chips(self, chips_0_255: Tensor) -> Tensor:
        """dlib's raw descriptors of 150 px RGB chips in 0..255 [B, 3, 150, 150]."""
        return self.net(self.normalise(chips_0_255))

    def raw_descriptors(self, crops: Tensor) -> Tensor:
        """dlib's raw descriptors (compare by Euclidean distance, `SAME_PERSON_DISTANCE`)."""
        return self.descriptors_of_chips(self.to_chip((crops + 1) * 127.5))

    def forward(self, crops: Tensor) -> Tensor:
        return F.normalize(self.raw_descriptors(crops), dim=1)
