"""The StyleGAN2 building blocks in g2face.nn: resampling conventions, modulation/demodulation,
equalized layers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from g2face.nn import (
    Downsample,
    EqualLinear,
    ModulatedConv2d,
    NoiseInjection,
    PixelNorm,
    ToRGB,
    Upsample,
    make_kernel,
    upfirdn2d,
)


def test_upfirdn2d_is_a_true_convolution():
    kernel = torch.arange(1.0, 10.0).view(3, 3)  # asymmetric: a correlation would flip it
    impulse = torch.zeros(1, 1, 5, 5)
    impulse[0, 0, 2, 2] = 1
    out = upfirdn2d(impulse, kernel, pad=(1, 1))
    assert torch.equal(out[0, 0, 1:4, 1:4], kernel)


def test_resampling_keeps_constant_images_constant_away_from_borders():
    x = torch.full((1, 2, 8, 8), 0.7)
    up, down = Upsample((1, 3, 3, 1))(x), Downsample((1, 3, 3, 1))(x)
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    assert torch.allclose(up[..., 2:-2, 2:-2], x.new_tensor(0.7))
    assert torch.allclose(down[..., 1:-1, 1:-1], x.new_tensor(0.7))
    assert make_kernel((1, 3, 3, 1)).sum() == pytest.approx(1.0)


@pytest.mark.parametrize("upsample", [False, True])
def test_grouped_modulated_conv_equals_modulate_input_then_demodulate_output(upsample):
    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 5, 3, style_dim=7, upsample=upsample)
    x, style = torch.randn(3, 6, 8, 8), torch.randn(3, 7)
    s = conv.modulation(style)
    weight = conv.scale * conv.weight[0]
    demod = torch.rsqrt((weight[None] * s[:, None, :, None, None]).square().sum((2, 3, 4)) + 1e-8)
    xs = x * s[:, :, None, None]
    if upsample:
        ref = conv.blur(F.conv_transpose2d(xs, weight.transpose(0, 1), stride=2))
    else:
        ref = F.conv2d(xs, weight, padding=1)
    ref = ref * demod[:, :, None, None]
    out = conv(x, style)
    assert out.shape == (3, 5, 16 if upsample else 8, 16 if upsample else 8)
    assert torch.allclose(out, ref, atol=1e-5)


def test_demodulation_gives_unit_variance_outputs_for_unit_variance_inputs():
    torch.manual_seed(0)
    conv = ModulatedConv2d(64, 32, 3, style_dim=16)
    out = conv(torch.randn(4, 64, 32, 32), torch.randn(4, 16))
    assert out[..., 1:-1, 1:-1].var().item() == pytest.approx(1.0, abs=0.1)


def test_to_rgb_adds_the_upsampled_skip():
    torch.manual_seed(0)
    to_rgb = ToRGB(4, 8)
    x, style, skip = torch.randn(2, 4, 8, 8), torch.randn(2, 8), torch.randn(2, 3, 4, 4)
    assert torch.allclose(to_rgb(x, style, skip) - to_rgb(x, style), to_rgb.upsample(skip), atol=1e-6)


def test_equal_linear_scaling_and_reference_double_bias():
    single = EqualLinear(4, 3, lr_mul=0.01, activate=True)
    double = EqualLinear(4, 3, lr_mul=0.01, activate=True, reference_double_bias=True)
    assert single.weight.std().item() > 10  # stored at 1/lr_mul, scaled back at run time
    for layer in (single, double):
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.constant_(layer.bias, 50.0)  # effective bias 0.5 after lr_mul
    x = torch.randn(2, 4)
    assert torch.allclose(single(x), torch.full((2, 3), 0.5 * math.sqrt(2)))
    assert torch.allclose(double(x), torch.full((2, 3), 1.0 * math.sqrt(2)))


def test_pixel_norm_and_noise_injection():
    x = torch.randn(5, 9) * 3
    assert torch.allclose(PixelNorm()(x).square().mean(1), torch.ones(5), atol=1e-5)
    noise_layer, image, noise = NoiseInjection(), torch.randn(2, 3, 4, 4), torch.randn(2, 1, 4, 4)
    assert torch.equal(noise_layer(image), image)  # zero-initialised weight
    noise_layer.weight.data.fill_(0.5)
    assert torch.allclose(noise_layer(image, noise), image + 0.5 * noise)
