"""The project's own generator format: a ``torch.save`` dict of plain values and tensors.

Layout (version 1)::

    {"format": "brgm-pyro-generator", "version": 1, "architecture": "stylegan2",
     "config": StyleGAN2Config.to_dict(), "state_dict": {...}, "metadata": {...}}

Only plain containers, numbers, strings and tensors are stored. Reading goes through
``checkpoint_files.read_torch_zip`` (CRC-checked members, the safe unpickler, tensors checked
against their storages), never ``torch.load``; the config is bounds-checked and compared with the
tensors' shapes before the network is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .checkpoint_files import loading_errors, read_checkpoint_bytes, read_torch_zip, sniff, state_bytes_limit
from .checkpoints import CheckpointError, build_stylegan2, describe
from .metadata import validate_metadata
from .safe_pickle import short_repr
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
    return isinstance(payload, dict) and type(payload.get("format")) is str and payload["format"] == FORMAT_NAME


def generator_from_native(payload: dict[str, Any], source: str | Path | None = None,
                          max_state_bytes: int | None = None) -> StyleGAN2Generator:
    """Build the generator described by an already loaded native payload (its metadata validated by
    ``metadata.validate_metadata``; ``max_state_bytes``: see ``checkpoints.charge_state``)."""
    if not is_native(payload):
        raise CheckpointError(f"{describe(source)} is not a brgm-pyro generator file (no format={FORMAT_NAME!r})")
    version = payload.get("version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise CheckpointError(
            f"{describe(source)} has format version {short_repr(version)}; "
            f"this brgm-pyro reads version {FORMAT_VERSION}"
        )
    arch = payload.get("architecture")
    if type(arch) is not str or arch not in ARCHITECTURES:
        raise CheckpointError(f"{describe(source)}: unknown architecture {short_repr(arch)}; "
                              f"known: {sorted(ARCHITECTURES)}")
    for key in ("config", "state_dict"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(f"{describe(source)}: missing or malformed {key!r}")
    _, config_cls = ARCHITECTURES[arch]
    config_dict = payload["config"]
    if any(type(k) is not str for k in config_dict):
        raise CheckpointError(f"{describe(source)}: bad generator config: non-string keys")
    taps = config_dict.get("resample_filter", (1, 3, 3, 1))
    if type(taps) not in (list, tuple) or len(taps) > 16:
        raise CheckpointError(f"{describe(source)}: bad generator config: resample_filter {short_repr(taps)}")
    try:
        config = config_cls.from_dict(config_dict)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{describe(source)}: bad generator config: {err}") from err
    metadata = validate_metadata(payload.get("metadata"), source)  # before the (costly) build
    generator = build_stylegan2(config, payload["state_dict"], source, max_state_bytes=max_state_bytes)
    generator.metadata = metadata
    return generator.eval()


def load_native(path: str | Path) -> StyleGAN2Generator:
    """Read a generator written by ``save_generator`` (safe zip reader, never ``torch.load``)."""
    with loading_errors(path):
        data = read_checkpoint_bytes(Path(path))
    with loading_errors(path, len(data)):
        if sniff(data) != "zip":
            raise CheckpointError(f"{describe(path)} is not a torch zip file, so not a brgm-pyro generator")
        return generator_from_native(read_torch_zip(data, path), path, state_bytes_limit(len(data)))
