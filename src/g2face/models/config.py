"""Typed, frozen model configurations (no torch here: configs are saved with every run and read
by code that must not import torch).

Channel widths are tuples indexed by resolution level: entry i is for 4·2^i px, up to `size`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


def _levels(size: int) -> tuple[int, ...]:
    if size < 8 or size & (size - 1):
        raise ValueError(f"size must be a power of two >= 8, got {size}")
    return tuple(4 * 2**i for i in range(int(math.log2(size)) - 1))


@dataclass(frozen=True)
class _Pyramid:
    """A network with one channel width per resolution level, from 4 px up to `size`."""

    size: int = 256
    channels: tuple[int, ...] = (512, 512, 512, 512, 512, 256, 128)

    def __post_init__(self) -> None:
        if len(self.channels) != len(_levels(self.size)):
            raise ValueError(f"need one width per resolution {_levels(self.size)}, got {self.channels}")

    @property
    def resolutions(self) -> tuple[int, ...]:
        return _levels(self.size)


@dataclass(frozen=True)
class StyleGAN2Config(_Pyramid):
    """Rosinality-layout StyleGAN2 synthesis network (mapping network dropped)."""

    style_dim: int = 512
    blur_taps: tuple[int, ...] = (1, 3, 3, 1)

    @property
    def n_styles(self) -> int:
        return 2 * len(self.resolutions)

    def channels_at(self, resolution: int) -> int:
        return self.channels[self.resolutions.index(resolution)]


@dataclass(frozen=True)
class GIEConfig:
    """Geometry-aware identity extraction: f_dummy (z → dummy identity) and f_mlp.

    Styles whose resolution (generator API `style_resolutions`) is <= `low_max_resolution` take
    w_low, <= `mid_max_resolution` w_mid, the rest w_high (StyleGAN2-256: 6 / 6 / 2).
    """

    z_dim: int = 512
    identity_dim: int = 512
    geometry_dim: int = 147
    n_layers: int = 4
    lr_mul: float = 0.01
    low_max_resolution: int = 16
    mid_max_resolution: int = 128
    reference_double_bias: bool = True


@dataclass(frozen=True)
class ExtractorConfig:
    """Payload extractor E_p: 1×1 stem, inception-style blocks (one per dilation), strided 3×3 head."""

    width: int = 128
    dilations: tuple[int, ...] = (1, 1, 1)
    output_stride: int = 2

    @property
    def receptive_field(self) -> int:
        """Side in input pixels of the window that determines one output logit."""
        return 1 + 2 * sum(self.dilations) + 2


@dataclass(frozen=True)
class DiscriminatorConfig(_Pyramid):
    stddev_group: int = 4


@dataclass(frozen=True)
class G2FaceNetConfig:
    """The whole G2Face network. `prior` names the generator backend: "stylegan2" is built from
    `stylegan2`; any other backend is passed to `G2FaceNet` as a ready generator instance."""

    name: str
    prior: str = "stylegan2"
    stylegan2: StyleGAN2Config | None = field(default_factory=StyleGAN2Config)
    n_bits: int = 512 * 32
    inject_resolutions: tuple[int, ...] = (8, 16, 32, 64, 128)
    encoder_widths: tuple[int, ...] | None = None
    """E_face channels per fusion resolution, from the crop size down; None = the generator's
    channels there (the reference). Narrower widths are projected to the generator's by 1×1 convs."""
    gie: GIEConfig = field(default_factory=GIEConfig)
    extractor: ExtractorConfig = field(default_factory=ExtractorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> G2FaceNetConfig:
        def build(kind: type, values: dict[str, Any] | None) -> Any:
            if values is None:
                return None
            return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

        return cls(
            name=data["name"],
            prior=data["prior"],
            stylegan2=build(StyleGAN2Config, data["stylegan2"]),
            n_bits=data["n_bits"],
            inject_resolutions=tuple(data["inject_resolutions"]),
            encoder_widths=None if data.get("encoder_widths") is None else tuple(data["encoder_widths"]),
            gie=build(GIEConfig, data["gie"]),
            extractor=build(ExtractorConfig, data["extractor"]),
            discriminator=build(DiscriminatorConfig, data["discriminator"]),
        )


PAPER = G2FaceNetConfig(name="paper")
"""The reference network: StyleGAN2 FFHQ-256, 16384 payload bits injected at 8–128 px."""

TINY = G2FaceNetConfig(
    name="tiny",
    stylegan2=StyleGAN2Config(size=32, style_dim=32, channels=(32, 32, 16, 8)),
    n_bits=96,
    inject_resolutions=(8, 16),
    gie=GIEConfig(
        z_dim=16, identity_dim=16, geometry_dim=12, n_layers=2, low_max_resolution=8, mid_max_resolution=16
    ),
    extractor=ExtractorConfig(width=16, dilations=(1, 2)),
    discriminator=DiscriminatorConfig(size=32, channels=(32, 32, 16, 8)),
)
"""Random tiny network for tests: 32 px, 8 styles (4 low / 2 mid / 2 high), 96 payload bits."""

LITE = G2FaceNetConfig(
    name="lite",
    prior="mobilestylegan",
    stylegan2=None,
    n_bits=1296,  # PayloadCodec(embedding_dim=128).n_bits: the SFace identity, encrypted and coded
    inject_resolutions=(8, 16, 32, 64, 128),
    # A slim E_face (256 → 4 px): the reference widths cost 49 M parameters and ~1.2 s per face on a CPU.
    encoder_widths=(32, 64, 128, 128, 128, 128, 128),
    gie=GIEConfig(identity_dim=128, geometry_dim=40 + 52 + 3),
    # A wider receptive field than the reference's 9 px, so bits survive JPEG's 8x8 blocks.
    extractor=ExtractorConfig(width=128, dilations=(1, 2, 4, 8)),
)
"""The embedded default: MobileStyleGAN (16 styles: 5 low / 6 mid / 5 high), SFace-128 identity,
MediaPipe geometry (40 shape + 52 blendshapes + 3 pose angles), 1296 payload bits."""

PRESETS: dict[str, G2FaceNetConfig] = {"tiny": TINY, "lite": LITE, "paper": PAPER}
"""Named configurations."""
