"""Write checkpoints in foreign formats from one of our generators, for the loader tests.

``write_network_pickle`` produces the stream structure of a stylegan2-ada-pytorch pickle: every
network object reduces to ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with
``meta = {type, version, module_src, class_name, state}``, kwargs are ``dnnlib.util.EasyDict``,
tensors pickle the usual torch way. It is made without NVIDIA's code: stand-in modules are put in
``sys.modules`` only while pickling, so the loader under test cannot fall back on them.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from brgm_pyro.generators import StyleGAN2Generator

# Source text that would do harm if a loader executed it.
HOSTILE_MODULE_SRC = "import os\nos.system('touch {marker}')\nraise SystemExit('module_src was executed')\n"

NVIDIA_CLASS_NAMES = {
    "StyleGAN2Generator": "Generator", "MappingNetwork": "MappingNetwork", "SynthesisNetwork": "SynthesisNetwork",
    "SynthesisBlock": "SynthesisBlock", "SynthesisLayer": "SynthesisLayer", "ToRGBLayer": "ToRGBLayer",
    "FullyConnectedLayer": "FullyConnectedLayer",
}


def _never_called(meta):  # pragma: no cover - only its name is pickled
    raise AssertionError("the persistent reducer must never be called by the loader")


class _EasyDict(dict):
    pass


class Persistent:
    """Pickles like a stylegan2-ada-pytorch persistent network object."""

    def __init__(self, class_name: str, state: dict[str, Any], module_src: str = "") -> None:
        self.meta = dict(type="class", version=6, module_src=module_src, class_name=class_name, state=state)

    def __reduce__(self):
        return (_never_called, (self.meta,))


def record_tree(module: nn.Module, module_src: str, init_kwargs: dict[str, Any] | None = None) -> Persistent:
    """Mirror ``module`` as nested Persistent records (parameters, buffers, children, kwargs)."""
    state = OrderedDict(
        training=False,
        _parameters=OrderedDict((k, v) for k, v in module._parameters.items()),
        _buffers=OrderedDict((k, v) for k, v in module._buffers.items()),
        _non_persistent_buffers_set=set(),
        _backward_hooks=OrderedDict(), _forward_hooks=OrderedDict(), _forward_pre_hooks=OrderedDict(),
        _state_dict_hooks=OrderedDict(), _load_state_dict_pre_hooks=OrderedDict(),
        _modules=OrderedDict((k, record_tree(v, module_src)) for k, v in module._modules.items()),
        _init_args=(),
        _init_kwargs=_EasyDict(init_kwargs or {}),
    )
    name = NVIDIA_CLASS_NAMES.get(type(module).__name__, type(module).__name__)
    return Persistent(name, dict(state), module_src)


def nvidia_init_kwargs(G: StyleGAN2Generator, c_dim: int = 0) -> dict[str, Any]:
    c = G.config
    return dict(
        z_dim=c.z_dim, c_dim=c_dim, w_dim=c.w_dim, img_resolution=c.img_resolution, img_channels=c.img_channels,
        mapping_kwargs=_EasyDict(num_layers=c.mapping_layers),
        synthesis_kwargs=_EasyDict(channel_base=c.channel_base, channel_max=c.channel_max, num_fp16_res=0,
                                   conv_clamp=c.conv_clamp),
    )


class _stand_in_modules:
    """Register ``torch_utils.persistence`` and ``dnnlib.util`` while pickling, then remove them."""

    def __enter__(self):
        names = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")
        self.saved = {k: sys.modules.get(k) for k in names}
        persistence = types.ModuleType("torch_utils.persistence")
        persistence._reconstruct_persistent_obj = _never_called
        _never_called.__module__, _never_called.__qualname__ = "torch_utils.persistence", "_reconstruct_persistent_obj"
        util = types.ModuleType("dnnlib.util")
        util.EasyDict = _EasyDict
        _EasyDict.__module__, _EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
        sys.modules.update({"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
                            "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util})
        return self

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def write_network_pickle(G: StyleGAN2Generator, path: Path, marker: Path, extra: dict[str, Any] | None = None,
                         tamper=None, c_dim: int = 0) -> Path:
    """Write a {'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs'} pickle holding ``G``.

    ``tamper(record)`` may edit the G_ema record tree before it is written.
    """
    src = HOSTILE_MODULE_SRC.format(marker=marker)
    with _stand_in_modules():
        g_ema = record_tree(G, src, nvidia_init_kwargs(G, c_dim))
        if tamper is not None:
            tamper(g_ema)
        disc = Persistent("Discriminator", dict(_parameters=OrderedDict(b0=nn.Parameter(torch.randn(3))),
                                                _buffers=OrderedDict(), _modules=OrderedDict()), src)
        data = dict(G=record_tree(G, src, nvidia_init_kwargs(G, c_dim)), D=disc, G_ema=g_ema, augment_pipe=None,
                    training_set_kwargs=_EasyDict(resolution=G.img_resolution, use_labels=False))
        data.update(extra or {})
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=4)
    return path


def rosinality_state(G: StyleGAN2Generator) -> dict[str, Any]:
    """The rosinality/stylegan2-pytorch checkpoint layout of ``G`` (inverse of the loader's renaming)."""
    sd = {k: v.detach().clone() for k, v in G.state_dict().items()}
    g: dict[str, torch.Tensor] = {}
    for i in range(G.config.mapping_layers):
        g[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        g[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    g["input.input"] = sd["synthesis.b4.const"][None]
    layers = [("conv1", "synthesis.b4.conv1")]
    rgbs = [("to_rgb1", "synthesis.b4.torgb")]
    res, j = 8, 0
    while res <= G.img_resolution:
        layers += [(f"convs.{2 * j}", f"synthesis.b{res}.conv0"), (f"convs.{2 * j + 1}", f"synthesis.b{res}.conv1")]
        rgbs.append((f"to_rgbs.{j}", f"synthesis.b{res}.torgb"))
        res, j = res * 2, j + 1
    kernel = torch.tensor([1.0, 3, 3, 1])
    kernel = torch.outer(kernel, kernel) / kernel.sum() ** 2 * 4
    for n, (ros, nv) in enumerate(layers):
        g[f"{ros}.conv.weight"] = sd[f"{nv}.weight"][None]
        g[f"{ros}.conv.modulation.weight"] = sd[f"{nv}.affine.weight"]
        g[f"{ros}.conv.modulation.bias"] = sd[f"{nv}.affine.bias"]
        g[f"{ros}.noise.weight"] = sd[f"{nv}.noise_strength"].reshape(1)
        g[f"{ros}.activate.bias"] = sd[f"{nv}.bias"]
        g[f"noises.noise_{n}"] = sd[f"{nv}.noise_const"][None, None]
        if ros.startswith("convs.") and int(ros.split(".")[1]) % 2 == 0:
            g[f"{ros}.conv.blur.kernel"] = kernel.clone()
    for ros, nv in rgbs:
        g[f"{ros}.conv.weight"] = sd[f"{nv}.weight"][None]
        g[f"{ros}.conv.modulation.weight"] = sd[f"{nv}.affine.weight"]
        g[f"{ros}.conv.modulation.bias"] = sd[f"{nv}.affine.bias"]
        g[f"{ros}.bias"] = sd[f"{nv}.bias"].reshape(1, -1, 1, 1)
        if ros != "to_rgb1":
            g[f"{ros}.upsample.kernel"] = kernel.clone()
    return {"g_ema": g, "latent_avg": sd["mapping.w_avg"], "g": {}, "d": {},
            "args": argparse.Namespace(size=G.img_resolution, n_mlp=G.config.mapping_layers)}
