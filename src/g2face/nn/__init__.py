"""Layers in plain PyTorch (no custom CUDA, nothing compiled): the StyleGAN2 building blocks in the
rosinality parameter layout, so official checkpoints load by key."""

from g2face.nn.equalized import EqualConv2d, EqualLinear, FusedLeakyReLU, PixelNorm, fused_leaky_relu
from g2face.nn.modulated import ConstantInput, ModulatedConv2d, NoiseInjection, StyledConv, ToRGB
from g2face.nn.upfirdn import Blur, Downsample, Upsample, make_kernel, upfirdn2d

__all__ = [
    "Blur",
    "ConstantInput",
    "Downsample",
    "EqualConv2d",
    "EqualLinear",
    "FusedLeakyReLU",
    "ModulatedConv2d",
    "NoiseInjection",
    "PixelNorm",
    "StyledConv",
    "ToRGB",
    "Upsample",
    "fused_leaky_relu",
    "make_kernel",
    "upfirdn2d",
]
