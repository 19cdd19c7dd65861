"""Metrics against NumPy and scikit-image on real images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from brgm_pyro.metrics import LPIPSMetric, format_mean_std, mae, psnr, rmse, ssim, summarize


def as_tensor(img: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(img.astype(np.float64) / 127.5 - 1)
    return t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def camera_pair():
    clean = data.camera()[::4, ::4]  # 128x128 grayscale
    rng = np.random.default_rng(0)
    noisy = np.clip(clean.astype(np.float64) + rng.normal(0, 12, clean.shape), 0, 255).round().astype(np.uint8)
    return clean, noisy


def test_rmse_mae_psnr_against_numpy_and_skimage(camera_pair):
    clean, noisy = camera_pair
    x, y = as_tensor(clean), as_tensor(noisy)
    diff = clean.astype(np.float64) - noisy
    assert rmse(x, y).item() == pytest.approx(np.sqrt((diff**2).mean()), rel=1e-10)
    assert mae(x, y).item() == pytest.approx(np.abs(diff).mean(), rel=1e-10)
    assert psnr(x, y).item() == pytest.approx(peak_signal_noise_ratio(clean, noisy, data_range=255), rel=1e-10)


def test_ssim_against_skimage_gray_and_rgb(camera_pair):
    clean, noisy = camera_pair
    ref = structural_similarity(clean, noisy, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim(as_tensor(clean), as_tensor(noisy)).item() == pytest.approx(ref, abs=1e-6)
    astro = data.astronaut()[::4, ::4]
    blurred = np.clip(astro.astype(np.float64) * 0.9 + 10, 0, 255).astype(np.uint8)
    ref = structural_similarity(astro, blurred, data_range=255, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, channel_axis=2)
    assert ssim(as_tensor(astro), as_tensor(blurred)).item() == pytest.approx(ref, abs=1e-6)


def test_batched_values_and_summary(camera_pair):
    clean, noisy = camera_pair
    x = torch.cat([as_tensor(clean), as_tensor(clean)])
    y = torch.cat([as_tensor(noisy), as_tensor(clean)])
    r = rmse(x, y)
    assert r.shape == (2,) and r[1] == 0 and torch.isinf(psnr(x, y)[1])
    mean, std = summarize(torch.tensor([1.0, 2.0, 3.0]))
    assert mean == 2.0 and std == pytest.approx(1.0)
    assert format_mean_std(torch.tensor([1.0, 3.0]), 2) == "2.00 ± 1.41"
    with pytest.raises(ValueError, match="same shape"):
        rmse(x, y[:, :, :10])


def test_lpips_metric_matches_lpips_package():
    import lpips

    metric = LPIPSMetric("alex", pretrained=False)
    reference = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    reference.net.load_state_dict(metric.model.net.state_dict())
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(metric(x, y).float(), reference(x, y).flatten().detach(), rtol=1e-5, atol=1e-6)
    assert metric(x[:, :1], y[:, :1]).shape == (2,)  # grayscale repeated to RGB
