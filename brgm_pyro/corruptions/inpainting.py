"""In-painting: I = x . M with a binary mask M (Sec. 2.2); only observed pixels enter the likelihood."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import Corruption
from .masks import as_binary_mask


class Inpainting(Corruption):
    """Pixelwise multiplication by a binary mask (1 = observed), broadcast over channels.

    ``forward`` returns x . M (zeros in the holes); ``observation_mask`` returns M broadcast to
    (C, H, W), so a likelihood counts only observed pixels and the holes are never treated as data.
    """

    pointwise = True

    def __init__(self, mask: torch.Tensor | np.ndarray | str | Path) -> None:
        super().__init__()
        self.register_buffer("mask", as_binary_mask(mask))  # (1 or C, H, W)
        if not bool(self.mask.any()):
            raise ValueError("the in-painting mask observes no pixel (all 0 / black = hidden): there is nothing to "
                             "reconstruct from; mark the observed pixels 1 (white)")

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = input_shape
        mc, mh, mw = self.mask.shape
        if (mh, mw) != (h, w) or mc not in (1, c):
            raise ValueError(f"mask of shape {tuple(self.mask.shape)} does not fit images of shape {(c, h, w)}")
        return (c, h, w)

    def observation_mask(self, input_shape: tuple[int, int, int]) -> torch.Tensor:
        return self.mask.expand(*self.output_shape(input_shape)).clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return x * self.mask.to(x.dtype)

    def describe(self) -> str:
        frac = self.mask.mean().item()
        return f"in-painting ({100 * frac:.0f}% of pixels observed)"
