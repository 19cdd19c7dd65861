"""Metrics against NumPy and scikit-image on real images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from brgm_pyro.metrics import (
    LPIPSMetric, compute_metrics, format_mean_std, mae, psnr, rmse, ssim, summarize, summarize_metrics,
)
from brgm_pyro.perceptual import MissingWeightsError


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny CNN passes run ~30x faster on one thread when the cores are shared (no oversubscription)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
    ref = structural_similarity(clean, noisy, data_range=255, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
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


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_metric_matches_lpips_package(net):
    import lpips

    from brgm_pyro.perceptual import _skip_random_init

    metric = LPIPSMetric(net, pretrained=False)
    with _skip_random_init():  # every backbone tensor is overwritten below; lin weights come from lpips
        reference = lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()
    reference.net.load_state_dict(metric.model.net.state_dict())
    size = 32 if net == "alex" else 16
    x, y = torch.rand(2, 3, size, size) * 2 - 1, torch.rand(2, 3, size, size) * 2 - 1
    torch.testing.assert_close(metric(x, y).float(), reference(x, y).flatten().detach(), rtol=1e-5, atol=1e-6)
    gray = metric(x[:, :1], y[:, :1])  # grayscale repeated to RGB
    expected = reference(x[:, :1].expand(-1, 3, -1, -1), y[:, :1].expand(-1, 3, -1, -1)).flatten().detach()
    torch.testing.assert_close(gray.float(), expected, rtol=1e-5, atol=1e-6)
    assert metric(x, x).abs().max() < 1e-6
    with pytest.raises(ValueError, match="1 or 3 channels"):
        metric(torch.zeros(1, 2, size, size), torch.zeros(1, 2, size, size))


def test_lpips_metric_without_weights_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth"):
        LPIPSMetric("alex")


def test_compute_and_summarize_the_five_metrics(camera_pair):
    clean, noisy = camera_pair
    x = torch.cat([as_tensor(noisy), as_tensor(clean), as_tensor(255 - clean)])
    y = torch.cat([as_tensor(clean)] * 3)
    values = compute_metrics(x, y)
    assert set(values) == {"rmse", "psnr", "ssim", "mae"} and all(v.shape == (3,) for v in values.values())
    assert values["ssim"][1].item() == pytest.approx(1.0) and values["mae"][1] == 0
    assert values["mae"][2].item() == pytest.approx(np.abs(255 - 2 * clean.astype(np.float64)).mean())
    summary = summarize_metrics({"rmse": values["rmse"][[0, 2]]})
    ref = np.array([values["rmse"][0].item(), values["rmse"][2].item()])
    assert summary["rmse"] == pytest.approx((ref.mean(), ref.std(ddof=1)))

    class FakeLPIPS:
        def __call__(self, a, b):
            return torch.full((a.shape[0],), 0.5, dtype=torch.float64)

    assert torch.equal(compute_metrics(x, y, FakeLPIPS())["lpips"], torch.full((3,), 0.5, dtype=torch.float64))
