"""Blur (deblurring task): same-size convolution with a normalised kernel, reflect padding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..functional import gaussian_kernel_1d
from .base import Corruption
from .latent import LatentParameter, positive_prior_size

gaussian_kernels_1d = gaussian_kernel_1d  # the old name: (N,) sigmas -> (N, size) kernels


def separable_conv(x: torch.Tensor, kernels: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """Convolve each image n of x (N, C, H, W) (already padded) with the separable kernel
    outer(kernels[n], kernels[n]) ((N, K) 1-D kernels; symmetric, so correlation = convolution)."""
    n, c, h, w = x.shape
    k = kernels.repeat_interleave(c, dim=0)  # (N*C, K)
    y = F.conv2d(x.reshape(1, n * c, h, w), k[:, None, None, :], stride=(1, stride), groups=n * c)
    y = F.conv2d(y, k[:, None, :, None], stride=(stride, 1), groups=n * c)
    return y.reshape(n, c, *y.shape[-2:])


class Blur(Corruption):
    """(B, C, H, W) -> (B, C, H, W): convolution with a (K, K) kernel (K odd), reflect-padded.

    Use ``Blur.gaussian(sigma)`` or ``Blur.motion(length, angle_degrees)``, or pass any kernel.
    """

    def __init__(self, kernel: torch.Tensor) -> None:
        super().__init__()
        kernel = torch.as_tensor(kernel, dtype=torch.float32)
        if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
            raise ValueError(f"blur kernel must be a square 2-D tensor of odd size, got shape {tuple(kernel.shape)}")
        if kernel.sum().abs() < 1e-8:
            raise ValueError("blur kernel must not sum to zero")
        self.register_buffer("kernel", kernel / kernel.sum())
        self.name = "custom"

    @classmethod
    def gaussian(cls, sigma: float | LatentParameter, size: int | None = None) -> "Blur":
        """Gaussian blur of std ``sigma`` pixels (size 2 ceil(3 sigma) + 1); a ``LatentParameter``
        makes sigma unknown (site ``"corruption.blur_sigma"``, kernel size from the prior's 99% quantile)."""
        if isinstance(sigma, LatentParameter):
            return GaussianBlur(sigma, size)
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        size = 2 * math.ceil(3 * sigma) + 1 if size is None else size
        k1 = gaussian_kernel_1d(sigma, size)
        op = cls(torch.outer(k1, k1).float())
        op.name = f"gaussian sigma={sigma:g}"
        return op

    @classmethod
    def motion(cls, length: int, angle: float = 0.0) -> "Blur":
        """A line of ``length`` pixels at ``angle`` degrees (0 = horizontal), rasterised by sampling."""
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        size = length if length % 2 else length + 1
        k = torch.zeros(size, size)
        c = (size - 1) / 2
        theta = math.radians(angle)
        for s in torch.linspace(-(length - 1) / 2, (length - 1) / 2, 4 * length):
            x = round(c + float(s) * math.cos(theta))
            y = round(c - float(s) * math.sin(theta))
            k[y, x] = 1.0
        op = cls(k)
        op.name = f"motion length={length} angle={angle:g}"
        return op

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = input_shape
        r = self.kernel.shape[0] // 2
        if h <= r or w <= r:
            raise ValueError(f"image {h}x{w} is too small for a {self.kernel.shape[0]}x{self.kernel.shape[0]} kernel")
        return (c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, _, _ = self.check_input(x)
        r = self.kernel.shape[0] // 2
        k = self.kernel.flip([0, 1]).to(x.dtype)[None, None].expand(c, 1, *self.kernel.shape)
        return F.conv2d(F.pad(x, [r, r, r, r], mode="reflect"), k, groups=c)

    def describe(self) -> str:
        return f"blur ({self.name} kernel)"


class GaussianBlur(Blur):
    """Gaussian blur whose sigma may be latent: the kernel is rebuilt from sigma on every call,
    differentiably, one kernel per image when the model binds one sigma per draw.

    ``size``: kernel side (odd); default 2 ceil(3 s99) + 1 with s99 the prior's 99% quantile.
    A fixed sigma gives the same operator as ``Blur.gaussian(sigma)`` up to float rounding.
    """

    def __init__(self, sigma: float | LatentParameter, size: int | None = None) -> None:
        if isinstance(sigma, LatentParameter):
            if size is None:
                size = positive_prior_size(sigma, 3.0)
            start = float(sigma.initial_value())
        else:
            if not sigma > 0:
                raise ValueError(f"sigma must be positive, got {sigma}")
            size = 2 * math.ceil(3 * sigma) + 1 if size is None else size
            start = float(sigma)
        if size % 2 == 0 or size < 1:
            raise ValueError(f"kernel size must be odd and positive, got {size}")
        k1 = gaussian_kernel_1d(start, size)
        super().__init__(torch.outer(k1, k1).float())  # the kernel at the starting sigma (sizes, display)
        self.declare_parameter("sigma", sigma, site="blur_sigma")
        self.name = (f"gaussian sigma {sigma.describe()}" if isinstance(sigma, LatentParameter)
                     else f"gaussian sigma={sigma:g}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        r = self.kernel.shape[0] // 2
        sigma = self.parameter_batch("sigma", x)
        return separable_conv(F.pad(x, [r, r, r, r], mode="reflect"), gaussian_kernel_1d(sigma, self.kernel.shape[0]))
