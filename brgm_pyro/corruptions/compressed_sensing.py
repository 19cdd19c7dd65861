"""Compressed sensing: m random Gaussian projections of the image, y = A vec(x), A_ij ~ N(0, 1/m)."""

from __future__ import annotations

import torch

from .base import Corruption


class CompressedSensing(Corruption):
    """(B, C, H, W) -> (B, 1, 1, m).  The matrix A (m, C*H*W) is drawn from ``seed`` for ``image_shape``."""

    def __init__(self, num_measurements: int, image_shape: tuple[int, int, int], seed: int = 0) -> None:
        super().__init__()
        if num_measurements < 1:
            raise ValueError(f"num_measurements must be >= 1, got {num_measurements}")
        if len(image_shape) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {image_shape}")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.seed = seed
        n = self.image_shape[0] * self.image_shape[1] * self.image_shape[2]
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("matrix", torch.randn(num_measurements, n, generator=g) / num_measurements**0.5)

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        if tuple(input_shape) != self.image_shape:
            raise ValueError(f"compressed sensing was set up for images of shape {self.image_shape}, got {tuple(input_shape)}")
        return (1, 1, self.matrix.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        y = x.reshape(x.shape[0], -1) @ self.matrix.to(x.dtype).t()
        return y.reshape(x.shape[0], 1, 1, -1)

    def describe(self) -> str:
        return f"compressed sensing ({self.matrix.shape[0]} Gaussian measurements, seed {self.seed})"
