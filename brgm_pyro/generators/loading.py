"""``load_generator``: one entry point for every supported checkpoint, chosen by content.

- a registered name (``"fashion-mnist-32"``, the bundled model) or a path;
- a zip ``torch.save`` file: the project's own format (``format="brgm-pyro-generator"``) or a
  rosinality checkpoint (``g_ema``), both read with ``weights_only=True``;
- a plain pickle: an NVIDIA stylegan2-ada-pytorch / stylegan3 network pickle (``G_ema``),
  read by the restricted unpickler of ``nvidia_pickle``.

The file name and extension are never used to decide.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from .checkpoints import CheckpointError, describe
from .native_format import generator_from_native, is_native
from .nvidia_pickle import generator_from_network, read_network_pickle
from .rosinality import load_rosinality, load_torch_file
from .stylegan2 import StyleGAN2Generator
from .stylegan2.layers import NOISE_MODES, NoiseMode


def registered_generators() -> dict[str, Path]:
    """Names that ``load_generator`` accepts instead of a path (the bundled models)."""
    from ..bundled import GENERATOR_FILES, pretrained_path

    out = {}
    for name, filename in GENERATOR_FILES.items():
        try:
            out[name] = pretrained_path(filename)
        except FileNotFoundError:
            continue
    return out


def _resolve(path_or_name: str | Path) -> Path:
    path = Path(path_or_name)
    if path.is_file():
        return path
    from ..bundled import GENERATOR_FILES, pretrained_path

    if isinstance(path_or_name, str) and path_or_name in GENERATOR_FILES:
        return pretrained_path(GENERATOR_FILES[path_or_name])
    if path.is_dir():
        raise CheckpointError(f"{str(path)!r} is a directory; pass the checkpoint file inside it")
    raise FileNotFoundError(
        f"no generator checkpoint at {str(path)!r}, and it is not a bundled name "
        f"({', '.join(sorted(GENERATOR_FILES))}). Download the model (e.g. the BRGM authors' ffhq.pkl or "
        "NVIDIA's stylegan2-ada-pytorch pickles) and pass its path."
    )


def load_generator(
    path_or_name: str | Path = "fashion-mnist-32",
    device: str | torch.device | None = None,
    noise_mode: NoiseMode = "const",
) -> StyleGAN2Generator:
    """Load a StyleGAN2 generator, in eval mode, on ``device`` (default: CUDA when available)."""
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
    path = _resolve(path_or_name)
    if path.stat().st_size == 0:
        raise CheckpointError(f"{describe(path)} is empty")
    if zipfile.is_zipfile(path):
        try:
            payload = load_torch_file(path)
        except Exception as err:
            raise CheckpointError(f"{describe(path)} is a torch zip file that torch.load(weights_only=True) "
                                  f"cannot read (truncated, corrupt, or holding code objects): {err}") from err
        if is_native(payload):
            generator = generator_from_native(payload, path)
        elif isinstance(payload, dict) and "g_ema" in payload:
            generator = load_rosinality(payload)
        else:
            keys = sorted(payload)[:10] if isinstance(payload, dict) else type(payload).__name__
            raise CheckpointError(f"{describe(path)} is a torch file but neither a brgm-pyro generator nor a "
                                  f"rosinality checkpoint (top-level keys: {keys})")
    else:
        with open(path, "rb") as f:
            head = f.read(2)
        if len(head) < 2 or head[0] != 0x80:
            raise CheckpointError(f"{describe(path)} is neither a torch zip file nor a pickle")
        data = read_network_pickle(path)
        if isinstance(data, int):  # legacy (pre-1.6) torch.save stream starts with a magic number
            raise CheckpointError(f"{describe(path)} is a legacy torch.save file; re-save it with a current torch "
                                  "(torch.save(torch.load(path), new_path)) and load that")
        if not isinstance(data, dict) or "G_ema" not in data:
            keys = sorted(data)[:10] if isinstance(data, dict) else type(data).__name__
            raise CheckpointError(f"{describe(path)} is a pickle without 'G_ema' (found {keys})")
        generator = generator_from_network(data["G_ema"], path)
    generator.noise_mode = noise_mode
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return generator.to(device).eval().requires_grad_(False)


__all__ = ["load_generator", "registered_generators", "CheckpointError"]
