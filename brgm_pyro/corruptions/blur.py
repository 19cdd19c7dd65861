"""Blur (deblurring task): same-size convolution with a normalised kernel, reflect padding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Corruption


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
    def gaussian(cls, sigma: float, size: int | None = None) -> "Blur":
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        size = 2 * math.ceil(3 * sigma) + 1 if size is None else size
        t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        k1 = torch.exp(-0.5 * (t / sigma) ** 2)
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
