"""The simplest corruptions: identity (denoising) and RGB -> grayscale (colourisation)."""

from __future__ import annotations

import torch

from .base import Corruption

# ITU-R BT.601 luma weights.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


class Denoising(Corruption):
    """The identity: the observation is the clean image plus noise (the likelihood's sigma)."""

    pointwise = True

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return tuple(input_shape)  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return x

    def describe(self) -> str:
        return "denoising (identity)"


class Grayscale(Corruption):
    """(B, 3, H, W) -> (B, 1, H, W) with BT.601 luma weights (colourisation task)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("weights", torch.tensor(LUMA_WEIGHTS).reshape(1, 3, 1, 1))

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = input_shape
        if c != 3:
            raise ValueError(f"grayscale corruption needs RGB images (3 channels), got {c} channels")
        return (1, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return (x * self.weights.to(x.dtype)).sum(dim=1, keepdim=True)

    def describe(self) -> str:
        return "grayscale (colourisation)"
