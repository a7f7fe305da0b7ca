"""SFace (128-d face recogniser, OpenCV Zoo) as a readable PyTorch module.

The shipped network is a MobileNet-v1-style stack (3x3 stem, 13 depthwise-separable blocks, every
conv followed by BatchNorm and PReLU) with a BN -> fully-connected -> BN embedding head. It takes a
112x112 RGB crop aligned to the ArcFace 5-point template, pixel values 0..255, and normalises
(x - 127.5) / 128 itself. The asset is int8 block-quantised ONNX; `convert_sface` dequantises it
into fp32 safetensors once, cached by the hub.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from g2face import hub
from g2face.align import estimate_similarity
from g2face.priors.base import freeze, owned_tensor
from g2face.priors.crops import ARCFACE_TEMPLATE_112, ffhq_to_arcface, warp_affine

# (in, out, stride) of the depthwise-separable blocks, named conv_2 .. conv_14 in the ONNX graph.
SFACE_BLOCKS = (
    (32, 64, 1),
    (64, 128, 2),
    (128, 128, 1),
    (128, 256, 2),
    (256, 256, 1),
    (256, 512, 2),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 1024, 2),
    (1024, 1024, 1),
)
CONVERTER_TAG = "v1"
BN_NAMES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_var"}


class ConvBNPReLU(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)
        self.act = nn.PReLU(cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class DepthwiseSeparable(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.dw = ConvBNPReLU(cin, cin, 3, stride, groups=cin)
        self.pw = ConvBNPReLU(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pw(self.dw(x))


class SFaceNet(nn.Module):
    """ArcFace-aligned RGB crops [B, 3, 112, 112] in 0..255 -> raw 128-d embeddings (not normalised)."""

    def __init__(self):
        super().__init__()
        self.stem = ConvBNPReLU(3, 32, 3)
        self.blocks = nn.Sequential(*(DepthwiseSeparable(*spec) for spec in SFACE_BLOCKS))
        self.head_bn = nn.BatchNorm2d(1024, eps=2e-5)
        self.fc = nn.Linear(1024 * 7 * 7, 128)
        self.embedding_bn = nn.BatchNorm1d(128, eps=2e-5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.stem((x - 127.5) / 128))
        return self.embedding_bn(self.fc(self.head_bn(x).flatten(1)))


# ---------------------------------------------------------------- conversion from the shipped ONNX


def dequantize_blockwise(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int, block: int):
    """ONNX DequantizeLinear with block_size: element j along `axis` uses scale/zero point j // block."""
    idx = np.arange(q.shape[axis]) // block
    s, z = np.take(scale, idx, axis=axis), np.take(zero_point.astype(np.int32), idx, axis=axis)
    return ((q.astype(np.int32) - z) * s).astype(np.float32)


def _onnx_fp32_tensors(onnx_path: Path) -> dict[str, np.ndarray]:
    """Every weight of the graph in fp32, named as the tensor its Conv/Gemm/BN/PReLU consumes
    (minus the `_dequantized`/`_reshaped` suffixes of the quantisation chain)."""
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as e:  # only the one-time conversion needs it
        raise ImportError("converting SFace from ONNX needs the `onnx` package (pip install onnx)") from e
    graph = onnx.load(str(onnx_path)).graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            q, s, z = (tensors[n] for n in node.input)
            tensors[node.output[0]] = dequantize_blockwise(q, s, z, attrs["axis"], attrs["block_size"])
        elif node.op_type == "Reshape" and node.input[0] in tensors:
            tensors[node.output[0]] = tensors[node.input[0]].reshape(tensors[node.input[1]])
    out = {}
    for name, value in tensors.items():
        if value.dtype == np.float32:
            out[name.removesuffix("_reshaped").removesuffix("_dequantized")] = value
    return out


def _state_dict_from_onnx(onnx_path: Path) -> dict[str, Tensor]:
    w = _onnx_fp32_tensors(onnx_path)
    sd: dict[str, np.ndarray] = {}

    def bn(prefix: str, onnx_prefix: str) -> None:
        for ours, theirs in BN_NAMES.items():
            sd[f"{prefix}.{ours}"] = w[f"{onnx_prefix}_{theirs}"]

    def conv_bn_prelu(prefix: str, onnx_name: str) -> None:
        sd[f"{prefix}.conv.weight"] = w[f"{onnx_name}_conv2d_weight"]
        bn(f"{prefix}.bn", f"{onnx_name}_batchnorm")
        sd[f"{prefix}.act.weight"] = w[f"{onnx_name}_relu_gamma"].reshape(-1)

    conv_bn_prelu("stem", "conv_1")
    for i in range(len(SFACE_BLOCKS)):
        conv_bn_prelu(f"blocks.{i}.dw", f"conv_{i + 2}_dw")
        conv_bn_prelu(f"blocks.{i}.pw", f"conv_{i + 2}")
    bn("head_bn", "bn1")
    sd["fc.weight"], sd["fc.bias"] = w["pre_fc1_weight"], w["pre_fc1_bias"]
    bn("embedding_bn", "fc1")
    return {k: owned_tensor(v) for k, v in sd.items()}


def convert_sface(onnx_path: Path, out_path: Path) -> None:
    """Dequantise the shipped int8 ONNX into an fp32 safetensors state dict of `SFaceNet`."""
    sd = _state_dict_from_onnx(onnx_path)
    _load_checked(SFaceNet(), sd)  # names and shapes checked before anything is written
    save_file(sd, str(out_path), metadata={"source": Path(onnx_path).name, "converter": CONVERTER_TAG})


def sface_weights_path() -> Path:
    return hub.converted_path(
        "sface",
        "sface_fp32.safetensors",
        build=lambda out: convert_sface(hub.asset_path("sface"), out),
        tag=CONVERTER_TAG,
    )


def _load_checked(net: nn.Module, sd: dict[str, Tensor]) -> None:
    missing, unexpected = net.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]  # not stored: eval only
    if missing or unexpected:
        raise ValueError(f"SFace weights do not fit the module: missing {missing}, unexpected {unexpected}")


def load_sface_net(weights: Path | None = None) -> SFaceNet:
    net = SFaceNet()
    _load_checked(net, load_file(str(weights or sface_weights_path())))
    return freeze(net)


def fold_quantized_onnx(onnx_path: Path, out_path: Path) -> None:
    """Reference model for parity: the shipped graph with its DequantizeLinear/Reshape chains evaluated
    by `onnx.reference` into fp32 initializers, which OpenCV 5 and onnxruntime accept."""
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    model = onnx.load(str(onnx_path))
    graph = model.graph
    chain, chain_outputs = [], set()
    for n in graph.node:
        if n.op_type == "DequantizeLinear" or (n.op_type == "Reshape" and n.input[0] in chain_outputs):
            chain.append(n)
            chain_outputs.add(n.output[0])
    consumed = {i for n in chain for i in n.input}
    finals = sorted(chain_outputs - consumed)
    sub = helper.make_graph(
        chain,
        "fold",
        [],
        [helper.make_value_info(o, onnx.TypeProto()) for o in finals],
        list(graph.initializer),
    )
    values = ReferenceEvaluator(helper.make_model(sub, opset_imports=model.opset_import)).run(None, {})
    used = {i for n in graph.node if n not in chain for i in n.input}
    keep_nodes = [n for n in graph.node if n not in chain]
    initializers = [t for t in graph.initializer if t.name in used]
    initializers += [numpy_helper.from_array(v, o) for o, v in zip(finals, values, strict=True)]
    del graph.node[:], graph.initializer[:]
    graph.node.extend(keep_nodes)
    graph.initializer.extend(initializers)
    inputs = [i for i in graph.input if i.name not in {t.name for t in initializers} and i.name in used]
    del graph.input[:]
    graph.input.extend(inputs)
    onnx.save(model, str(out_path))


def sface_reference_onnx_path() -> Path:
    """The folded fp32 ONNX of SFace (for OpenCV FaceRecognizerSF / onnxruntime parity)."""
    return hub.converted_path(
        "sface",
        "sface_folded_fp32.onnx",
        build=lambda out: fold_quantized_onnx(hub.asset_path("sface"), out),
        tag="v1",
    )


# ---------------------------------------------------------------- the IdentityEncoder


class SFaceEncoder(nn.Module):
    """`IdentityEncoder` for G2Face crops: [B, 3, S, S] in [-1, 1] (FFHQ framing) -> unit 128-d.

    A fixed affine warp (no re-detection) takes the FFHQ-framed crop to SFace's ArcFace-template
    112 crop, so gradients flow from the embedding to every input pixel.
    """

    name = "sface"
    embedding_dim = 128

    def __init__(
        self,
        crop_size: int = 256,
        weights: Path | None = None,
        antialias: bool = True,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.net = load_sface_net(weights)
        self.to_arcface = ffhq_to_arcface(crop_size, 112, antialias)
        freeze(self.to(device, dtype))

    def forward(self, crops: Tensor) -> Tensor:
        return self.embed_aligned((self.to_arcface(crops) + 1) * 127.5)

    def embed_aligned(self, arcface_crops: Tensor) -> Tensor:
        """ArcFace-aligned RGB 112 crops in 0..255 -> unit embeddings."""
        return F.normalize(self.net(arcface_crops), dim=1)

    def embed_photo(self, images: Tensor, landmarks: Tensor | np.ndarray) -> Tensor:
        """The standard path on any photo, like OpenCV's alignCrop + feature: RGB images
        [B, 3, H, W] in 0..255 and 5 landmarks [B, 5, 2] (pixels, YuNet order) -> unit embeddings."""
        points = torch.as_tensor(landmarks).detach().cpu().double().numpy()
        matrices = np.stack([estimate_similarity(lm, ARCFACE_TEMPLATE_112) for lm in points])
        return self.embed_aligned(warp_affine(images, matrices, 112))
