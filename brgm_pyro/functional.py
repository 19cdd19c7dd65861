"""Small functions used by several layers, each defined once here.

- ``gaussian_kernel_1d``: the sampled Gaussian of blur, super-resolution and SSIM;
- ``mean_squared_error_255`` / ``rmse_255``: errors on the 0-255 scale (metrics, evaluation, diagnostics);
- ``channel_schedule``: StyleGAN2's feature maps per resolution (generator synthesis, discriminator);
- ``image_shape``: the (C, H, W) of a generator's images.

Only ``torch`` is imported, so every layer may use it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

PIXEL_SCALE_255 = 127.5  # [-1, 1] -> [0, 255]: x_255 = (x + 1) * 127.5


def gaussian_kernel_1d(sigma: float | torch.Tensor, size: int) -> torch.Tensor:
    """Normalised samples of exp(-t^2 / (2 sigma^2)) at the offsets t = i - (size - 1) / 2, i < size.

    A number gives a float64 (size,) kernel; a tensor of sigmas (...) gives (..., size) kernels in
    its dtype and device, differentiable in sigma.
    """
    if size < 1:
        raise ValueError(f"kernel size must be positive, got {size}")
    s = sigma if isinstance(sigma, torch.Tensor) else torch.tensor(float(sigma), dtype=torch.float64)
    t = torch.arange(size, device=s.device, dtype=s.dtype) - (size - 1) / 2
    k = torch.exp(-0.5 * (t / s[..., None]) ** 2)
    return k / k.sum(-1, keepdim=True)


def to_255(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 255] (not rounded), in float64."""
    return (x.double() + 1) * PIXEL_SCALE_255


def mean_squared_error_255(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None,
                           dim: int | tuple[int, ...] | None = None) -> torch.Tensor:
    """Mean of (x_255 - y_255)^2 over ``dim`` (all elements if None), in float64, for x, y in [-1, 1].

    ``mask`` (broadcast to x's shape; 1 = counted) restricts the mean to its elements; a mask
    with no element in a reduced slice gives NaN there (nothing to average).
    """
    if x.shape != y.shape:
        raise ValueError(f"expected two tensors of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    squared = ((x.double() - y.double()) * PIXEL_SCALE_255).square()
    dims = tuple(range(squared.ndim)) if dim is None else dim
    if mask is None:
        return squared.mean(dim=dims)
    weight = mask.to(device=squared.device, dtype=squared.dtype).expand_as(squared)
    return (squared * weight).sum(dim=dims) / weight.sum(dim=dims)


def rmse_255(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None,
             dim: int | tuple[int, ...] | None = None) -> torch.Tensor:
    """Root mean squared error on the 0-255 scale: sqrt(``mean_squared_error_255``)."""
    return mean_squared_error_255(x, y, mask, dim).sqrt()


def channel_schedule(img_resolution: int, channel_base: int, channel_max: int) -> dict[int, int]:
    """Feature maps per block resolution: min(channel_base // res, channel_max), res = 4 .. R."""
    log2 = int(math.log2(img_resolution))
    return {2**i: min(channel_base // 2**i, channel_max) for i in range(2, log2 + 1)}


def image_shape(generator: Any) -> tuple[int, int, int]:
    """(C, H, W) of the square images of a generator (``img_channels``, ``img_resolution``)."""
    return (generator.img_channels, generator.img_resolution, generator.img_resolution)
