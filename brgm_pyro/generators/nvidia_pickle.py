"""Read NVIDIA stylegan2-ada-pytorch / stylegan3 network pickles without running their code.

Those ``.pkl`` files (NVIDIA's FFHQ model, the BRGM authors' FFHQ / X-ray / brain models) hold a
dict with ``G``, ``D``, ``G_ema``, ... Every network object in them is a "persistent" object that
pickles as ``torch_utils.persistence._reconstruct_persistent_obj(meta)``, where ``meta`` carries
the full Python source of the defining module (``module_src``), the class name and the object's
``__dict__`` (``_parameters``, ``_buffers``, ``_modules``, ``_init_kwargs``, ...). NVIDIA's own
loader executes ``module_src``. We never do: the safe unpickler of ``safe_pickle`` maps that reducer
to an inert ``PersistentObject`` record and refuses every global outside its allow-list. The
record tree (a tree: shared or self-containing records are refused, depth at most
``MAX_RECORD_DEPTH``) is flattened to a state dict and turned into our ``StyleGAN2Generator``
after the architecture in its kwargs has been checked against the tensors present.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO

import torch

from . import checkpoint_files
from .checkpoint_files import loading_errors, read_checkpoint_bytes, read_plain_pickle, sniff, state_bytes_limit
from .checkpoints import CheckpointError, build_stylegan2, describe
from .safe_pickle import EasyDict, PersistentObject, describe_keys, short_repr
from .stylegan2 import StyleGAN2Config, StyleGAN2Generator

MAX_RECORD_DEPTH = 32
MAX_RECORDS = 100_000
MAX_NAME = 200
"""Longest module / parameter / buffer name (a state-dict key is at most 33 of them joined)."""
MAX_KEY_CHARS = 16 << 20
"""Characters of all state-dict keys made while flattening (names shared through the memo are
joined again for every key, so this bounds the work, not the file)."""


def record_state_dict(root: PersistentObject, source: Any = None) -> dict[str, torch.Tensor]:
    """Flat ``name -> tensor`` dict of a record tree, as ``nn.Module.state_dict`` would give.

    Linear in the number of records: each record may be reached once (a record shared by two
    parents or containing itself is refused), depth at most ``MAX_RECORD_DEPTH``.
    """
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    key_chars = 0
    pending: list[tuple[PersistentObject, str, int]] = [(root, "", 0)]
    while pending:
        record, prefix, depth = pending.pop()
        where = prefix[:-1] or "G_ema"
        if id(record) in seen:
            raise CheckpointError(f"{describe(source)}: network record {short_repr(where, 200)} is reached twice "
                                  "(a shared sub-module or a record containing itself); a network pickle is a tree")
        seen.add(id(record))
        if depth > MAX_RECORD_DEPTH:
            raise CheckpointError(f"{describe(source)}: network records nest deeper than {MAX_RECORD_DEPTH} levels")
        if len(seen) > MAX_RECORDS:
            raise CheckpointError(f"{describe(source)}: more than {MAX_RECORDS} network records")
        listed = _field(record, "_non_persistent_buffers_set", ())
        if not isinstance(listed, (set, frozenset, list, tuple)) or any(type(n) is not str for n in listed):
            raise CheckpointError(f"{describe(source)}: {where}._non_persistent_buffers_set is not a set of names")
        skip = frozenset(listed)  # membership tests in O(1): a long list searched per tensor is quadratic
        for group in ("_parameters", "_buffers"):
            tensors = _field(record, group, {})
            if not isinstance(tensors, dict):
                raise CheckpointError(f"{describe(source)}: {where}.{group} is a {type(tensors).__name__}, not a dict")
            for name, value in tensors.items():
                if type(name) is not str or len(name) > MAX_NAME:
                    raise CheckpointError(f"{describe(source)}: {where}.{group} has a key that is not a name of at "
                                          f"most {MAX_NAME} characters")
                if value is None or name in skip:
                    continue
                key_chars += len(prefix) + len(name)
                if key_chars > MAX_KEY_CHARS:
                    raise CheckpointError(f"{describe(source)}: its state-dict keys take more than {MAX_KEY_CHARS} "
                                          "characters in all")
                if not isinstance(value, torch.Tensor):
                    raise CheckpointError(f"{describe(source)}: {prefix + name} is a {type(value).__name__}, "
                                          "not a tensor")
                out[prefix + name] = value.detach()
        modules = _field(record, "_modules", {})
        if not isinstance(modules, dict):
            raise CheckpointError(f"{describe(source)}: {where}._modules is a {type(modules).__name__}, not a dict")
        for name, child in modules.items():
            if child is None:
                continue
            if type(name) is not str or len(name) > MAX_NAME or not isinstance(child, PersistentObject):
                raise CheckpointError(f"{describe(source)}: sub-module {prefix}{short_repr(name)} is a "
                                      f"{type(child).__name__}, not a persistent network object")
            pending.append((child, f"{prefix}{name}.", depth + 1))
    return out


def _field(record: PersistentObject, key: str, default: Any) -> Any:
    """``record.state[key]``, ``default`` when absent or None (never tests a file value for truth)."""
    value = record.state.get(key)
    return default if value is None else value


def read_network_pickle(source: str | Path | BinaryIO) -> Any:
    """Unpickle a network pickle into plain containers, tensors and ``PersistentObject`` records."""
    name: Any = source if isinstance(source, (str, Path)) else getattr(source, "name", None)
    with loading_errors(name):
        if isinstance(source, (str, Path)):
            data = read_checkpoint_bytes(Path(source))
        else:
            limit = checkpoint_files.MAX_CHECKPOINT_BYTES
            data = source.read(limit + 1)
            if len(data) > limit:
                raise CheckpointError(f"{describe(name)} is larger than the {limit}-byte limit")
            if not data:
                raise CheckpointError(f"{describe(name)} is empty")
    with loading_errors(name, len(data)):
        if sniff(data) != "pickle":
            raise CheckpointError(f"{describe(name)} is not a pickle (it starts with {short_repr(bytes(data[:8]))})")
        return read_plain_pickle(data, name)


def _config_from_record(G: PersistentObject, state: dict[str, torch.Tensor], source: Any) -> StyleGAN2Config:
    """The architecture from G_ema's init kwargs, types checked (``check_config`` checks the bounds)."""
    name = describe(source)
    kwargs = G.init_kwargs
    if G.init_args:
        names = ["z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs"]
        kwargs.update(zip(names, G.init_args))
    required = ["z_dim", "w_dim", "img_resolution", "img_channels"]
    missing = [k for k in required if k not in kwargs]
    if missing:
        raise CheckpointError(f"{name}: G_ema has no init kwargs {missing}")
    c_dim = kwargs.get("c_dim", 0)
    if type(c_dim) is not int or c_dim < 0:
        raise CheckpointError(f"{name}: c_dim must be a non-negative int, got {short_repr(c_dim)}")
    if c_dim:
        raise CheckpointError(f"{name}: conditional generators (c_dim={short_repr(c_dim)}) are not supported; "
                              "BRGM needs an unconditional prior")
    if any(k.startswith("synthesis.input.") or ".L0_" in k or k.startswith("synthesis.L0_") for k in state):
        raise CheckpointError(f"{name}: this is a StyleGAN3 (alias-free) generator; only StyleGAN2 networks are "
                              "supported")
    for group in ("synthesis_kwargs", "mapping_kwargs"):
        if kwargs.get(group) is not None and not isinstance(kwargs[group], dict):
            raise CheckpointError(f"{name}: {group} is a {type(kwargs[group]).__name__}, not a dict")
    synthesis = dict(kwargs.get("synthesis_kwargs") or {})
    # stylegan3's copy of networks_stylegan2 passes the synthesis kwargs flat.
    for key in ("channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture", "resample_filter",
                "use_noise"):
        if key in kwargs and key not in synthesis:
            synthesis[key] = kwargs[key]
    architecture = synthesis.get("architecture", "skip")
    if type(architecture) is not str or architecture != "skip":
        raise CheckpointError(f"{name}: synthesis architecture {short_repr(architecture)}; only 'skip' is supported")
    mapping = dict(kwargs.get("mapping_kwargs") or {})
    num_fc = sum(1 for k in state if k.startswith("mapping.fc") and k.endswith(".weight"))
    num_layers = mapping.get("num_layers", 8)
    if type(num_layers) is not int or num_layers != num_fc:
        raise CheckpointError(f"{name}: mapping_kwargs says {short_repr(num_layers)} layers but the weights hold "
                              f"{num_fc}")
    features = mapping.get("layer_features")
    if features is not None and (type(features) is not int or features != kwargs["w_dim"]):
        raise CheckpointError(f"{name}: mapping layer_features={short_repr(features)} is not supported")
    taps = synthesis.get("resample_filter", (1, 3, 3, 1))
    if type(taps) not in (list, tuple) or len(taps) > 16:
        raise CheckpointError(f"{name}: resample_filter {short_repr(taps)} is not a short list of numbers")
    clamp = synthesis.get("conv_clamp")  # types and ranges: check_config
    return StyleGAN2Config(
        img_resolution=kwargs["img_resolution"],
        img_channels=kwargs["img_channels"],
        z_dim=kwargs["z_dim"],
        w_dim=kwargs["w_dim"],
        mapping_layers=num_layers,
        mapping_lr_multiplier=mapping.get("lr_multiplier", 0.01),
        w_avg_beta=mapping.get("w_avg_beta", 0.995),
        channel_base=synthesis.get("channel_base", 32768),
        channel_max=synthesis.get("channel_max", 512),
        conv_clamp=clamp,
        resample_filter=tuple(taps),
    )


def generator_from_network(G: PersistentObject, source: Any = None,
                           max_state_bytes: int | None = None) -> StyleGAN2Generator:
    """Build a ``StyleGAN2Generator`` from the ``G_ema`` record of a network pickle (strict load).

    Layers that NVIDIA runs in float16 (``num_fp16_res``) are computed in float32 here.
    ``max_state_bytes``: see ``checkpoints.charge_state``.
    """
    if not isinstance(G, PersistentObject):
        raise CheckpointError(f"{describe(source)}: expected a network object, got {type(G).__name__}")
    if G.class_name != "Generator":
        raise CheckpointError(f"{describe(source)}: expected a Generator, got class {G.class_name!r}")
    state = record_state_dict(G, source)
    config = _config_from_record(G, state, source)
    generator = build_stylegan2(config, state, source, max_state_bytes=max_state_bytes)
    synthesis = G.init_kwargs.get("synthesis_kwargs")
    fp16 = synthesis.get("num_fp16_res") if isinstance(synthesis, dict) else None
    generator.metadata = {"source_format": "nvidia-pickle", "class_name": G.class_name,
                          "num_fp16_res": fp16 if type(fp16) is int else None}
    return generator.eval()


def load_nvidia_pickle(source: str | Path | BinaryIO, key: str = "G_ema") -> StyleGAN2Generator:
    """Load ``key`` (default ``G_ema``) of a stylegan2-ada-pytorch / stylegan3 network pickle."""
    data = read_network_pickle(source)
    name = source if isinstance(source, (str, Path)) else None
    if not isinstance(data, dict) or key not in data:
        raise CheckpointError(f"{describe(name)} has no {key!r} network (found {describe_keys(data)})")
    limit = None
    if name is not None:
        with loading_errors(name):
            limit = state_bytes_limit(os.stat(name).st_size)
    with loading_errors(name):
        return generator_from_network(data[key], name, limit)


__all__ = ["EasyDict", "PersistentObject", "record_state_dict", "read_network_pickle", "generator_from_network",
           "load_nvidia_pickle"]
