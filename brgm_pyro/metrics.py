"""Image-quality metrics of the paper's Tables 1-3: LPIPS, RMSE, PSNR, SSIM and MAE.

Inputs are batches (B, C, H, W) in [-1, 1]; each function returns one value per image (B,).
RMSE, MAE and PSNR are on the 0-255 scale; SSIM uses an 11x11 Gaussian window (sigma 1.5),
K1 = 0.01, K2 = 0.03, data range 255, averaged over the valid region and the channels.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from .functional import gaussian_kernel_1d, mean_squared_error_255, rmse_255, to_255
from .perceptual import build_lpips

__all__ = ["to_255", "rmse", "mae", "psnr", "ssim", "LPIPSMetric", "PIXEL_METRICS", "compute_metrics", "summarize",
           "format_mean_std", "summarize_metrics"]

def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError("expected two (B, C, H, W) batches of the same shape, "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")


def rmse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Root mean squared error on the 0-255 scale, per image."""
    _check_pair(x, y)
    return rmse_255(x, y, dim=(1, 2, 3))


def mae(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute error on the 0-255 scale, per image."""
    _check_pair(x, y)
    return (to_255(x) - to_255(y)).abs().mean(dim=[1, 2, 3])


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, data range 255, per image (inf for identical images)."""
    _check_pair(x, y)
    mse = mean_squared_error_255(x, y, dim=(1, 2, 3))
    return 10 * torch.log10(255.0**2 / mse)


def ssim(x: torch.Tensor, y: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity (Wang et al., 2004), Gaussian window, per image."""
    _check_pair(x, y)
    if min(x.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {tuple(x.shape[-2:])}")
    a, b = to_255(x), to_255(y)
    c = a.shape[1]
    g = gaussian_kernel_1d(sigma, 11)
    win = torch.outer(g, g).to(a.device)[None, None].expand(c, 1, 11, 11)

    def filt(t: torch.Tensor) -> torch.Tensor:  # 'valid' Gaussian filtering
        return F.conv2d(t, win, groups=c)

    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a.square()
    var_b = filt(b * b) - mu_b.square()
    cov = filt(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a.square() + mu_b.square() + c1) * (var_a + var_b + c2))
    return s.mean(dim=[1, 2, 3])


class LPIPSMetric:
    """LPIPS distance per image (``net`` = "alex" or "vgg"), images area-resized to ``resize`` if given."""

    def __init__(self, net: str = "alex", pretrained: bool = True, weights: str | Path | None = None,
                 resize: int | None = None, device: str | torch.device = "cpu") -> None:
        self.model = build_lpips(net, pretrained=pretrained, weights=weights).to(device)
        self.resize = resize
        self.device = device

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_pair(x, y)
        if x.shape[1] not in (1, 3):
            raise ValueError(f"LPIPS needs grayscale or RGB images (1 or 3 channels), got shape {tuple(x.shape)}")
        x, y = x.to(self.device).float(), y.to(self.device).float()
        if x.shape[1] == 1:
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        if self.resize is not None:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="area")
            y = F.interpolate(y, size=(self.resize, self.resize), mode="area")
        return self.model(x, y).flatten().cpu().double()


PIXEL_METRICS = {"rmse": rmse, "psnr": psnr, "ssim": ssim, "mae": mae}


def compute_metrics(x: torch.Tensor, y: torch.Tensor,
                    lpips_metric: LPIPSMetric | None = None) -> dict[str, torch.Tensor]:
    """Per-image values (B,) of the paper's five numbers: "lpips" (only with ``lpips_metric``),
    "rmse", "psnr", "ssim" and "mae" between reconstructions x and true images y."""
    values = {} if lpips_metric is None else {"lpips": lpips_metric(x, y)}
    values.update({name: fn(x, y) for name, fn in PIXEL_METRICS.items()})
    return values


def summarize(values: torch.Tensor) -> tuple[float, float]:
    """Mean and (sample) standard deviation of per-image values."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if v.numel() == 0:
        raise ValueError("no values to summarize")
    std = v.std().item() if v.numel() > 1 else 0.0
    return v.mean().item(), std


def format_mean_std(values: torch.Tensor, digits: int = 3) -> str:
    mean, std = summarize(values)
    if math.isinf(mean):
        return "inf"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def summarize_metrics(values: dict[str, torch.Tensor]) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation over a set of every metric of ``compute_metrics``."""
    return {name: summarize(v) for name, v in values.items()}
