"""Load rosinality/stylegan2-pytorch checkpoints (``.pt`` with ``g_ema`` and ``latent_avg``).

Same architecture as NVIDIA's, other names. The weights carry the same parametrisation
(equalised learning rate applied at run time in both), so the mapping is a renaming plus
reshapes (per generator with L synthesis layers, resolution R = 2^k):

    style.{i+1}.weight / .bias          -> mapping.fc{i}.weight / .bias   (style.0 is PixelNorm)
    latent_avg                          -> mapping.w_avg
    input.input           (1, C, 4, 4)  -> synthesis.b4.const (C, 4, 4)
    conv1                               -> synthesis.b4.conv1
    convs.{2j}, convs.{2j+1}            -> synthesis.b{2^(j+3)}.conv0 / .conv1
    to_rgb1, to_rgbs.{j}                -> synthesis.b4.torgb, synthesis.b{2^(j+3)}.torgb
    <conv>.conv.weight    (1, O, I, k, k) -> <layer>.weight (O, I, k, k)
    <conv>.conv.modulation.*            -> <layer>.affine.*
    <conv>.noise.weight   (1,)          -> <layer>.noise_strength ()
    <conv>.activate.bias  (O,)          -> <layer>.bias
    <rgb>.bias            (1, C, 1, 1)  -> <block>.torgb.bias (C,)
    noises.noise_{n}      (1, 1, r, r)  -> the n-th layer's noise_const (r, r)

The blur kernels (``*.blur.kernel``, ``*.upsample.kernel``) are the [1,3,3,1] filter times the
up-sampling gain; they are checked against our filter rather than copied.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import torch

from .checkpoint_files import loading_errors, read_checkpoint_bytes, read_torch_zip, sniff, state_bytes_limit
from .checkpoints import ARCHITECTURE_BOUNDS, CheckpointError, build_stylegan2, charge_state, describe
from .safe_pickle import short_repr
from .stylegan2 import StyleGAN2Config, StyleGAN2Generator, setup_filter

MAX_BLOCKS = int(math.log2(ARCHITECTURE_BOUNDS["img_resolution"][1])) - 1


def _layer_names(num_blocks: int) -> list[tuple[str, str]]:
    """(rosinality conv prefix, NVIDIA layer prefix) in the order of the noise buffers."""
    names = [("conv1", "synthesis.b4.conv1")]
    for j in range(num_blocks - 1):
        res = 2 ** (j + 3)
        names.append((f"convs.{2 * j}", f"synthesis.b{res}.conv0"))
        names.append((f"convs.{2 * j + 1}", f"synthesis.b{res}.conv1"))
    return names


def rosinality_to_nvidia(g_ema: dict[str, torch.Tensor], latent_avg: torch.Tensor | None,
                         source: Any = None, max_state_bytes: int | None = None
                         ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Rename a rosinality ``g_ema`` state dict; returns (config fields, NVIDIA-named state dict).

    Every input tensor must be consumed; leftovers raise ``CheckpointError``. ``max_state_bytes``:
    the entries (and ``latent_avg``) are charged first (``checkpoints.charge_state``), since
    renaming may copy each of them once.
    """
    if isinstance(g_ema, dict):
        charge_state({**g_ema, "\0latent_avg": latent_avg}, max_state_bytes, source, "g_ema entries")
    try:
        return _rename(g_ema, latent_avg, source)
    except (IndexError, RuntimeError, TypeError, ValueError) as err:  # tensors of the wrong rank, ...
        raise CheckpointError(f"{describe(source)}: malformed rosinality g_ema ({type(err).__name__}: "
                              f"{short_repr(str(err), 120)[1:-1]})") from err


def _rename(g_ema: Any, latent_avg: Any, source: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    if not isinstance(g_ema, dict):
        raise CheckpointError(f"{describe(source)}: g_ema is a {type(g_ema).__name__}, not a state dict")
    for key, value in g_ema.items():
        if type(key) is not str or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{describe(source)}: g_ema entry {short_repr(key)} is not a named tensor")
    if latent_avg is not None and not isinstance(latent_avg, torch.Tensor):
        raise CheckpointError(f"{describe(source)}: latent_avg is a {type(latent_avg).__name__}, not a tensor")
    src = dict(g_ema)
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in src:
            raise CheckpointError(f"{describe(source)}: rosinality g_ema lacks {key!r}")
        used.add(key)
        return src[key]

    style_ids = sorted({int(m.group(1)) for k in src if (m := re.fullmatch(r"style\.(\d{1,3})\.weight", k))})
    if not style_ids or "input.input" not in src:
        raise CheckpointError(f"{describe(source)}: not a rosinality StyleGAN2 generator (no style.* / input.input)")
    if style_ids != list(range(1, len(style_ids) + 1)):
        raise CheckpointError(f"{describe(source)}: mapping layers style.{style_ids} are not consecutive from 1")
    if len(style_ids) > ARCHITECTURE_BOUNDS["mapping_layers"][1]:
        raise CheckpointError(f"{describe(source)}: {len(style_ids)} mapping layers, more than the supported "
                              f"{ARCHITECTURE_BOUNDS['mapping_layers'][1]}")
    rgb_ids = sorted({int(m.group(1)) for k in src if (m := re.fullmatch(r"to_rgbs\.(\d{1,3})\.bias", k))})
    if rgb_ids != list(range(len(rgb_ids))) or len(rgb_ids) + 1 > MAX_BLOCKS:
        raise CheckpointError(f"{describe(source)}: to_rgbs.* blocks {rgb_ids[:12]} are not 0..n-1 with n < "
                              f"{MAX_BLOCKS}")
    num_blocks = len(rgb_ids) + 1
    resolution = 2 ** (num_blocks + 1)

    out: dict[str, torch.Tensor] = {}
    for i, sid in enumerate(style_ids):
        out[f"mapping.fc{i}.weight"] = take(f"style.{sid}.weight")
        out[f"mapping.fc{i}.bias"] = take(f"style.{sid}.bias")
    w_dim, z_dim = out["mapping.fc0.weight"].shape[0], out["mapping.fc0.weight"].shape[1]
    out["mapping.w_avg"] = (latent_avg if latent_avg is not None else torch.zeros(w_dim)).reshape(-1)

    out["synthesis.b4.const"] = take("input.input")[0]
    for n, (ros, nv) in enumerate(_layer_names(num_blocks)):
        out[f"{nv}.weight"] = take(f"{ros}.conv.weight")[0]
        out[f"{nv}.affine.weight"] = take(f"{ros}.conv.modulation.weight")
        out[f"{nv}.affine.bias"] = take(f"{ros}.conv.modulation.bias")
        out[f"{nv}.noise_strength"] = take(f"{ros}.noise.weight").reshape(())
        out[f"{nv}.bias"] = take(f"{ros}.activate.bias")
        out[f"{nv}.noise_const"] = take(f"noises.noise_{n}")[0, 0]
    rgb = [("to_rgb1", "synthesis.b4.torgb")] + [(f"to_rgbs.{j}", f"synthesis.b{2 ** (j + 3)}.torgb") for j in rgb_ids]
    for ros, nv in rgb:
        out[f"{nv}.weight"] = take(f"{ros}.conv.weight")[0]
        out[f"{nv}.affine.weight"] = take(f"{ros}.conv.modulation.weight")
        out[f"{nv}.affine.bias"] = take(f"{ros}.conv.modulation.bias")
        out[f"{nv}.bias"] = take(f"{ros}.bias").reshape(-1)

    # The FIR kernels: rosinality stores the 2-D [1,3,3,1] filter times the up-sampling gain 4.
    reference = setup_filter((1, 3, 3, 1)) * 4
    for key in [k for k in src if k.endswith((".blur.kernel", ".upsample.kernel"))]:
        kernel = take(key)
        if kernel.shape != reference.shape or not torch.allclose(kernel.float(), reference, atol=1e-6):
            raise CheckpointError(f"{describe(source)}: {key} is not the [1,3,3,1] filter this loader supports")

    leftover = sorted(set(src) - used)
    if leftover:
        raise CheckpointError(f"{describe(source)}: unexpected entries in g_ema: {leftover[:8]}")

    channels = {nv: out[f"{nv}.weight"].shape[0] for _, nv in _layer_names(num_blocks)}
    img_channels = out["synthesis.b4.torgb.weight"].shape[0]
    fields = dict(img_resolution=resolution, img_channels=img_channels, z_dim=z_dim, w_dim=w_dim,
                  mapping_layers=len(style_ids), _channels=channels)
    return fields, out


def _infer_channel_schedule(channels: dict[str, int], resolution: int) -> tuple[int, int]:
    """Find (channel_base, channel_max) reproducing the per-resolution widths of the checkpoint."""
    per_res = {4: channels["synthesis.b4.conv1"]}
    for res in (2 ** k for k in range(3, int(math.log2(resolution)) + 1)):
        per_res[res] = channels[f"synthesis.b{res}.conv1"]
    channel_max = max(per_res.values())
    for res in sorted(per_res):
        if per_res[res] < channel_max:
            base = per_res[res] * res
            break
    else:
        base = channel_max * resolution
    if any(min(base // r, channel_max) != c for r, c in per_res.items()):
        raise CheckpointError(
            f"the channel widths {per_res} do not follow min(channel_base / res, channel_max); "
            "rosinality's channel_multiplier schedule differs from NVIDIA's at this size"
        )
    return base, channel_max


def load_torch_file(path: str | Path) -> Any:
    """A ``torch.save`` zip file read by the safe reader (``checkpoint_files.read_torch_zip``).

    rosinality's training checkpoints store their command-line ``args``; the ``argparse.Namespace``
    comes back as an inert ``safe_pickle.Namespace`` dict of its values.
    """
    with loading_errors(path):
        data = read_checkpoint_bytes(Path(path))
    with loading_errors(path, len(data)):
        if sniff(data) != "zip":
            raise CheckpointError(f"{describe(path)} is not a torch zip file")
        return read_torch_zip(data, path)


def load_rosinality(source: str | Path | dict[str, Any], mapping_lr_multiplier: float = 0.01,
                    name: str | Path | None = None, max_state_bytes: int | None = None) -> StyleGAN2Generator:
    """Load the ``g_ema`` of a rosinality checkpoint (a path, or an already read payload dict).

    ``name``: the file a payload dict came from, for error messages; ``max_state_bytes``: see
    ``checkpoints.charge_state`` (set from the file size when ``source`` is a path).
    """
    name = source if isinstance(source, (str, Path)) else name
    if isinstance(source, (str, Path)):
        with loading_errors(source):
            size = os.stat(source).st_size
        payload = load_torch_file(source)
        max_state_bytes = state_bytes_limit(size)
    else:
        payload = source
    if not isinstance(payload, dict) or "g_ema" not in payload:
        raise CheckpointError(f"{describe(name)} has no 'g_ema' state dict")
    fields, state = rosinality_to_nvidia(payload["g_ema"], payload.get("latent_avg"), name, max_state_bytes)
    channels = fields.pop("_channels")
    try:
        base, cmax = _infer_channel_schedule(channels, fields["img_resolution"])
    except CheckpointError as err:
        raise CheckpointError(f"{describe(name)}: {err}") from None
    config = StyleGAN2Config(channel_base=base, channel_max=cmax, mapping_lr_multiplier=mapping_lr_multiplier,
                             **fields)
    # Our module also holds the FIR filter buffers; they are filled from our own config.
    generator = build_stylegan2(config, state, name, own_buffers=("resample_filter",), max_state_bytes=max_state_bytes)
    generator.metadata = {"source_format": "rosinality"}
    return generator.eval()
