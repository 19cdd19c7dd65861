"""Classical baselines: bicubic up-sampling, total-variation reconstruction, mean fill."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from brgm_pyro.baselines import bicubic_upsample, mean_fill, total_variation, total_variation_reconstruction
from brgm_pyro.corruptions.base import Corruption


class AveragePool(Corruption):
    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x):
        self.check_input(x)
        return F.avg_pool2d(x, self.factor)

    def output_shape(self, s):
        if s[1] % self.factor:
            raise ValueError("size")
        return (s[0], s[1] // self.factor, s[2] // self.factor)


def keys_bicubic_1d(v: list[float], factor: int, a: float = -0.75) -> list[float]:
    """Cubic-convolution up-sampling of a 1-D signal (half-pixel centres, clamped borders)."""

    def kernel(t: float) -> float:
        t = abs(t)
        if t <= 1:
            return (a + 2) * t**3 - (a + 3) * t**2 + 1
        if t < 2:
            return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
        return 0.0

    out = []
    for j in range(len(v) * factor):
        src = (j + 0.5) / factor - 0.5
        i0 = math.floor(src)
        out.append(sum(kernel(src - i) * v[min(max(i, 0), len(v) - 1)] for i in range(i0 - 1, i0 + 3)))
    return out


def test_bicubic_matches_cubic_convolution_formula():
    row = [-0.4, 0.1, 0.5, 0.2, -0.3, 0.0]
    low = torch.tensor(row).reshape(1, 1, 1, 6).expand(1, 1, 6, 6)
    up = bicubic_upsample(low, 3)
    assert up.shape == (1, 1, 18, 18)
    expected = torch.tensor(keys_bicubic_1d(row, 3)).clamp(-1, 1)
    torch.testing.assert_close(up[0, 0, 7], expected, atol=1e-5, rtol=0)
    const = bicubic_upsample(torch.full((1, 2, 4, 4), 0.3), 4)
    torch.testing.assert_close(const, torch.full((1, 2, 16, 16), 0.3))
    with pytest.raises(ValueError, match="expected"):
        bicubic_upsample(torch.zeros(8, 8), 2)


def test_total_variation_of_a_step_edge():
    x = torch.zeros(1, 1, 5, 6)
    x[..., 3:] = 0.8
    eps = 1e-3
    edges = 4  # rows with a horizontal difference across the step
    flat = 4 * 5 - edges
    expected = edges * math.sqrt(0.8**2 + eps**2) + flat * eps
    assert total_variation(x, eps).item() == pytest.approx(expected, rel=1e-5)


def test_tv_reconstruction_fits_observation_and_beats_zero_init():
    torch.manual_seed(0)
    truth = torch.full((2, 1, 16, 16), -0.5)
    truth[:, :, 4:12, 4:12] = 0.6
    op = AveragePool(4)
    y = op(truth)
    rec = total_variation_reconstruction(op, y, (1, 16, 16), tv_weight=0.001, steps=400)
    assert rec.shape == truth.shape
    assert (op(rec) - y).abs().max() < 0.05
    assert (rec - truth).square().mean() < 0.5 * truth.square().mean()
    with pytest.raises(ValueError, match="observation must have shape"):
        total_variation_reconstruction(op, torch.zeros(2, 1, 5, 5), (1, 16, 16))


def test_mean_fill_keeps_observed_pixels():
    obs = torch.rand(1, 1, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2] = 1
    mean = torch.full((1, 4, 4), 0.25)
    out = mean_fill(obs * mask, mask, mean)
    torch.testing.assert_close(out[..., :2], obs[..., :2])
    assert (out[..., 2:] == 0.25).all()
    with pytest.raises(ValueError, match="shapes differ"):
        mean_fill(obs, mask[..., :3], mean)
