"""Compressed sensing: m random Gaussian projections of the image, y = A vec(x), A_ij ~ N(0, 1/m)."""

from __future__ import annotations

import torch

from .base import Corruption


def gaussian_measurement_matrix(num_measurements: int, image_shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """The (m, C*H*W) matrix A with entries N(0, 1/m), drawn from a CPU generator seeded with ``seed``."""
    n = image_shape[0] * image_shape[1] * image_shape[2]
    g = torch.Generator().manual_seed(seed)
    return torch.randn(num_measurements, n, generator=g) / num_measurements**0.5


class CompressedSensing(Corruption):
    """(B, C, H, W) -> (B, 1, 1, m).

    A is a deterministic function of ``seed`` and the image shape.  With ``image_shape`` given it is
    drawn at construction; otherwise on the first call, after which the operator only accepts
    images of that shape.  A is a non-persistent buffer (it is rebuilt from the seed, not saved).
    """

    def __init__(self, num_measurements: int, seed: int = 0, image_shape: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        if not isinstance(num_measurements, int) or num_measurements < 1:
            raise ValueError(f"num_measurements must be a positive integer, got {num_measurements!r}")
        if not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.num_measurements = num_measurements
        self.seed = seed
        self.image_shape: tuple[int, int, int] | None = None
        self.register_buffer("matrix", None, persistent=False)
        if image_shape is not None:
            self._set_shape(image_shape)

    def _set_shape(self, image_shape: tuple[int, int, int]) -> None:
        if len(image_shape) != 3 or any(int(s) < 1 for s in image_shape):
            raise ValueError(f"image_shape must be (C, H, W) with positive sizes, got {tuple(image_shape)}")
        self.image_shape = (int(image_shape[0]), int(image_shape[1]), int(image_shape[2]))
        self.matrix = gaussian_measurement_matrix(self.num_measurements, self.image_shape, self.seed)

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        if self.image_shape is not None and tuple(input_shape) != self.image_shape:
            raise ValueError(
                f"compressed sensing was set up for images of shape {self.image_shape}, got {tuple(input_shape)}"
            )
        return (1, 1, self.num_measurements)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chw = self.check_input(x)
        if self.matrix is None:
            self._set_shape(chw)
        y = x.reshape(x.shape[0], -1) @ self.matrix.to(device=x.device, dtype=x.dtype).t()
        return y.reshape(x.shape[0], 1, 1, -1)

    def describe(self) -> str:
        return f"compressed sensing ({self.num_measurements} Gaussian measurements, seed {self.seed})"
