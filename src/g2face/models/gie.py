"""Geometry-aware identity extraction (GIE): f_dummy maps a random z to a dummy identity; f_mlp
maps [identity ⊕ shape ⊕ expression ⊕ pose] to the generator's W+ through three MLPs (low, mid,
high style groups). Parameter names follow the reference (`map_2_id`, `style_low` ...)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from g2face.models.config import GIEConfig
from g2face.nn import EqualLinear, PixelNorm


class DummyIdentityMapper(nn.Module):
    """f_dummy: z → Linear → LReLU → Linear → LReLU → BatchNorm1d (whose statistics place the output
    where identity embeddings live)."""

    def __init__(self, z_dim: int, identity_dim: int):
        super().__init__()
        self.map_2_id = nn.Sequential(
            nn.Linear(z_dim, identity_dim),
            nn.LeakyReLU(0.2),
            nn.Linear(identity_dim, identity_dim),
            nn.LeakyReLU(0.2),
            nn.BatchNorm1d(identity_dim),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.map_2_id(z)


class StyleMLP(nn.Module):
    """f_mlp: PixelNorm([identity ⊕ geometry]) → w_low, w_mid, w_high, each repeated over its
    `group_sizes` style inputs → W+ [B, sum(group_sizes), style_dim]."""

    def __init__(
        self,
        in_dim: int,
        style_dim: int,
        group_sizes: tuple[int, int, int],
        n_layers: int = 4,
        lr_mul: float = 0.01,
        reference_double_bias: bool = True,
    ):
        super().__init__()
        if min(group_sizes) < 1:
            raise ValueError(f"every style group needs at least one style input, got {group_sizes}")
        self.group_sizes = group_sizes
        self.norm = PixelNorm()

        def mlp() -> nn.Sequential:
            dims = [in_dim] + [style_dim] * n_layers
            return nn.Sequential(
                *(
                    EqualLinear(
                        a, b, lr_mul=lr_mul, activate=True, reference_double_bias=reference_double_bias
                    )
                    for a, b in zip(dims[:-1], dims[1:], strict=True)
                )
            )

        self.style_low, self.style_middle, self.style_high = mlp(), mlp(), mlp()
        # Per-dimension standardisation of [identity ⊕ geometry] before the PixelNorm. The identity
        # transform by default (as the reference); set from data by `standardize_inputs`, because
        # the lite priors' parts differ in scale (unit-norm identity, pose in degrees), and the
        # PixelNorm would otherwise let the largest part drown the identity.
        self.register_buffer("input_mean", torch.zeros(in_dim))
        self.register_buffer("input_std", torch.ones(in_dim))

    @torch.no_grad()
    def standardize_inputs(self, inputs: Tensor, min_std: float = 1e-3) -> None:
        """Set the input standardisation from samples [N, in_dim] of [identity ⊕ geometry]."""
        self.input_mean.copy_(inputs.mean(0))
        self.input_std.copy_(inputs.std(0).clamp_min(min_std))

    @torch.no_grad()
    def start_at(self, w: Tensor, weight_gain: float = 0.1) -> None:
        """Make every group start near the style `w` [style_dim] (the generator's average latent):
        each last layer's bias is set so that its activation returns `w` for a zero input, and its
        weights shrink by `weight_gain`. Regression from scratch then starts from the average face
        instead of a random point of W, which lr_mul = 0.01 would take thousands of steps to leave."""
        slope, gain = 0.2, 2**0.5
        pre_activation = torch.where(w >= 0, w / gain, w / (slope * gain))
        for mlp in (self.style_low, self.style_middle, self.style_high):
            last = mlp[-1]
            n_bias_adds = 2 if last.reference_double_bias else 1
            last.bias.copy_(pre_activation.to(last.bias) / (n_bias_adds * last.lr_mul))
            last.weight.mul_(weight_gain)

    def forward(self, identity: Tensor, geometry: Tensor) -> Tensor:
        e_g = torch.cat([identity, geometry], dim=1)
        e_g = self.norm((e_g - self.input_mean.to(e_g)) / self.input_std.to(e_g))
        groups = (self.style_low(e_g), self.style_middle(e_g), self.style_high(e_g))
        return torch.cat(
            [w.unsqueeze(1).expand(-1, n, -1) for w, n in zip(groups, self.group_sizes, strict=True)], dim=1
        )


class GIE(nn.Module):
    """f_dummy and f_mlp on their own, for renderers that use the generator without DPIM (the
    geometric-fusion default). Parameter names match `G2FaceNet`'s (`map_2_id.*`, `style_mlp.*`), so
    the GIE part of a trained network's weights loads here unchanged."""

    def __init__(self, config: GIEConfig, style_dim: int, group_sizes: tuple[int, int, int]):
        super().__init__()
        self.config = config
        self.map_2_id = DummyIdentityMapper(config.z_dim, config.identity_dim)
        self.style_mlp = StyleMLP(
            config.identity_dim + config.geometry_dim,
            style_dim,
            group_sizes,
            config.n_layers,
            config.lr_mul,
            config.reference_double_bias,
        )

    def dummy_identity(self, z: Tensor) -> Tensor:
        return self.map_2_id(z)

    def styles(self, identity: Tensor, geometry: Tensor) -> Tensor:
        return self.style_mlp(identity, geometry)


POSE_KEYS = (
    "pose_correction.directions",
    "pose_correction.bias",
    "pose_correction.mean",
    "pose_correction.gain",
)
"""Tensors of the optional pose correction in a fusion model file (scripts/fit_pose_correction.py)."""


EXPRESSION_KEYS = (
    "expression_correction.direction",
    "expression_correction.step",
    "expression_correction.bias",
    "expression_correction.mean",
    "expression_correction.gain",
)
"""Tensors of the optional expression correction in a fusion model file
(scripts/fit_expression_correction.py)."""

SMILE_BLENDSHAPES = (44, 45)
"""MediaPipe blendshapes (`priors.mediapipe_geometry.BLENDSHAPE_NAMES`) averaged into the smile the
expression correction follows: mouthSmileLeft, mouthSmileRight."""


POSE_LIMITS = (30.0, 20.0)
"""|yaw| and |pitch| in degrees beyond which a render is not turned further: about the generator
bank's 5-95 % range (yaw -28 to 25°, pitch -19 to 11°). Pushed to a profile's 48°, a render broke
up (smeared features, a dark band along the jaw) where the frontal-ish one still looked like a face."""


class PoseCorrection(nn.Module):
    """Moves f_mlp's W+ so the rendered head turns (yaw) and tilts (pitch) as the original does.

    f_mlp follows the pose it is given only weakly on real faces (on 40 CelebA crops the render's
    yaw was 0.22 × the original's: a face turned 30° came out nearly frontal, and the fusion then
    squeezed a frontal face onto a turned one). A ridge regression over the generator's bank, pose
    ≈ directions · (w − mean) + bias (held-out R² 0.91 for yaw, 0.78 for pitch), gives the
    directions that turn a face in W. The render's pose is predicted from its low styles, and the
    smallest change δ within the span of the two directions that makes up the difference to the
    target pose, scaled by `gain` per angle, is added to the low and middle styles (pose and face
    layout live there; the high styles, the skin's texture and colour, stay). The gain makes up for
    the prediction reading f_mlp's off-bank W+ as nearer its target than its renders are; it is
    calibrated on real crops by the fitting script."""

    def __init__(self, style_dim: int, n_styles: int):
        super().__init__()
        self.n_styles = n_styles  # the W+ entries moved: the low and middle groups
        self.register_buffer("directions", torch.zeros(2, style_dim))
        self.register_buffer("bias", torch.zeros(2))
        self.register_buffer("mean", torch.zeros(style_dim))
        self.register_buffer("gain", torch.ones(2))

    def predict(self, wplus: Tensor) -> Tensor:
        """(yaw, pitch) in degrees [B, 2] the directions read from W+ [B, S, D] (its first style)."""
        return (wplus[:, 0] - self.mean.to(wplus)) @ self.directions.to(wplus).T + self.bias.to(wplus)

    def forward(self, wplus: Tensor, target: Tensor) -> Tensor:
        """W+ [B, S, D] moved towards the (yaw, pitch) `target` [B, 2] in degrees, clamped to
        `POSE_LIMITS`."""
        directions = self.directions.to(wplus)
        limits = torch.tensor(POSE_LIMITS, dtype=wplus.dtype, device=wplus.device)
        target = torch.maximum(torch.minimum(target.to(wplus), limits), -limits)
        error = self.gain.to(wplus) * (target - self.predict(wplus))  # [B, 2]
        # δ = Dᵀ (D Dᵀ)⁻¹ e: the minimum-norm change with D · δ = e; the 2×2 inverse written out
        # (adjugate over determinant), which every ONNX runtime runs.
        (a, b), (c, d) = directions @ directions.T
        inverse = torch.stack([torch.stack([d, -b]), torch.stack([-c, a])]) / (a * d - b * c)
        delta = error @ inverse.T @ directions  # [B, D]
        moved = wplus.clone()
        moved[:, : self.n_styles] += delta[:, None, :]
        return moved


class ExpressionCorrection(nn.Module):
    """Moves f_mlp's W+ so the rendered face smiles as much as the original does.

    f_mlp hardly follows the expression it is given on real faces: on 30 CelebA crops the smile of
    a keyed dummy's render (mean of MediaPipe's mouthSmileLeft/Right) correlated 0.04 with the
    original's (mean error 0.41 on a 0-1 scale), so smiling faces got closed-mouthed fakes and
    neutral ones grins. As for the pose (`PoseCorrection`): a ridge regression over the generator's
    bank, smile ≈ direction · (w − mean) + bias (held-out R² 0.67), gives the direction in W that
    makes a face smile; the render's smile is predicted from its first style and `step` times the
    difference to the original's, scaled by `gain`, is added to the low and middle styles. `step`
    is the smallest change in W that adds one unit of predicted smile while leaving the apparent
    gender and age the bank's regressions read from w where they are (along the smile direction
    alone, one unit of smile moved dlib's gender logit by -0.82 and its age by +2.65 years on 800
    bank samples: in the generator's faces smiles go with women). Fitted on CelebA crops, checked on
    40 LFW crops: render smile error 0.35 → 0.05, correlation with the original's 0.38 → 0.98, the
    dummy's identity kept (SFace cosine 0.94 to the uncorrected render)."""

    def __init__(self, style_dim: int, n_styles: int):
        super().__init__()
        self.n_styles = n_styles
        self.register_buffer("direction", torch.zeros(style_dim))
        self.register_buffer("step", torch.zeros(style_dim))
        self.register_buffer("bias", torch.zeros(1))
        self.register_buffer("mean", torch.zeros(style_dim))
        self.register_buffer("gain", torch.ones(1))

    def predict(self, wplus: Tensor) -> Tensor:
        """The smile [B] the direction reads from W+ [B, S, D] (its first style)."""
        return (wplus[:, 0] - self.mean.to(wplus)) @ self.direction.to(wplus) + self.bias.to(wplus)

    def forward(self, wplus: Tensor, smile: Tensor) -> Tensor:
        """W+ [B, S, D] moved towards the `smile` [B] (0-1, clamped)."""
        error = self.gain.to(wplus) * (smile.to(wplus).clamp(0, 1) - self.predict(wplus))  # [B]
        delta = error[:, None] * self.step.to(wplus)
        moved = wplus.clone()
        moved[:, : self.n_styles] += delta[:, None, :]
        return moved


def neutral_step(direction: Tensor, others: Tensor) -> Tensor:
    """The smallest change δ [D] with direction · δ = 1 and others · δ = 0 for each row of `others`
    [K, D]: one unit of what `direction` predicts, none of what the other regressions read
    (`ExpressionCorrection.step`)."""
    rows = torch.cat([direction[None], others])
    unit = torch.zeros(len(rows), dtype=rows.dtype)
    unit[0] = 1
    return rows.T @ torch.linalg.solve(rows @ rows.T, unit)
