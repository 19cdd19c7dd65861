"""The forward-operator interface: a corruption f maps a clean image to what is observed.

A corruption is a ``torch.nn.Module`` (so masks and kernels move with ``.to(device)``):

- ``forward(x)`` / ``f(x)``: (B, C, H, W) -> (B, C', H', W'), differentiable in x (the A(x) of
  an inverse problem; f in Eqs. 3-4 of the paper).
- ``output_shape(input_shape)``: (C, H, W) -> (C', H', W'), validating the input shape.
- ``observation_mask(input_shape)``: (C', H', W') float tensor, 1 where an output value is
  observed and 0 where it is not, or ``None`` when every output value is observed.  The
  likelihoods count only observed values.
- ``describe()``: a one-line human description.
"""

from __future__ import annotations

import torch
from torch import nn


class Corruption(nn.Module):
    """Base class of forward corruption operators.  Subclasses implement ``forward`` and
    ``output_shape`` and may override ``observation_mask``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        raise NotImplementedError  # pragma: no cover - abstract

    def observation_mask(self, input_shape: tuple[int, int, int]) -> torch.Tensor | None:
        self.output_shape(input_shape)  # validates
        return None

    def describe(self) -> str:
        return type(self).__name__

    def check_input(self, x: torch.Tensor) -> tuple[int, int, int]:
        """Raise ``ValueError`` unless x is (B, C, H, W) and valid for this operator; return (C, H, W)."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{type(self).__name__} expects images of shape (B, C, H, W), got {shape}")
        chw = (int(x.shape[1]), int(x.shape[2]), int(x.shape[3]))
        self.output_shape(chw)
        return chw

    def extra_repr(self) -> str:
        return self.describe()
