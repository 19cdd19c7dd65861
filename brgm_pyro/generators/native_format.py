"""The project's own generator format: a ``torch.save`` dict read with ``weights_only=True``.

Layout (version 1)::

    {"format": "brgm-pyro-generator", "version": 1, "architecture": "stylegan2",
     "config": StyleGAN2Config.to_dict(), "state_dict": {...}, "metadata": {...}}

Only plain containers, numbers, strings and tensors are stored, so loading never runs code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .checkpoints import CheckpointError, describe, load_state_dict_strict
from .stylegan2 import StyleGAN2Config, StyleGAN2Generator

FORMAT_NAME = "brgm-pyro-generator"
FORMAT_VERSION = 1
ARCHITECTURES = {"stylegan2": (StyleGAN2Generator, StyleGAN2Config)}


def _check_plain(value: Any, where: str) -> None:
    """Metadata must survive ``weights_only`` loading: plain Python values only."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"metadata keys must be strings, got {k!r} at {where}")
            _check_plain(v, f"{where}.{k}")
        return
    raise TypeError(f"metadata value at {where} has type {type(value).__name__}; use plain Python values")


def save_generator(generator: StyleGAN2Generator, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
    """Write ``generator`` (config + float32 CPU state dict + metadata) to ``path``."""
    if not isinstance(generator, StyleGAN2Generator):
        raise TypeError(f"save_generator supports StyleGAN2Generator, got {type(generator).__name__}")
    metadata = dict(metadata or {})
    _check_plain(metadata, "metadata")
    state = {k: v.detach().to("cpu", torch.float32).clone() for k, v in generator.state_dict().items()}
    payload = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "architecture": "stylegan2",
        "config": generator.config.to_dict(),
        "state_dict": state,
        "metadata": metadata,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)


def is_native(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("format") == FORMAT_NAME


def generator_from_native(payload: dict[str, Any], source: str | Path | None = None) -> StyleGAN2Generator:
    """Build the generator described by an already loaded native payload."""
    if not is_native(payload):
        raise CheckpointError(f"{describe(source)} is not a brgm-pyro generator file (no format={FORMAT_NAME!r})")
    version = payload.get("version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{describe(source)} has format version {version!r}; this brgm-pyro reads version {FORMAT_VERSION}"
        )
    arch = payload.get("architecture")
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"{describe(source)}: unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    for key in ("config", "state_dict"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(f"{describe(source)}: missing or malformed {key!r}")
    cls, config_cls = ARCHITECTURES[arch]
    try:
        config = config_cls.from_dict(payload["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{describe(source)}: bad generator config: {err}") from err
    generator = cls(config)
    load_state_dict_strict(generator, payload["state_dict"], source)
    generator.metadata = dict(payload.get("metadata") or {})
    return generator.eval()


def load_native(path: str | Path) -> StyleGAN2Generator:
    """Read a generator written by ``save_generator`` (``torch.load(weights_only=True)``)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # truncated zip, foreign pickle, ... -> one clear message
        raise CheckpointError(f"{describe(path)} could not be read as a brgm-pyro generator "
                              f"(truncated or corrupt file?): {err}") from err
    return generator_from_native(payload, path)
