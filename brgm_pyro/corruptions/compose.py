"""Composition of corruptions: Compose(f1, f2)(x) = f2(f1(x))."""

from __future__ import annotations

import torch
from torch import nn

from .base import Corruption


class Compose(Corruption):
    """Apply ``f1``, then ``f2``, ... .  An observation mask of an inner operator is carried through
    later operators only when they are pointwise (``pointwise = True``, e.g. Denoising, Inpainting);
    otherwise which outputs are observed is ambiguous and ``observation_mask`` raises."""

    def __init__(self, *operators: Corruption) -> None:
        super().__init__()
        if not operators:
            raise ValueError("Compose needs at least one corruption")
        for op in operators:
            if not isinstance(op, Corruption):
                raise ValueError(f"Compose takes Corruption objects, got {type(op).__name__}")
        self.operators = nn.ModuleList(operators)

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        shape = tuple(input_shape)
        for op in self.operators:
            shape = op.output_shape(shape)
        return shape  # type: ignore[return-value]

    def observation_mask(self, input_shape: tuple[int, int, int]) -> torch.Tensor | None:
        shape, mask = tuple(input_shape), None
        for op in self.operators:
            own = op.observation_mask(shape)
            if mask is not None and not getattr(op, "pointwise", False):
                raise ValueError(
                    f"cannot carry the observation mask of an earlier operator through {op.describe()}: "
                    "put masking operators last"
                )
            shape = op.output_shape(shape)
            if own is not None:
                mask = own if mask is None else mask * own
        return mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        for op in self.operators:
            x = op(x)
        return x

    def describe(self) -> str:
        return " then ".join(op.describe() for op in self.operators)
