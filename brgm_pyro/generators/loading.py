"""``load_generator``: one entry point for every supported checkpoint, chosen by content.

- a registered name (``"fashion-mnist-32"``, the bundled model) or a path;
- a zip ``torch.save`` file: the project's own format (``format="brgm-pyro-generator"``) or a
  rosinality checkpoint (``g_ema``);
- a plain pickle: an NVIDIA stylegan2-ada-pytorch / stylegan3 network pickle (``G_ema``).

The file name and extension are never used to decide. Every file is read by the safe readers of
``checkpoint_files`` / ``safe_pickle`` (nothing from it is imported or called; limits tied to the
file size); every failure is a ``CheckpointError`` naming the file and the problem.
"""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from ..assets import GENERATOR_FILES, pretrained_path
from .checkpoint_files import (CheckpointNotFoundError, loading_errors, read_checkpoint_bytes, read_plain_pickle,
                               read_torch_zip, sniff, state_bytes_limit)
from .checkpoints import CheckpointError, describe
from .native_format import generator_from_native, is_native
from .nvidia_pickle import generator_from_network
from .rosinality import load_rosinality
from .safe_pickle import describe_keys, short_repr
from .stylegan2 import StyleGAN2Generator
from .stylegan2.layers import NOISE_MODES, NoiseMode


def registered_generators() -> dict[str, Path]:
    """Names that ``load_generator`` accepts instead of a path (the bundled models)."""
    out = {}
    for name, filename in GENERATOR_FILES.items():
        try:
            out[name] = pretrained_path(filename)
        except FileNotFoundError:
            continue
    return out


def _resolve(path_or_name: str | Path) -> Path:
    """A bundled name (a ``str`` equal to one) always means the bundled model; anything else is a path.

    A local file that happens to carry a bundled name is loaded only when given as a path
    (``"./fashion-mnist-32"`` or a ``Path``); if one exists, a warning says which was loaded.
    """
    if isinstance(path_or_name, str) and path_or_name in GENERATOR_FILES:
        if _exists(Path(path_or_name)):
            warnings.warn(
                f"{path_or_name!r} is the name of a bundled model, which is what is loaded; the local file "
                f"{path_or_name!r} is ignored. To load that file, pass it as a path: './{path_or_name}'.",
                UserWarning, stacklevel=3)
        return pretrained_path(GENERATOR_FILES[path_or_name])
    if not isinstance(path_or_name, (str, Path)):
        raise TypeError(f"load_generator expects a bundled name or a path, got {type(path_or_name).__name__}")
    try:
        path = Path(path_or_name)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path_or_name!r} is not a usable path: {err}") from None
    if not _exists(path) and not _exists(path, follow=False):
        raise CheckpointNotFoundError(
            f"no generator checkpoint at {str(path)!r}, and it is not a bundled name "
            f"({', '.join(sorted(GENERATOR_FILES))}). Download the model (e.g. the BRGM authors' ffhq.pkl or "
            "NVIDIA's stylegan2-ada-pytorch pickles) and pass its path."
        )
    return path


def _exists(path: Path, follow: bool = True) -> bool:
    """``path.exists()`` (``lstat`` when not ``follow``), with a bad path (too long, NUL byte, no
    permission on a folder) a ``CheckpointError`` instead of an ``OSError``."""
    try:
        os.stat(path) if follow else os.lstat(path)
        return True
    except FileNotFoundError:
        return False
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return err.errno == errno.ELOOP
        raise CheckpointError(f"{describe(_short(path))} cannot be accessed: {err.strerror}") from None
    except ValueError as err:  # embedded NUL byte
        raise CheckpointError(f"{describe(_short(path))} is not a usable path: {err}") from None


def _short(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 300 else text[:300] + "..."


def read_generator_file(path: Path) -> StyleGAN2Generator:
    """The generator in the checkpoint file ``path`` (any supported format), on the CPU.

    Every failure (resource limits included: ``checkpoint_files.loading_errors``) is a ``CheckpointError``.
    """
    with loading_errors(path):
        data = read_checkpoint_bytes(path)
    with loading_errors(path, len(data)):
        return _read_generator(data, path)


def _read_generator(data: Any, path: Path) -> StyleGAN2Generator:
    limit = state_bytes_limit(len(data))
    kind = sniff(data)
    if kind == "zip":
        payload = read_torch_zip(data, path)
        del data
        if is_native(payload):
            return generator_from_native(payload, path, limit)
        if isinstance(payload, dict) and "g_ema" in payload:
            return load_rosinality(payload, name=path, max_state_bytes=limit)
        raise CheckpointError(f"{describe(path)} is a torch file but neither a brgm-pyro generator nor a "
                              f"rosinality checkpoint (top-level keys: {describe_keys(payload)})")
    if kind == "pickle":
        payload = read_plain_pickle(data, path)
        del data
        if type(payload) is int:  # legacy (pre-1.6) torch.save stream starts with a magic number
            raise CheckpointError(f"{describe(path)} is a legacy torch.save file; re-save it with a current torch "
                                  "(torch.save(torch.load(path), new_path)) and load that")
        if not isinstance(payload, dict) or "G_ema" not in payload:
            raise CheckpointError(f"{describe(path)} is a pickle without 'G_ema' (found {describe_keys(payload)})")
        return generator_from_network(payload["G_ema"], path, limit)
    raise CheckpointError(f"{describe(path)} is neither a torch zip file nor a pickle "
                          f"(it starts with {short_repr(bytes(data[:8]))})")


def load_generator(
    path_or_name: str | Path = "fashion-mnist-32",
    device: str | torch.device | None = None,
    noise_mode: NoiseMode = "const",
) -> StyleGAN2Generator:
    """Load a StyleGAN2 generator, in eval mode, on ``device`` (default: CUDA when available).

    ``path_or_name``: a bundled name (a string such as ``"fashion-mnist-32"``, always the bundled
    model even if a file of that name exists here: pass ``"./fashion-mnist-32"`` for the file) or
    the path of a checkpoint. Raises ``CheckpointError`` (a ``ValueError``) for any unreadable,
    unsafe or inconsistent file, ``CheckpointNotFoundError`` (also a ``FileNotFoundError``) when
    nothing exists at the path.

    >>> G = load_generator("fashion-mnist-32", device="cpu")
    >>> G.img_channels, G.img_resolution, G.num_ws, G.w_dim
    (1, 32, 8, 64)
    >>> ws = G.mapping(torch.randn(2, G.z_dim))              # z -> W+ latents (B, num_ws, w_dim)
    >>> images = G.synthesis(ws)                             # W+ -> images (B, C, R, R) in [-1, 1]
    >>> images.shape
    torch.Size([2, 1, 32, 32])
    """
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
    path = _resolve(path_or_name)
    generator = read_generator_file(path)
    generator.noise_mode = noise_mode
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return generator.to(device).eval().requires_grad_(False)


__all__ = ["load_generator", "registered_generators", "CheckpointError"]
