"""MobileStyleGAN FFHQ-1024 (Belousov 2021) as readable PyTorch modules: the `lite` generative prior.

The shipped network (OpenVINO IR in the `random-face` wheel) is a StyleGAN2 distilled into a
wavelet generator: a learned 4x4 constant, one style-modulated 3x3 conv, then seven blocks that each
upsample by an inverse Haar wavelet transform (IDWT) and apply two style-modulated depthwise-separable
3x3 convs. A last modulated 1x1 conv predicts the Haar coefficients (LL, LH, HL, HH of RGB) of the
1024 image at 512x512, and a final IDWT gives RGB in about [-1, 1].

Facts read from the IR, which the modules reproduce:
* Demodulation uses a fixed per-layer statistic in MobileStyleGAN, so the export folded it into the
  conv weights; modulation is a per-channel scale of the input (style affine x 1/sqrt(fan_in)).
* Noise is not an input: each conv adds a constant [1, 1, H, W] map (noise x strength, baked in at
  export). It is kept as a buffer, so sampling is deterministic given z.
* Only the last block's to-image head survives in the export (the intermediate ones are dead code
  for the 1024 output and were pruned), so there is no native 256 output. A 256 (or 512) output is
  obtained exactly: the 2x2 mean of the 1024 image is half the LL band, so area-downsampling the
  1024 image equals computing only the head's 3 LL rows at 512 and pooling those. Stopping earlier
  is not faithful; docs/generator.md has the measured trade-off.

Style inputs (W+): the original code indexes 23 style rows, of which only 16 reach the shipped
output (six fed the pruned to-image heads, one was never read). Here n_styles = 16: [0] the 4x4
conv, then for each resolution 8..512 two rows (upsampling + first conv, second conv), and [15] the
to-image head.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from g2face.priors.base import FuseHook, freeze, owned_tensor
from g2face.priors.openvino_ir import IRGraph, IRNode

SHIPPED_CHANNELS = (512, 512, 512, 512, 512, 256, 128, 64)  # feature channels at 4, 8, ..., 512
STYLE_DIM = 512
LRELU_SLOPE = 0.2
CONVERTER_TAG = "v1"
W_AVG_SAMPLES = 100_000
W_AVG_SEED = 0

# Haar synthesis with the filters of the shipped IDWT (low = [1, 1]/sqrt2, high = [1, -1]/sqrt2):
# row k = band (LL, high rows, high columns, high both), column = sub-pixel (a, b) of each 2x2 cell.
_HAAR_SYNTHESIS = 0.5 * torch.tensor(
    [
        [1.0, 1.0, 1.0, 1.0],
        [1.0, 1.0, -1.0, -1.0],
        [1.0, -1.0, 1.0, -1.0],
        [1.0, -1.0, -1.0, 1.0],
    ]
)


def haar_synthesis_weight(channels: int) -> Tensor:
    """The grouped 1x1 conv weight [4C, 4, 1, 1] of `haar_idwt` for C output channels."""
    return _HAAR_SYNTHESIS.T.reshape(4, 4, 1, 1).repeat(channels, 1, 1, 1)


def haar_idwt(coeffs: Tensor, weight: Tensor | None = None) -> Tensor:
    """[B, 4C, H, W] Haar coefficients (C low-pass, then 3C high-pass as c*3 + band) -> [B, C, 2H, 2W].
    `weight`: `haar_synthesis_weight(C)` if precomputed (a constant in an exported graph)."""
    b, c4, h, w = coeffs.shape
    c = c4 // 4
    bands = torch.cat([coeffs[:, :c, None], coeffs[:, c:].reshape(b, c, 3, h, w)], dim=2).reshape(b, c4, h, w)
    # Per channel, a 1x1 conv from its 4 bands to its 4 sub-pixels, then depth-to-space: the fastest
    # of the exact forms on CPU (an einsum or a strided transposed conv is 1.5-2.5x slower).
    weight = haar_synthesis_weight(c).to(coeffs) if weight is None else weight
    return F.pixel_shuffle(F.conv2d(bands, weight, groups=c), 2)


class MappingNetwork(nn.Module):
    """z -> w: pixel norm, then 8 x (linear, leaky ReLU 0.2, gain sqrt 2)."""

    def __init__(self, style_dim: int = STYLE_DIM, n_layers: int = 8):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(style_dim, style_dim) for _ in range(n_layers))

    def forward(self, z: Tensor) -> Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = F.leaky_relu(layer(x), LRELU_SLOPE) * math.sqrt(2.0)
        return x


class StyledConv(nn.Module):
    """Style-modulated 3x3 conv (full, or depthwise + pointwise) + fixed noise + bias + leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, resolution: int, style_dim: int, depthwise: bool):
        super().__init__()
        self.depthwise = depthwise
        self.modulation = nn.Linear(style_dim, in_channels)
        nn.init.ones_(self.modulation.bias)
        if depthwise:
            self.weight_dw = nn.Parameter(torch.randn(in_channels, 1, 3, 3) / 3.0)
            self.weight_pw = nn.Parameter(
                torch.randn(out_channels, in_channels, 1, 1) / math.sqrt(in_channels)
            )
        else:
            self.weight = nn.Parameter(
                torch.randn(out_channels, in_channels, 3, 3) / math.sqrt(9 * in_channels)
            )
        self.register_buffer("noise", torch.zeros(1, 1, resolution, resolution))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        modulation = self.modulation(style)
        if self.depthwise:
            # Scaling the input channels = scaling each sample's depthwise filters: one grouped conv
            # over the batch instead of an extra pass over the feature map.
            b, c, h, w = x.shape
            weight_dw = (self.weight_dw[None] * modulation[:, :, None, None, None]).reshape(b * c, 1, 3, 3)
            x = F.conv2d(x.reshape(1, b * c, h, w), weight_dw, padding=1, groups=b * c).reshape(b, c, h, w)
            x = F.conv2d(x, self.weight_pw, self.bias)
        else:
            x = F.conv2d(x * modulation[:, :, None, None], self.weight, self.bias, padding=1)
        # In place: at 512x512x64 a fresh output tensor costs more in page faults than the op itself.
        return F.leaky_relu_(x.add_(self.noise), LRELU_SLOPE)


class WaveletUpsample(nn.Module):
    """Modulate the C feature channels, read them as Haar coefficients of C/4 channels, invert: 2x."""

    def __init__(self, channels: int, style_dim: int):
        super().__init__()
        self.modulation = nn.Linear(style_dim, channels)
        nn.init.ones_(self.modulation.bias)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        return haar_idwt(x * self.modulation(style)[:, :, None, None])


class ToWavelets(nn.Module):
    """Modulated 1x1 conv to the 12 Haar coefficients (LL RGB, then 3 high bands per RGB channel)."""

    def __init__(self, in_channels: int, style_dim: int):
        super().__init__()
        self.modulation = nn.Linear(style_dim, in_channels)
        nn.init.ones_(self.modulation.bias)
        self.weight = nn.Parameter(torch.randn(12, in_channels) / math.sqrt(in_channels))
        self.bias = nn.Parameter(torch.zeros(12))

    def forward(self, x: Tensor, style: Tensor, low_pass_only: bool = False) -> Tensor:
        n_out = 3 if low_pass_only else 12
        # Per-sample weights (modulation folded in) avoid a pass over the wide input feature map.
        weight = self.weight[None, :n_out] * self.modulation(style)[:, None, :]
        return torch.einsum("bchw,boc->bohw", x, weight) + self.bias[:n_out, None, None]


class SynthesisBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, resolution: int, style_dim: int):
        super().__init__()
        self.up = WaveletUpsample(in_channels, style_dim)
        self.conv1 = StyledConv(in_channels // 4, out_channels, resolution, style_dim, depthwise=True)
        self.conv2 = StyledConv(out_channels, out_channels, resolution, style_dim, depthwise=True)

    def forward(self, x: Tensor, style_up: Tensor, style_conv2: Tensor) -> Tensor:
        return self.conv2(self.conv1(self.up(x, style_up), style_up), style_conv2)


class SynthesisNetwork(nn.Module):
    """W+ [B, n_styles, style_dim] -> RGB at any power-of-two resolution up to 2x the last features.

    The modules below are the reference and the differentiable path. A pooled output (below the full
    resolution) on the CPU without autograd or fuse hook, the shipped inference use, goes to
    `mobilestylegan_fast.synthesize_pooled` (same numbers up to float rounding, ~3e-6, parity-tested);
    `fast_inference = False` on an instance keeps such calls on the reference modules."""

    fast_inference = True

    def __init__(self, channels: Sequence[int] = SHIPPED_CHANNELS, style_dim: int = STYLE_DIM):
        super().__init__()
        self.channels = tuple(channels)
        self.resolutions = tuple(4 * 2**i for i in range(len(self.channels)))
        self.input = nn.Parameter(torch.randn(1, self.channels[0], 4, 4))
        self.conv = StyledConv(self.channels[0], self.channels[0], 4, style_dim, depthwise=False)
        self.blocks = nn.ModuleList(
            SynthesisBlock(cin, cout, res, style_dim)
            for cin, cout, res in zip(
                self.channels[:-1], self.channels[1:], self.resolutions[1:], strict=True
            )
        )
        self.to_wavelets = ToWavelets(self.channels[-1], style_dim)
        self.n_styles = 2 * len(self.blocks) + 2
        self.full_resolution = 2 * self.resolutions[-1]

    def style_resolutions(self) -> list[int]:
        return [4, *(r for r in self.resolutions[1:] for _ in range(2)), self.resolutions[-1]]

    def pooling_factor(self, resolution: int) -> int:
        """How much the head's LL band (at the last feature resolution) is area-pooled to give a
        `resolution` image below the full one."""
        factor = self.resolutions[-1] // resolution
        if factor < 1 or factor * resolution != self.resolutions[-1] or factor & (factor - 1):
            raise ValueError(f"resolution must be a power of two <= {self.full_resolution}, got {resolution}")
        return factor

    def _inference_on_cpu(self, wplus: Tensor) -> bool:
        return (
            self.fast_inference
            and not torch.is_grad_enabled()
            and not torch.jit.is_tracing()
            and wplus.device.type == "cpu"
            and wplus.dtype == self.input.dtype == torch.float32
        )

    def forward(self, wplus: Tensor, fuse: FuseHook | None = None, resolution: int | None = None) -> Tensor:
        resolution = resolution or self.full_resolution
        if wplus.ndim != 3 or wplus.shape[1] != self.n_styles:
            raise ValueError(f"expected W+ of shape [B, {self.n_styles}, D], got {list(wplus.shape)}")
        if fuse is None and resolution < self.full_resolution and self._inference_on_cpu(wplus):
            from g2face.priors.mobilestylegan_fast import synthesize_pooled  # it imports this module

            return synthesize_pooled(self, wplus, resolution)
        x = self.conv(self.input.expand(wplus.shape[0], -1, -1, -1), wplus[:, 0])
        if fuse is not None:
            x = fuse(4, x)
        for i, (block, res) in enumerate(zip(self.blocks, self.resolutions[1:], strict=True)):
            x = block(x, wplus[:, 2 * i + 1], wplus[:, 2 * i + 2])
            if fuse is not None:
                x = fuse(res, x)
        style = wplus[:, -1]
        if resolution == self.full_resolution:
            return haar_idwt(self.to_wavelets(x, style))
        # Area-downsampled output, exactly and cheaply: the 2x2 mean of the full image is LL / 2, so
        # only the 3 LL rows of the head are needed (then pooled further for lower resolutions).
        factor = self.pooling_factor(resolution)
        low_pass = 0.5 * self.to_wavelets(x, style, low_pass_only=True)
        return F.avg_pool2d(low_pass, factor) if factor > 1 else low_pass


class ConstantWeightSynthesis(nn.Module):
    """The same synthesis with each style applied to the conv *input* (a per-channel scale) instead
    of folded into per-sample weights: every conv weight is then a constant, which is what graph
    runtimes (ONNX Runtime, OpenVINO) fold, pre-pack and fuse, and the batch size can vary in an
    exported graph. Same numbers as `SynthesisNetwork` up to float rounding (parity-tested); it
    shares the wrapped network's parameters. Output: the area-downsampled `resolution` image."""

    def __init__(self, synthesis: SynthesisNetwork, resolution: int):
        super().__init__()
        self.synthesis, self.factor = synthesis, synthesis.pooling_factor(resolution)
        for i, block in enumerate(synthesis.blocks):
            channels = block.up.modulation.out_features // 4
            self.register_buffer(
                f"haar_{i}", haar_synthesis_weight(channels).to(synthesis.input), persistent=False
            )

    @staticmethod
    def _styled(conv: StyledConv, x: Tensor, style: Tensor) -> Tensor:
        x = x * conv.modulation(style)[:, :, None, None]
        if conv.depthwise:
            x = F.conv2d(F.conv2d(x, conv.weight_dw, padding=1, groups=x.shape[1]), conv.weight_pw, conv.bias)
        else:
            x = F.conv2d(x, conv.weight, conv.bias, padding=1)
        return F.leaky_relu(x + conv.noise, LRELU_SLOPE)

    def forward(self, wplus: Tensor) -> Tensor:
        s = self.synthesis
        x = self._styled(s.conv, s.input.expand(wplus.shape[0], -1, -1, -1), wplus[:, 0])
        for i, block in enumerate(s.blocks):
            x = haar_idwt(
                x * block.up.modulation(wplus[:, 2 * i + 1])[:, :, None, None], getattr(self, f"haar_{i}")
            )
            x = self._styled(block.conv1, x, wplus[:, 2 * i + 1])
            x = self._styled(block.conv2, x, wplus[:, 2 * i + 2])
        head = s.to_wavelets
        x = x * head.modulation(wplus[:, -1])[:, :, None, None]
        low_pass = 0.5 * F.conv2d(x, head.weight[:3, :, None, None], head.bias[:3])
        return F.avg_pool2d(low_pass, self.factor) if self.factor > 1 else low_pass


class MobileStyleGAN(nn.Module):
    """The `lite` GenerativePrior: mapping + synthesis, truncation around a cached w_avg, seeded sampling."""

    name = "mobilestylegan"

    def __init__(
        self,
        output_resolution: int = 256,
        channels: Sequence[int] = SHIPPED_CHANNELS,
        style_dim: int = STYLE_DIM,
    ):
        super().__init__()
        self.style_dim = style_dim
        self.mapping = MappingNetwork(style_dim)
        self.synthesis = SynthesisNetwork(channels, style_dim)
        self.register_buffer("w_avg", torch.zeros(style_dim))
        self.n_styles = self.synthesis.n_styles
        full = self.synthesis.full_resolution
        if (
            output_resolution > full
            or full % output_resolution
            or output_resolution & (output_resolution - 1)
        ):
            raise ValueError(f"output_resolution must be a power of two <= {full}, got {output_resolution}")
        self.output_resolution = output_resolution

    def feature_channels(self) -> dict[int, int]:
        return dict(zip(self.synthesis.resolutions, self.synthesis.channels, strict=True))

    def style_resolutions(self) -> list[int]:
        return self.synthesis.style_resolutions()

    def forward(self, wplus: Tensor, fuse: FuseHook | None = None) -> Tensor:
        return self.synthesis(wplus, fuse, self.output_resolution)

    def broadcast(self, w: Tensor) -> Tensor:
        """One w per image [B, D] -> W+ [B, n_styles, D] (what the shipped network computes)."""
        return w[:, None, :].expand(-1, self.n_styles, -1)

    def truncate(self, w: Tensor, truncation_psi: float) -> Tensor:
        """Pull w or W+ towards the average latent: w_avg + psi (w - w_avg)."""
        return w if truncation_psi == 1.0 else torch.lerp(self.w_avg.to(w), w, truncation_psi)

    def map(self, z: Tensor, truncation_psi: float = 1.0) -> Tensor:
        return self.truncate(self.mapping(z), truncation_psi)

    def sample_z(self, n: int, seed: int) -> Tensor:
        """Seeded latents, identical on every device (drawn on the CPU)."""
        z = torch.randn(n, self.style_dim, generator=torch.Generator().manual_seed(seed))
        return z.to(device=self.w_avg.device, dtype=self.w_avg.dtype)

    def sample_wplus(self, n: int, seed: int, truncation_psi: float = 1.0) -> Tensor:
        return self.broadcast(self.map(self.sample_z(n, seed), truncation_psi))

    def sample(self, n: int, seed: int, truncation_psi: float = 1.0) -> Tensor:
        """n seeded images [n, 3, R, R] in about [-1, 1] (R = output_resolution)."""
        return self(self.sample_wplus(n, seed, truncation_psi))

    @torch.no_grad()
    def estimate_w_avg(self, n: int = W_AVG_SAMPLES, seed: int = W_AVG_SEED, batch: int = 10_000) -> Tensor:
        total = torch.zeros(self.style_dim, dtype=torch.float64)
        z = self.sample_z(n, seed)
        for start in range(0, n, batch):
            total += self.mapping(z[start : start + batch]).double().sum(dim=0).cpu()
        return (total / n).float()

    def trainable_copy(self) -> MobileStyleGAN:
        """A copy whose synthesis layers train (G2Face fine-tunes them); the mapping stays frozen."""
        twin = copy.deepcopy(self)
        twin.synthesis.train()
        twin.synthesis.requires_grad_(True)
        return twin


# ---------------------------------------------------------------- conversion from the OpenVINO IR


def _affine(graph: IRGraph, node: IRNode) -> tuple[np.ndarray, np.ndarray] | None:
    """If `node` computes a style affine (MatMul + bias, reshaped, times a constant), return its
    weight and bias with the constant folded in; None for any other tensor."""
    scale = 1.0
    while node.type in ("Multiply", "Reshape"):
        if node.type == "Multiply":
            const = graph.const_input(node)
            if const is None or const.size != 1:
                return None
            scale *= float(const.ravel()[0])
            node = next(graph.input(node, i) for i in range(2) if graph.input(node, i).type != "Const")
        else:
            node = graph.input(node, 0)
    if node.type != "Add" or graph.input(node, 0).type != "MatMul":
        return None
    matmul = graph.input(node, 0)
    weight = graph.const(graph.input(matmul, 1))
    return weight * scale, graph.const_input(node).reshape(-1) * scale


def _modulations(graph: IRGraph) -> list[tuple[np.ndarray, np.ndarray]]:
    """Style affines of the feature-map modulations, in network order."""
    found = []
    for node in graph.ops("Multiply"):
        if len(node.output_shapes[0]) == 4 and node.output_shapes[0][2] > 1:
            affine = next((a for i in range(2) if (a := _affine(graph, graph.input(node, i)))), None)
            if affine is not None:
                found.append(affine)
    return found


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise ValueError(f"MobileStyleGAN IR does not have the expected structure: {what}")


def _mapping_state(graph: IRGraph) -> dict[str, np.ndarray]:
    state = {}
    adds = [n for n in graph.ops("Add") if graph.input(n, 0).type == "MatMul"]
    _check(len(adds) == 8, f"8 mapping layers, found {len(adds)}")
    for i, add in enumerate(adds):
        state[f"mapping.layers.{i}.weight"] = graph.const(graph.input(graph.input(add, 0), 1))
        state[f"mapping.layers.{i}.bias"] = graph.const(graph.input(graph.input(add, 1), 0)).reshape(-1)
    slopes = {float(graph.const_input(n)[0]) for n in graph.ops("PReLU")}
    _check(np.allclose(list(slopes), LRELU_SLOPE), f"leaky ReLU slopes {slopes}")
    return state


def _synthesis_state(graph: IRGraph, channels: Sequence[int]) -> dict[str, np.ndarray]:
    n_blocks = len(channels) - 1
    mods = _modulations(graph)
    _check(len(mods) == 3 * n_blocks + 2, f"{3 * n_blocks + 2} modulations, found {len(mods)}")
    convs = graph.ops("Convolution", "GroupConvolution")
    _check(len(convs) == 4 * n_blocks + 2, f"{4 * n_blocks + 2} convolutions, found {len(convs)}")
    weights = [graph.const(graph.input(c, 1)) for c in convs]
    added = [c for c in map(graph.const_input, graph.ops("Add")) if c is not None and c.ndim == 4]
    noises = [c for c in added if c.shape[1] == 1 and c.shape[2] > 1]
    biases = [c for c in added if c.shape[2:] == (1, 1)]
    _check(len(noises) == 2 * n_blocks + 1 and len(biases) == 2 * n_blocks + 2, "noise and bias constants")
    haar = [graph.const(graph.input(n, 1)) for n in graph.ops("GroupConvolutionBackpropData")]
    _check(all(np.allclose(np.abs(h), 1 / math.sqrt(2)) for h in haar), "Haar IDWT filters")
    (const_input,) = [
        graph.const(graph.input(n, 0)) for n in graph.ops("Broadcast") if len(n.output_shapes[0]) == 4
    ]

    def styled(prefix: str, mod: tuple[np.ndarray, np.ndarray], noise: np.ndarray, bias: np.ndarray):
        return {
            f"{prefix}.modulation.weight": mod[0],
            f"{prefix}.modulation.bias": mod[1],
            f"{prefix}.noise": noise,
            f"{prefix}.bias": bias.reshape(-1),
        }

    state = {"synthesis.input": const_input, "synthesis.conv.weight": weights[0]}
    state |= styled("synthesis.conv", mods[0], noises[0], biases[0])
    for k in range(n_blocks):
        p = f"synthesis.blocks.{k}"
        state[f"{p}.up.modulation.weight"], state[f"{p}.up.modulation.bias"] = mods[1 + 3 * k]
        for j, name in enumerate(("conv1", "conv2")):
            layer = 1 + 2 * k + j
            state |= styled(f"{p}.{name}", mods[2 + 3 * k + j], noises[layer], biases[layer])
            state[f"{p}.{name}.weight_dw"] = weights[2 * layer - 1].squeeze(1)  # [C, 1, 1, 3, 3] grouped
            state[f"{p}.{name}.weight_pw"] = weights[2 * layer]
    state["synthesis.to_wavelets.modulation.weight"], state["synthesis.to_wavelets.modulation.bias"] = mods[
        -1
    ]
    state["synthesis.to_wavelets.weight"] = weights[-1].reshape(12, -1)
    state["synthesis.to_wavelets.bias"] = biases[-1].reshape(-1)
    return state


def convert_ir(folder: str | Path, out_path: str | Path) -> None:
    """Convert MappingNetwork/SynthesisNetwork .xml+.bin in `folder` to one safetensors file with
    the module's state dict, including w_avg (mean of W_AVG_SAMPLES mapped latents, seed W_AVG_SEED)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    arrays = _mapping_state(IRGraph(folder / "MappingNetwork.xml"))
    arrays |= _synthesis_state(IRGraph(folder / "SynthesisNetwork.xml"), SHIPPED_CHANNELS)
    with torch.device("meta"):  # no random init: every tensor comes from the IR
        model = MobileStyleGAN()
    state = {k: owned_tensor(v, np.float32) for k, v in arrays.items()}
    expected = model.state_dict()
    for key, value in state.items():
        _check(key in expected and expected[key].shape == value.shape, f"tensor {key} {list(value.shape)}")
    state["w_avg"] = torch.zeros(STYLE_DIM)
    model.load_state_dict(state, strict=True, assign=True)
    state["w_avg"] = model.estimate_w_avg()
    save_file(
        state,
        str(out_path),
        metadata={
            "source": "random-face==2021.7.21.1 OpenVINO IR",
            "w_avg": f"{W_AVG_SAMPLES} latents, seed {W_AVG_SEED}",
        },
    )


def weights_path(progress: bool = True) -> Path:
    """Converted weights in the asset cache (fetching and converting on first use)."""
    from g2face import hub

    return hub.converted_path(
        "mobilestylegan",
        "mobilestylegan.safetensors",
        build=lambda out: convert_ir(hub.fetch("mobilestylegan", progress=progress), out),
        tag=CONVERTER_TAG,
    )


def load_mobilestylegan(
    output_resolution: int = 256,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> MobileStyleGAN:
    """The shipped MobileStyleGAN, frozen and in eval mode (see `MobileStyleGAN.trainable_copy`)."""
    from safetensors.torch import load_file

    with torch.device("meta"):  # no random init (and no use of the global RNG): weights are loaded
        model = MobileStyleGAN(output_resolution)
    model.load_state_dict(load_file(str(weights_path(progress))), strict=True, assign=True)
    return freeze(model.to(device=device, dtype=dtype))
