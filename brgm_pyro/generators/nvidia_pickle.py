"""Read NVIDIA stylegan2-ada-pytorch / stylegan3 network pickles without running their code.

Those ``.pkl`` files (NVIDIA's FFHQ model, the BRGM authors' FFHQ / X-ray / brain models) hold a
dict with ``G``, ``D``, ``G_ema``, ... Every network object in them is a "persistent" object that
pickles as ``torch_utils.persistence._reconstruct_persistent_obj(meta)``, where ``meta`` carries
the full Python source of the defining module (``module_src``), the class name and the object's
``__dict__`` (``_parameters``, ``_buffers``, ``_modules``, ``_init_kwargs``, ...). NVIDIA's own
loader executes ``module_src``. We never do: a restricted unpickler maps that reducer to an inert
``PersistentObject`` record, allows a short list of tensor and container constructors, and refuses
every other global. The records are then turned into our ``StyleGAN2Generator`` with a strict
state-dict load.
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from .checkpoints import CheckpointError, UnsafeCheckpointError, describe, load_state_dict_strict
from .stylegan2 import StyleGAN2Config, StyleGAN2Generator


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a dict whose keys read as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class PersistentObject:
    """Inert record of one persistent network object (its source code is kept as text only)."""

    class_name: str
    version: int | None
    state: dict[str, Any]
    module_src: str = field(repr=False, default="")

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return dict(self.state.get("_init_kwargs") or {})

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args") or ())

    @property
    def children(self) -> dict[str, "PersistentObject"]:
        return dict(self.state.get("_modules") or {})

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Flat ``name -> tensor`` dict, as ``nn.Module.state_dict`` would give."""
        out: dict[str, torch.Tensor] = {}
        skip = set(self.state.get("_non_persistent_buffers_set") or ())
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if value is not None and name not in skip:
                    out[prefix + name] = value.detach() if isinstance(value, torch.Tensor) else value
        for name, child in self.children.items():
            if child is None:
                continue
            if not isinstance(child, PersistentObject):
                raise CheckpointError(
                    f"sub-module {prefix + name!r} is a {type(child).__name__}, not a persistent network object"
                )
            out.update(child.state_dict(prefix + name + "."))
        return out


def _reconstruct_persistent_record(meta: dict[str, Any]) -> PersistentObject:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise CheckpointError(f"unsupported persistent object record: type={getattr(meta, 'get', lambda k: None)('type')!r}")
    state = meta.get("state")
    if not isinstance(state, dict):
        raise CheckpointError(f"persistent object {meta.get('class_name')!r} has no state dict")
    return PersistentObject(
        class_name=str(meta.get("class_name")),
        version=meta.get("version"),
        state=state,
        module_src=str(meta.get("module_src") or ""),
    )


def _storage_from_bytes(data: bytes) -> Any:
    """Tensor storages inside a plain pickle are nested ``torch.save`` blobs; read them weights-only."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


_TORCH_DTYPES = {name for name in dir(torch) if isinstance(getattr(torch, name, None), torch.dtype)}

_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_record,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("torch", "device"): torch.device,
    ("torch", "Size"): torch.Size,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
}
from numpy._core import multiarray as _np_multiarray  # noqa: E402  (numpy >= 2)

for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _np_multiarray._reconstruct
    _ALLOWED[(_mod, "scalar")] = _np_multiarray.scalar


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only allow-listed globals (see module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _TORCH_DTYPES:
            return getattr(torch, name)
        target = _ALLOWED.get((module, name))
        if target is not None:
            return target
        hint = ""
        if module.startswith("dnnlib.tflib"):
            hint = (" This is a TensorFlow StyleGAN2 pickle: convert it first with NVIDIA's "
                    "stylegan2-ada-pytorch `legacy.py` (or load it with their code) and save a PyTorch pickle.")
        raise UnsafeCheckpointError(
            f"the pickle asks for the global {module}.{name}, which is not on brgm-pyro's allow-list; "
            f"it was not imported or called.{hint}"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError("the pickle uses persistent ids (a torch.save file?), which network pickles never do")


def read_network_pickle(source: str | Path | BinaryIO) -> Any:
    """Unpickle a network pickle into plain containers, tensors and ``PersistentObject`` records."""
    name = source if isinstance(source, (str, Path)) else getattr(source, "name", None)
    try:
        if isinstance(source, (str, Path)):
            with open(source, "rb") as f:
                return RestrictedUnpickler(f).load()
        return RestrictedUnpickler(source).load()
    except (CheckpointError, FileNotFoundError, IsADirectoryError):
        raise
    except EOFError as err:
        raise CheckpointError(f"{describe(name)} ends early: the file is truncated ({err or 'EOF'})") from err
    except Exception as err:  # UnpicklingError, bad opcodes, inner torch.load failures, ...
        raise CheckpointError(f"{describe(name)} is not a readable network pickle (truncated or corrupt?): "
                              f"{type(err).__name__}: {err}") from err


def _config_from_record(G: PersistentObject, state: dict[str, torch.Tensor], source: Any) -> StyleGAN2Config:
    kwargs = G.init_kwargs
    if G.init_args:
        names = ["z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs"]
        kwargs.update(zip(names, G.init_args))
    required = ["z_dim", "w_dim", "img_resolution", "img_channels"]
    missing = [k for k in required if k not in kwargs]
    if missing:
        raise CheckpointError(f"{describe(source)}: G_ema has no init kwargs {missing}")
    if kwargs.get("c_dim", 0):
        raise CheckpointError(
            f"{describe(source)}: conditional generators (c_dim={kwargs['c_dim']}) are not supported; "
            "BRGM needs an unconditional prior"
        )
    if any(k.startswith("synthesis.input.") or ".L0_" in k or k.startswith("synthesis.L0_") for k in state):
        raise CheckpointError(f"{describe(source)}: this is a StyleGAN3 (alias-free) generator; "
                              "only StyleGAN2 networks are supported")
    synthesis = dict(kwargs.get("synthesis_kwargs") or {})
    # stylegan3's copy of networks_stylegan2 passes the synthesis kwargs flat.
    for key in ("channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture", "resample_filter",
                "use_noise"):
        if key in kwargs and key not in synthesis:
            synthesis[key] = kwargs[key]
    architecture = synthesis.get("architecture", "skip")
    if architecture != "skip":
        raise CheckpointError(f"{describe(source)}: synthesis architecture {architecture!r}; only 'skip' is supported")
    mapping = dict(kwargs.get("mapping_kwargs") or {})
    num_fc = sum(1 for k in state if k.startswith("mapping.fc") and k.endswith(".weight"))
    num_layers = mapping.get("num_layers", 8)
    if num_layers != num_fc:
        raise CheckpointError(f"{describe(source)}: mapping_kwargs says {num_layers} layers but the weights hold {num_fc}")
    if mapping.get("layer_features") not in (None, kwargs["w_dim"]):
        raise CheckpointError(f"{describe(source)}: mapping layer_features={mapping['layer_features']} is not supported")
    return StyleGAN2Config(
        img_resolution=int(kwargs["img_resolution"]),
        img_channels=int(kwargs["img_channels"]),
        z_dim=int(kwargs["z_dim"]),
        w_dim=int(kwargs["w_dim"]),
        mapping_layers=int(num_layers),
        mapping_lr_multiplier=float(mapping.get("lr_multiplier", 0.01)),
        w_avg_beta=float(mapping.get("w_avg_beta", 0.995)),
        channel_base=int(synthesis.get("channel_base", 32768)),
        channel_max=int(synthesis.get("channel_max", 512)),
        conv_clamp=None if synthesis.get("conv_clamp") is None else float(synthesis["conv_clamp"]),
        resample_filter=tuple(float(v) for v in synthesis.get("resample_filter", (1, 3, 3, 1))),
    )


def generator_from_network(G: PersistentObject, source: Any = None) -> StyleGAN2Generator:
    """Build a ``StyleGAN2Generator`` from the ``G_ema`` record of a network pickle (strict load).

    Layers that NVIDIA runs in float16 (``num_fp16_res``) are computed in float32 here.
    """
    if not isinstance(G, PersistentObject):
        raise CheckpointError(f"{describe(source)}: expected a network object, got {type(G).__name__}")
    if G.class_name != "Generator":
        raise CheckpointError(f"{describe(source)}: expected a Generator, got class {G.class_name!r}")
    state = G.state_dict()
    config = _config_from_record(G, state, source)
    generator = StyleGAN2Generator(config)
    load_state_dict_strict(generator, state, source)
    generator.metadata = {"source_format": "nvidia-pickle", "class_name": G.class_name,
                          "num_fp16_res": G.init_kwargs.get("synthesis_kwargs", {}).get("num_fp16_res")}
    return generator.eval()


def load_nvidia_pickle(source: str | Path | BinaryIO, key: str = "G_ema") -> StyleGAN2Generator:
    """Load ``key`` (default ``G_ema``) of a stylegan2-ada-pytorch / stylegan3 network pickle."""
    data = read_network_pickle(source)
    name = source if isinstance(source, (str, Path)) else None
    if not isinstance(data, dict) or key not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{describe(name)} has no {key!r} network (found {keys})")
    return generator_from_network(data[key], name)
