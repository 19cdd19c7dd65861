"""Errors and the strict state-dict check shared by every checkpoint loader."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint could not be read or does not describe a supported generator."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle asked for a global outside the allow-list; nothing from it was executed."""


def describe(source: str | Path | None) -> str:
    return "checkpoint" if source is None else f"checkpoint {str(source)!r}"


def load_state_dict_strict(
    module: nn.Module, state: Mapping[str, torch.Tensor], source: str | Path | None = None
) -> None:
    """Copy ``state`` into ``module``: every tensor used, every parameter and buffer filled.

    Raises ``CheckpointError`` listing the missing, unexpected and mis-shaped entries, so a
    user sees at once what kind of checkpoint they hold instead of a generic torch error.
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    bad_shape = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or bad_shape:
        parts = []
        for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", bad_shape)):
            if items:
                shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
                parts.append(f"{title}: {shown}")
        raise CheckpointError(f"{describe(source)} does not match the generator it describes; " + "; ".join(parts))
    non_tensor = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if non_tensor:
        raise CheckpointError(f"{describe(source)}: entries that are not tensors: {non_tensor}")
    with torch.no_grad():
        module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
