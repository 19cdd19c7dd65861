"""Classical baselines: bicubic up-sampling, mean fill, DeepInverse's TV and wavelet reconstructions on
the project's operators (those tests skip without the optional extra: pip install -e ".[baselines]")."""

from __future__ import annotations

import math

import pytest
import torch

import brgm_pyro.baselines as baselines
from brgm_pyro.baselines import (
    BaselineSetting, MissingBaselineDependency, bicubic_upsample, check_linear, corruption_physics, mean_fill,
    operator_norm_squared, require_deepinv, tv_reconstruction, wavelet_reconstruction,
)
from brgm_pyro.corruptions import Intensity, Inpainting, SuperResolution, make_blind, standard_mask


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


def test_missing_deepinv_names_the_extra(monkeypatch):
    real = baselines.importlib.import_module

    def fake(name, *a):
        if name in ("deepinv", "ptwt"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *a)

    monkeypatch.setattr(baselines.importlib, "import_module", fake)
    with pytest.raises(MissingBaselineDependency, match=r'pip install -e "\.\[baselines\]"'):
        require_deepinv()
    assert not baselines.baselines_available()
    with pytest.raises(MissingBaselineDependency, match="deepinv"):
        tv_reconstruction(Inpainting(torch.ones(1, 8, 8)), torch.zeros(1, 1, 8, 8), (1, 8, 8), BaselineSetting(0.1))


def test_check_linear_rejects_affine_and_latent_operators():
    check_linear(SuperResolution(4, kernel="bicubic-antialias"), (1, 16, 16))
    with pytest.raises(ValueError, match="not linear"):
        check_linear(Intensity(1.0, 0.2), (1, 8, 8))
    with pytest.raises(ValueError, match="latent"):
        check_linear(make_blind(SuperResolution(2, kernel="gaussian"), ["kernel"]), (1, 8, 8))


deepinv_only = pytest.mark.skipif(not baselines.baselines_available(wavelets=False),
                                  reason='needs DeepInverse: pip install -e ".[baselines]"')
wavelets_only = pytest.mark.skipif(not baselines.baselines_available(wavelets=True),
                                   reason='needs DeepInverse and ptwt: pip install -e ".[baselines]"')


@deepinv_only
@pytest.mark.parametrize("op", [SuperResolution(4, kernel="bicubic-antialias"), Inpainting(standard_mask(0, 16))],
                         ids=["sr", "inpainting"])
def test_physics_is_the_operator_and_its_adjoint(op):
    """A is the corruption (times its observation mask); <A x, y> = <x, A^T y> (the dot test)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 1, 16, 16, generator=g, dtype=torch.float64)
    physics = corruption_physics(op, (1, 16, 16))
    torch.testing.assert_close(physics.A(x.float()), op(x.float()))
    y = torch.randn(physics.A(x).shape, generator=g, dtype=torch.float64)
    lhs = (physics.A(x) * y).sum()
    rhs = (x * physics.A_adjoint(y)).sum()
    assert lhs.item() == pytest.approx(rhs.item(), rel=1e-5)
    with pytest.raises(ValueError, match="A\\^T expects"):
        physics.A_adjoint(torch.zeros(1, 1, 3, 3))


@deepinv_only
def test_operator_norm_of_a_mask_and_of_a_block_mean():
    assert operator_norm_squared(Inpainting(standard_mask(1, 16)), (1, 16, 16)) == pytest.approx(1.0, rel=1e-4)
    box = SuperResolution(4, kernel="box")  # mean of 16 pixels: A A^T = I / 16
    assert operator_norm_squared(box, (1, 16, 16)) == pytest.approx(1 / 16, rel=1e-4)


@deepinv_only
def test_project_operators_agree_with_deepinv_up_to_stated_conventions():
    """Our x4 bicubic-antialias down-sampling is DeepInverse's Downsampling(filter="bicubic", factor=4)
    of the image shifted one pixel up and left (we sample the filtered image at block centres,
    4i + 1.5; DeepInverse at 4i + 0.5): equal wherever the 16-tap filter stays inside the image
    (output rows/columns 2-5 of 8); at the border PyTorch renormalises the truncated filter where
    DeepInverse pads.  In-painting is the same product x . M in both."""
    dinv = require_deepinv()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 32, 32, generator=g, dtype=torch.float64) * 2 - 1
    ours = SuperResolution(4, kernel="bicubic-antialias")(x)
    theirs = dinv.physics.Downsampling(img_size=(1, 32, 32), filter="bicubic", factor=4,
                                       padding="circular").double().A(torch.roll(x, (-1, -1), dims=(-2, -1)))
    torch.testing.assert_close(theirs[..., 2:6, 2:6], ours[..., 2:6, 2:6], rtol=0, atol=1e-10)
    assert (theirs - ours).abs().max() > 1e-3  # the border convention differs
    unshifted = dinv.physics.Downsampling(img_size=(1, 32, 32), filter="bicubic", factor=4,
                                          padding="circular").double().A(x)
    assert (unshifted - ours)[..., 2:6, 2:6].abs().max() > 1e-2  # and the phase matters
    mask = standard_mask(0, 32)
    torch.testing.assert_close(dinv.physics.Inpainting(img_size=(1, 32, 32), mask=mask.double()).A(x),
                               Inpainting(mask)(x))


@deepinv_only
def test_tv_denoising_of_a_step_matches_the_closed_form():
    """A = identity (nothing hidden), y a vertical step a | b: the TV-L2 minimiser keeps the step,
    each side moved towards the other by lambda / (its number of columns)."""
    y = torch.full((1, 1, 8, 10), -0.4)
    y[..., 4:] = 0.5
    lam = 0.3
    rec = tv_reconstruction(Inpainting(torch.ones(1, 8, 10)), y, (1, 8, 10), BaselineSetting(lam, iterations=20))
    expected = torch.full_like(y, -0.4 + lam / 4)
    expected[..., 4:] = 0.5 - lam / 6
    torch.testing.assert_close(rec, expected, rtol=0, atol=2e-3)


@wavelets_only
def test_wavelet_denoising_is_soft_thresholding_of_the_detail_coefficients():
    """A = identity: the l1-wavelet minimiser soft-thresholds the Haar detail coefficients at lambda
    (computed independently with PyWavelets on numpy)."""
    pywt = pytest.importorskip("pywt")
    g = torch.Generator().manual_seed(3)
    y = (torch.rand(2, 1, 16, 16, generator=g) * 1.2 - 0.6)
    lam = 0.15
    rec = wavelet_reconstruction(Inpainting(torch.ones(1, 16, 16)), y, (1, 16, 16),
                                 BaselineSetting(lam, iterations=5, wavelet="haar", level=2))
    for b in range(2):
        coeffs = pywt.wavedec2(y[b, 0].double().numpy(), "haar", level=2)
        shrunk = [coeffs[0]] + [tuple(pywt.threshold(c, lam, "soft") for c in level) for level in coeffs[1:]]
        expected = torch.from_numpy(pywt.waverec2(shrunk, "haar")).float().clamp(-1, 1)
        torch.testing.assert_close(rec[b, 0], expected, rtol=0, atol=1e-5)


@wavelets_only
def test_tv_and_wavelet_super_resolution_beat_bicubic_on_blocks():
    """x4 SR of noisy piecewise-constant images: both regularised inverses beat bicubic up-sampling."""
    g = torch.Generator().manual_seed(0)
    truth = torch.full((3, 1, 32, 32), -0.8)
    truth[0, :, 8:24, 4:20] = 0.7
    truth[1, :, 4:28, 12:20] = 0.3
    truth[2, :, 16:, :] = 0.9
    op = SuperResolution(4, kernel="bicubic-antialias")
    y = op(truth) + 0.05 * torch.randn(3, 1, 8, 8, generator=g)
    init = bicubic_upsample(y, 4)

    def err(x):
        return (x - truth).square().mean().item()

    tv = tv_reconstruction(op, y, (1, 32, 32), BaselineSetting(5e-3, iterations=200), init=init)
    wav = wavelet_reconstruction(op, y, (1, 32, 32), BaselineSetting(1e-5, iterations=200, wavelet="haar", level=3),
                                 init=init)
    assert err(tv) < 0.8 * err(init)
    assert err(wav) < err(init)
    with pytest.raises(ValueError, match="observation must have shape"):
        tv_reconstruction(op, torch.zeros(3, 1, 4, 4), (1, 32, 32), BaselineSetting(0.1))
    with pytest.raises(ValueError, match="weight must be >= 0"):
        tv_reconstruction(op, y, (1, 32, 32), BaselineSetting(-1.0))
