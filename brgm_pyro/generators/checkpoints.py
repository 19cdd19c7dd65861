"""Errors and the strict state-dict check shared by every checkpoint loader."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
    non_tensor = sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
    if non_tensor:
        raise CheckpointError(f"{describe(source)}: entries that are not tensors: {non_tensor[:8]}")
    expected = module.state_dict()
    _compare(expected, state, source)
    with torch.no_grad():
        module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


# ---------------------------------------------------------------- architecture checks before any build

ARCHITECTURE_BOUNDS = {
    "img_resolution": (8, 1024), "img_channels": (1, 4), "z_dim": (1, 4096), "w_dim": (1, 4096),
    "mapping_layers": (1, 32), "channel_base": (1, 1 << 22), "channel_max": (1, 4096),
}
SUPPORTED_IMG_CHANNELS = (1, 3)
"""Inclusive bounds on the integer StyleGAN2 fields read from a checkpoint."""


def check_config(config: Any, source: str | Path | None = None) -> None:
    """Refuse architecture fields of the wrong type or outside ``ARCHITECTURE_BOUNDS``.

    Also: the resolution is a power of two, every block has at least one channel
    (``channel_base // img_resolution >= 1``), the float fields are finite and in range.
    """
    name = describe(source)
    for key, (low, high) in ARCHITECTURE_BOUNDS.items():
        value = getattr(config, key)
        if type(value) is not int:
            raise CheckpointError(f"{name}: architecture field {key} must be an int, got {_brief(value)}")
        if not low <= value <= high:
            raise CheckpointError(f"{name}: architecture field {key}={_brief(value)} is outside [{low}, {high}]")
    if config.img_channels not in SUPPORTED_IMG_CHANNELS:
        raise CheckpointError(f"{name}: img_channels={config.img_channels}; supported: {SUPPORTED_IMG_CHANNELS}")
    if config.img_resolution & (config.img_resolution - 1):
        raise CheckpointError(f"{name}: img_resolution={config.img_resolution} is not a power of two")
    if config.channel_base // config.img_resolution < 1:
        raise CheckpointError(f"{name}: channel_base={config.channel_base} gives no channels at resolution "
                              f"{config.img_resolution}")
    for key, low, high in (("mapping_lr_multiplier", 1e-8, 1e4), ("w_avg_beta", 0.0, 1.0)):
        value = getattr(config, key)
        if not _finite_number(value) or not low <= value <= high:
            raise CheckpointError(f"{name}: {key}={_brief(value)} is not a finite number in [{low}, {high}]")
    clamp = config.conv_clamp
    if clamp is not None and (not _finite_number(clamp) or not 0 < clamp <= 1e9):
        raise CheckpointError(f"{name}: conv_clamp={_brief(clamp)} is not None or a positive finite number")
    taps = config.resample_filter
    if type(taps) not in (tuple, list) or not 1 <= len(taps) <= 16 \
            or not all(_finite_number(t) and abs(t) < 1e6 for t in taps) or sum(taps) == 0:
        raise CheckpointError(f"{name}: resample_filter={_brief(taps)} is not 1-16 finite taps with a non-zero sum")


def _finite_number(value: Any) -> bool:
    """An int (not bool) or a finite float; huge ints are left to the range checks."""
    return type(value) is int or (type(value) is float and math.isfinite(value))


def _brief(value: Any) -> str:
    if type(value) is int and value.bit_length() > 64:
        return "a huge int"
    if isinstance(value, (int, float, str, bool)) or value is None:
        text = repr(value)
        return text if len(text) < 60 else text[:60] + "..."
    if isinstance(value, (tuple, list)) and len(value) <= 16 and all(
            isinstance(v, float) or (type(v) is int and v.bit_length() <= 64) for v in value):
        return repr(value)
    return f"a {type(value).__name__}"


def check_finite(state: Mapping[str, Any], source: str | Path | None = None) -> None:
    """Refuse NaN / infinite values in floating-point tensors, naming them."""
    bad = [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
           and v.numel() and not bool(torch.isfinite(v).all())]
    if bad:
        shown = ", ".join(sorted(bad)[:8]) + (f", ... ({len(bad)} in all)" if len(bad) > 8 else "")
        raise CheckpointError(f"{describe(source)} holds NaN or infinite weights in: {shown}")


def charge_state(state: Mapping[Any, Any], max_bytes: int | None, source: str | Path | None = None,
                 what: str = "state entries") -> None:
    """Refuse state entries that hold more than ``max_bytes`` bytes in all, before anything is copied.

    Every tensor entry is charged ``numel x max(4, itemsize)`` (it becomes float32 in the network);
    an entry that aliases another tensor or storage is charged again, and a stride-0 view is charged
    at its full size. ``max_bytes=None``: no limit (objects built in memory by the caller).
    """
    if max_bytes is None:
        return
    total = 0
    for value in state.values():
        if isinstance(value, torch.Tensor):
            total += value.numel() * max(4, value.element_size())
    if total > max_bytes:
        raise CheckpointError(f"{describe(source)}: its {what} hold {total} bytes in all (aliases and stride-0 views "
                              f"counted in full), more than the {max_bytes} bytes allowed for a file of this size")


def build_stylegan2(config: Any, state: Mapping[str, Any], source: str | Path | None = None,
                    own_buffers: tuple[str, ...] = (), max_state_bytes: int | None = None) -> nn.Module:
    """``StyleGAN2Generator(config)`` loaded strictly from ``state``, built only once the file matches it.

    Order: the config is bounds-checked; the shapes the module would have are computed without
    building it and compared with the tensors present (missing / unexpected / wrong shape); the
    weights are checked finite; only then is the module built and filled. Keys ending in
    ``own_buffers`` may be absent from ``state``: they are taken from the freshly built module.
    ``max_state_bytes``: ``charge_state``'s limit; since the entries must then match the module's
    shapes, the module built is no larger than it.
    """
    from .stylegan2 import StyleGAN2Generator
    from .stylegan2.generator import stylegan2_state_shapes

    check_config(config, source)
    charge_state(state, max_state_bytes, source)
    for key, value in state.items():
        if type(key) is not str:
            raise CheckpointError(f"{describe(source)}: a state-dict key is a {type(key).__name__}, not a string")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{describe(source)}: entry {_brief(key)} is a {type(value).__name__}, not a tensor")
    expected = stylegan2_state_shapes(config)
    full: dict[str, Any] = dict(state)
    for key in expected:
        if own_buffers and key not in full and key.endswith(own_buffers):
            full[key] = None  # filled after the build
    _compare(expected, full, source)
    check_finite(state, source)
    try:
        module = StyleGAN2Generator(config)
    except ValueError as err:
        raise CheckpointError(f"{describe(source)}: unsupported architecture: {err}") from err
    fresh = module.state_dict()
    for key, value in full.items():
        if value is None:
            full[key] = fresh[key]
    load_state_dict_strict(module, full, source)
    return module


def _compare(expected: Mapping[str, Any], state: Mapping[str, Any], source: str | Path | None) -> None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(k if len(k) <= 100 else k[:100] + "..." for k in set(state) - set(expected))
    bad_shape = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(_shape(expected[k]))}"
        for k in set(expected) & set(state)
        if state[k] is not None and tuple(state[k].shape) != tuple(_shape(expected[k]))
    )
    if missing or unexpected or bad_shape:
        parts = []
        for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", bad_shape)):
            if items:
                shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
                parts.append(f"{title}: {shown}")
        raise CheckpointError(f"{describe(source)} does not match the generator it describes; " + "; ".join(parts))


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else tuple(value)
