"""Baseline anonymizers and the method interface."""

from __future__ import annotations

import pytest
import torch

from g2face.evaluation import methods as mt
from g2face.models.classic import FACE_FRACTION


def _crops(size: int = 64, batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_none_returns_the_input_unchanged():
    x = _crops()
    y = mt.NoAnonymization().anonymize(x, [0, 1])
    assert torch.equal(x, y) and y.data_ptr() != x.data_ptr()


def test_blur_keeps_constants_and_removes_detail():
    flat = torch.full((1, 3, 64, 64), 0.3)
    torch.testing.assert_close(mt.GaussianBlur().anonymize(flat, [0]), flat)
    x = _crops()
    weak, strong = mt.GaussianBlur(0.02).anonymize(x, [0, 1]), mt.GaussianBlur(0.2).anonymize(x, [0, 1])
    assert weak.shape == x.shape
    detail = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean()  # noqa: E731
    assert detail(strong) < detail(weak) < detail(x)
    torch.testing.assert_close(strong.mean(), x.mean(), atol=0.02, rtol=0)  # blur preserves the mean


def test_blur_sigma_is_a_fraction_of_the_face():
    # A single bright pixel spreads into the Gaussian kernel itself: its std must be
    # sigma_fraction x face width = 0.1 x 0.5 x 128 = 6.4 px.
    impulse = torch.zeros(1, 3, 128, 128)
    impulse[..., 64, 64] = 1.0
    out = mt.GaussianBlur(0.1).anonymize(impulse, [0])[0, 0, 64]
    pos = torch.arange(128.0)
    std = ((out * (pos - 64) ** 2).sum() / out.sum()).sqrt()
    assert std.item() == pytest.approx(6.4, rel=0.02)


def test_pixelate_makes_eight_blocks_across_the_face():
    x = _crops(size=256, batch=1)
    y = mt.Pixelate().anonymize(x, [0])
    block = int(256 * FACE_FRACTION / 8)  # 16 px
    tile = y[..., :block, :block]
    assert torch.allclose(tile, tile[..., :1, :1].expand_as(tile))
    torch.testing.assert_close(tile[..., 0, 0], x[..., :block, :block].mean(dim=(-2, -1)))
    assert not torch.allclose(y[..., :block, block], y[..., :block, block - 1])  # next block differs


def test_box_is_one_colour():
    y = mt.SolidBox((1.0, 0.5, 0.0)).anonymize(_crops(), [0, 1])
    assert torch.equal(y, torch.tensor([1.0, 0.0, -1.0]).view(1, 3, 1, 1).expand_as(y))


class _Reversible:
    """A toy reversible method: negation, undone only with the right password."""

    name = "toy"
    password = "secret"

    def anonymize(self, crops, seeds):
        return -crops

    def recover(self, crops, password):
        ok = password == self.password
        return mt.Recovered(-crops if ok else crops, torch.full((len(crops),), ok))


def test_registry_and_reversibility():
    assert set(mt.BASELINES) <= set(mt.METHODS)
    for name in mt.BASELINES:
        method = mt.build_method(name)
        assert method.name == name and isinstance(method, mt.Anonymizer) and not mt.is_reversible(method)
    assert mt.build_method("blur", sigma_fraction=0.3).sigma_fraction == 0.3
    assert mt.is_reversible(_Reversible())
    with pytest.raises(KeyError, match="unknown method"):
        mt.build_method("nope")
