"""G2FaceNet: the G2Face network around any generative prior.

    w+ = f_mlp(identity, geometry)            identity = f_dummy(z) to anonymize, the original to recover
    y  = G(w+) with, at every fusion resolution r of G up to the crop size:
         M = sigmoid(IN(conv1×1([F_gen, F_face, H_a(V)])))        H_a only where r is injected
         F = M·F_gen + (1 − M)·F_face + H_b(V)
    logits = E_p(y)

Parameter names: `generator.*` is the prior (rosinality names for StyleGAN2); `pyramid`,
`fusion_mask`, `hiding_injects`, `style_mlp`, `map_2_id`, `hiding_extractor` follow the reference.
`fusion_mask[k]` and `pyramid[k]` work at output_resolution / 2^k; `hiding_injects[2j]` is H_a and
`hiding_injects[2j + 1]` H_b of the j-th injected resolution in increasing order.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from g2face.models.config import G2FaceNetConfig
from g2face.models.dpim import FaceEncoder, FusionMask, PayloadInjection
from g2face.models.extractor import PayloadExtractor
from g2face.models.generator_api import GenerativePrior, style_group_sizes
from g2face.models.gie import DummyIdentityMapper, StyleMLP
from g2face.models.stylegan2 import StyleGAN2Synthesis


class G2FaceNet(nn.Module):
    def __init__(self, config: G2FaceNetConfig, generator: GenerativePrior | None = None):
        super().__init__()
        self.config = config
        if generator is None:
            if config.prior != "stylegan2" or config.stylegan2 is None:
                raise ValueError(f"prior {config.prior!r} is not built here: pass its generator instance")
            generator = StyleGAN2Synthesis(config.stylegan2)
        self.generator = generator
        # Fusion needs a face feature at the same resolution, so it stops at the crop size; a prior
        # that renders larger internally and downsamples (MobileStyleGAN) keeps its top levels as is.
        channels = {r: c for r, c in generator.feature_channels().items() if r <= generator.output_resolution}
        unknown = set(config.inject_resolutions) - set(channels)
        if unknown:
            raise ValueError(
                f"inject resolutions {sorted(unknown)} are not fusion resolutions {sorted(channels)}"
            )
        self.pyramid = FaceEncoder(channels, config.encoder_widths)
        # A slim encoder's features are lifted to the generator's channels before fusion.
        self.face_projection = (
            None
            if config.encoder_widths is None
            else nn.ModuleList(
                nn.Conv2d(w, channels[r], 1)
                for r, w in zip(self.pyramid.resolutions, config.encoder_widths, strict=True)
            )
        )
        self.fusion_mask = nn.ModuleList(
            FusionMask((3 if r in config.inject_resolutions else 2) * channels[r], channels[r])
            for r in self.pyramid.resolutions
        )
        self.hiding_injects = nn.ModuleList(
            PayloadInjection(config.n_bits, r, channels[r])
            for r in sorted(config.inject_resolutions)
            for _ in ("H_a", "H_b")
        )
        gie = config.gie
        groups = style_group_sizes(
            generator.style_resolutions(), gie.low_max_resolution, gie.mid_max_resolution
        )
        self.map_2_id = DummyIdentityMapper(gie.z_dim, gie.identity_dim)
        self.style_mlp = StyleMLP(
            gie.identity_dim + gie.geometry_dim,
            generator.style_dim,
            groups,
            gie.n_layers,
            gie.lr_mul,
            gie.reference_double_bias,
        )
        self.hiding_extractor = PayloadExtractor(config.extractor, config.n_bits, generator.output_resolution)

    @property
    def image_size(self) -> int:
        return self.generator.output_resolution

    def dummy_identity(self, z: Tensor) -> Tensor:
        """f_dummy: z [B, z_dim] → dummy identity [B, identity_dim]."""
        return self.map_2_id(z)

    def styles(self, identity: Tensor, geometry: Tensor) -> Tensor:
        """f_mlp: identity [B, identity_dim], geometry [B, geometry_dim] → W+ [B, n_styles, style_dim]."""
        return self.style_mlp(identity, geometry)

    def synthesize(self, x: Tensor, wplus: Tensor, bits: Tensor) -> Tensor:
        """Face crop x [B, 3, S, S] in [-1, 1], W+, payload bits [B, n_bits] (or any shape with
        n_bits per sample, values {0, 1}) → image [B, 3, S, S]."""
        if bits[0].numel() != self.config.n_bits:
            raise ValueError(f"expected {self.config.n_bits} payload bits per image, got {bits[0].numel()}")
        faces = self.pyramid(x)
        if self.face_projection is not None:
            faces = {
                r: p(faces[r]) for r, p in zip(self.pyramid.resolutions, self.face_projection, strict=True)
            }
        injections = {r: 2 * j for j, r in enumerate(sorted(self.config.inject_resolutions))}
        masks = dict(zip(self.pyramid.resolutions, self.fusion_mask, strict=True))

        def fuse(resolution: int, gen: Tensor) -> Tensor:
            if resolution not in faces:
                return gen
            face = faces[resolution]
            j = injections.get(resolution)
            if j is None:
                mask = masks[resolution](torch.cat([gen, face], dim=1))
                return mask * gen + (1 - mask) * face
            mask = masks[resolution](torch.cat([gen, face, self.hiding_injects[j](bits)], dim=1))
            return mask * gen + (1 - mask) * face + self.hiding_injects[j + 1](bits)

        return self.generator(wplus, fuse)

    def extract(self, image: Tensor) -> Tensor:
        """E_p: image [B, 3, S, S] → payload logits [B, n_bits]."""
        return self.hiding_extractor(image)

    def forward(self, x: Tensor, identity: Tensor, geometry: Tensor, bits: Tensor) -> Tensor:
        return self.synthesize(x, self.styles(identity, geometry), bits)
