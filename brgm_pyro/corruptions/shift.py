"""Sub-pixel translation of the image (a misaligned observation), differentiable in the shift."""

from __future__ import annotations

import math

import torch

from .base import Corruption
from .latent import LatentParameter


def fourier_shift(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """out(y, x) = in(y - dy, x - dx) for x (N, C, H, W) and shifts dx, dy (N,) in pixels, by a phase
    ramp in the 2-D Fourier domain (exact for band-limited periodic images; the image wraps around).

    The Nyquist frequency of an even-sized axis is shifted by cos only (its sine part has no real
    counterpart), which keeps the output real and the operator smooth in (dx, dy).
    """
    n, c, h, w = x.shape
    ky = torch.fft.fftfreq(h, device=x.device, dtype=x.dtype)  # cycles per pixel
    kx = torch.fft.rfftfreq(w, device=x.device, dtype=x.dtype)
    phase_y = torch.exp(-2j * math.pi * ky[None, :] * dy[:, None])  # (N, H)
    phase_x = torch.exp(-2j * math.pi * kx[None, :] * dx[:, None])  # (N, W//2+1)
    if h % 2 == 0:
        nyquist = torch.arange(h, device=x.device) == h // 2
        phase_y = torch.where(nyquist, torch.cos(math.pi * dy)[:, None].to(phase_y.dtype), phase_y)
    if w % 2 == 0:
        nyquist = torch.arange(w // 2 + 1, device=x.device) == w // 2
        phase_x = torch.where(nyquist, torch.cos(math.pi * dx)[:, None].to(phase_x.dtype), phase_x)
    spectrum = torch.fft.rfft2(x) * (phase_y[:, None, :, None] * phase_x[:, None, None, :])
    return torch.fft.irfft2(spectrum, s=(h, w))


class Shift(Corruption):
    """(B, C, H, W) -> (B, C, H, W): the image translated by (dx, dy) pixels (right, down).

    dx, dy: numbers or ``LatentParameter``s (sites ``"corruption.shift_x"``, ``"corruption.shift_y"``);
    sub-pixel shifts by Fourier phase ramps (``fourier_shift``), so the image wraps around its
    borders: fine for objects on a uniform background, as in Fashion-MNIST.
    """

    def __init__(self, dx: float | LatentParameter = 0.0, dy: float | LatentParameter = 0.0) -> None:
        super().__init__()
        self.declare_parameter("dx", dx, site="shift_x")
        self.declare_parameter("dy", dy, site="shift_y")
        self._text = ", ".join(f"{n}={v.describe() if isinstance(v, LatentParameter) else f'{v:g}'}"
                               for n, v in (("dx", dx), ("dy", dy)))

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return tuple(input_shape)  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return fourier_shift(x, self.parameter_batch("dx", x), self.parameter_batch("dy", x))

    def describe(self) -> str:
        return f"shift ({self._text} px)"
