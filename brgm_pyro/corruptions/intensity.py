"""Intensity gain and offset: I = gain * x + offset (an unknown exposure / black level)."""

from __future__ import annotations

import torch

from .base import Corruption
from .latent import LatentParameter


class Intensity(Corruption):
    """(B, C, H, W) -> same shape: gain * x + offset, pointwise.

    gain, offset: numbers or ``LatentParameter``s (sites ``"corruption.gain"``, ``"corruption.offset"``).
    """

    pointwise = True

    def __init__(self, gain: float | LatentParameter = 1.0, offset: float | LatentParameter = 0.0) -> None:
        super().__init__()
        self.declare_parameter("gain", gain)
        self.declare_parameter("offset", offset)
        self._text = ", ".join(f"{n}={v.describe() if isinstance(v, LatentParameter) else f'{v:g}'}"
                               for n, v in (("gain", gain), ("offset", offset)))

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return tuple(input_shape)  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        gain = self.parameter_batch("gain", x)[:, None, None, None]
        offset = self.parameter_batch("offset", x)[:, None, None, None]
        return x * gain + offset

    def describe(self) -> str:
        return f"intensity ({self._text})"
