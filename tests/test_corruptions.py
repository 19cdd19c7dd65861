"""Corruption operators against independent computations, and their input validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage, signal

from brgm_pyro.corruptions import (
    Blur, Compose, CompressedSensing, Denoising, Grayscale, Inpainting, SuperResolution, make_corruption,
    standard_mask, standard_masks,
)


def test_box_super_resolution_is_block_mean():
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    y = SuperResolution(3, "box")(x)
    ref = x.numpy().reshape(2, 3, 4, 3, 4, 3).mean(axis=(3, 5))
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-12)


def test_bicubic_kernels_and_extreme_factor():
    x = torch.rand(1, 1, 64, 64)
    y = SuperResolution(4)(x)
    torch.testing.assert_close(y, F.interpolate(x, size=(16, 16), mode="bicubic", align_corners=False))
    aa = SuperResolution(4, "bicubic-antialias")(x)
    assert not torch.allclose(aa, y)
    assert aa.std() < y.std()  # antialiasing smooths
    # x256 as in the paper's Fig. 6 (1024 -> 4), here 256 -> 4 with a factor of 64.
    big = torch.rand(1, 3, 256, 256)
    assert SuperResolution(64, "box")(big).shape == (1, 3, 4, 4)


def test_gaussian_and_custom_kernel_super_resolution_match_scipy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 8))
    k = rng.random((4, 4))
    y = SuperResolution(2, torch.tensor(k))(torch.tensor(x)[None, None].float())[0, 0].numpy()
    padded = np.pad(x, 1, mode="edge")
    ref = signal.correlate2d(padded, k, mode="valid")[::2, ::2]
    np.testing.assert_allclose(y, ref, atol=1e-5)
    g = SuperResolution(4, "gaussian", sigma=1.0)
    assert g.weights.shape == (8, 8) and torch.isclose(g.weights.sum(), torch.tensor(1.0))
    const = g(torch.full((1, 1, 16, 16), 0.3))
    torch.testing.assert_close(const, torch.full((1, 1, 4, 4), 0.3))


def test_super_resolution_errors():
    with pytest.raises(ValueError, match="does not divide the image size 30x30"):
        SuperResolution(4)(torch.zeros(1, 1, 30, 30))
    with pytest.raises(ValueError, match="unknown kernel"):
        SuperResolution(4, "lanczos")
    with pytest.raises(ValueError, match="positive integer"):
        SuperResolution(0)
    with pytest.raises(ValueError, match="at least factor x factor"):
        SuperResolution(4, torch.ones(3, 3))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        SuperResolution(2)(torch.zeros(3, 8, 8))


def test_inpainting_masks_observed_pixels_and_validates(tmp_path):
    mask = torch.zeros(8, 8)
    mask[:, :4] = 1
    op = Inpainting(mask)
    x = torch.randn(2, 3, 8, 8)
    y = op(x)
    torch.testing.assert_close(y[..., :4], x[..., :4])
    assert (y[..., 4:] == 0).all()
    obs = op.observation_mask((3, 8, 8))
    assert obs.shape == (3, 8, 8) and obs.sum() == 3 * 8 * 4
    with pytest.raises(ValueError, match=r"mask of shape \(1, 8, 8\) does not fit images of shape \(3, 16, 16\)"):
        op(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="only 0"):
        Inpainting(torch.full((8, 8), 0.5))
    with pytest.raises(ValueError, match="does not fit"):
        Inpainting(torch.ones(2, 8, 8))(torch.zeros(1, 3, 8, 8))
    # From an image file: white = observed.
    Image.fromarray((mask.numpy() * 255).astype(np.uint8)).save(tmp_path / "m.png")
    torch.testing.assert_close(Inpainting(tmp_path / "m.png").mask[0], mask)
    grey = np.full((8, 8), 128, np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    with pytest.raises(ValueError, match="not binary"):
        Inpainting(tmp_path / "grey.png")


def test_standard_masks_scale_with_resolution():
    m32, m1024 = standard_masks(32), standard_masks(1024)
    assert m32.shape == (7, 1, 32, 32) and m1024.shape == (7, 1, 1024, 1024)
    assert m32[0, 0, :, :16].all() and not m32[0, 0, :, 16:].any()  # right half hidden
    assert not m32[6, 0, 16:].any() and m32[6, 0, :16].all()  # bottom half hidden
    # The observed fraction is the same at every resolution (up to rounding of the box edges).
    torch.testing.assert_close(m32.mean(dim=[1, 2, 3]), m1024.mean(dim=[1, 2, 3]), atol=0.03, rtol=0)
    assert torch.equal(standard_mask(9, 32), m32[2])  # cyclic


def test_blur_matches_scipy_convolution():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 10))
    op = Blur.gaussian(1.2)
    y = op(torch.tensor(x)[None, None].float())[0, 0].numpy()
    ref = ndimage.convolve(x, op.kernel.numpy().astype(np.float64), mode="mirror")
    np.testing.assert_allclose(y, ref, atol=1e-5)
    motion = Blur.motion(5, 0)
    assert motion.kernel[2].sum() == pytest.approx(1.0) and motion.kernel.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="odd size"):
        Blur(torch.ones(4, 4))


def test_grayscale_compressed_sensing_denoising_compose():
    x = torch.rand(2, 3, 8, 8)
    g = Grayscale()(x)
    torch.testing.assert_close(g[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])
    with pytest.raises(ValueError, match="3 channels"):
        Grayscale()(torch.zeros(1, 1, 8, 8))
    cs = CompressedSensing(20, (3, 8, 8), seed=3)
    y = cs(x)
    assert y.shape == (2, 1, 1, 20)
    torch.testing.assert_close(y[:, 0, 0], x.reshape(2, -1) @ cs.matrix.t())
    assert torch.equal(CompressedSensing(20, (3, 8, 8), seed=3).matrix, cs.matrix)
    with pytest.raises(ValueError, match="set up for images of shape"):
        cs(torch.zeros(1, 3, 16, 16))
    assert torch.equal(Denoising()(x), x)
    mask = torch.ones(1, 8, 8)
    mask[..., 0] = 0
    composed = Compose(Blur.gaussian(0.8), Inpainting(mask))
    torch.testing.assert_close(composed(x), Inpainting(mask)(Blur.gaussian(0.8)(x)))
    assert composed.observation_mask((3, 8, 8)).sum() == 3 * 8 * 7
    with pytest.raises(ValueError, match="put masking operators last"):
        Compose(Inpainting(mask), SuperResolution(2)).observation_mask((3, 8, 8))


def test_make_corruption_by_task_name():
    assert isinstance(make_corruption("super-resolution", factor=4), SuperResolution)
    assert isinstance(make_corruption("blur", sigma=1.0), Blur)
    with pytest.raises(ValueError, match="unknown task 'deraining'; valid tasks: super-resolution"):
        make_corruption("deraining")


def test_corruptions_are_differentiable():
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    for op in (SuperResolution(4), SuperResolution(2, "gaussian"), Blur.motion(3, 30), Grayscale(),
               Inpainting(standard_mask(0, 16))):
        op(x).sum().backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        x.grad = None
