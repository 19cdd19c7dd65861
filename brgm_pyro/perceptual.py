"""Perceptual feature maps phi for the perceptual likelihood of Eq. 4.

Both classes map images (B, C, H, W) in [-1, 1] to flat features (B, F) such that
||phi(x) - phi(y)||^2 is a perceptual distance:

- ``LPIPSFeatures``: per layer of the LPIPS backbone (VGG16 or AlexNet), channel-unit-normalised
  activations times sqrt(LPIPS linear weight) / sqrt(H_l W_l); the squared distance then equals
  ``lpips.LPIPS(net=...)(x, y)`` exactly.
- ``FeatureNetwork``: any torch module, features taken from named layers (e.g. a domain classifier).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

LPIPS_NETS = ("vgg", "alex")


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights that cannot be downloaded here are not on disk."""


def backbone_weights_path(net: str) -> Path:
    """Where torchvision caches the ImageNet weights of the LPIPS backbone ``net``."""
    import torchvision

    weights = {"vgg": torchvision.models.VGG16_Weights, "alex": torchvision.models.AlexNet_Weights}
    if net not in weights:
        raise ValueError(f"unknown LPIPS network {net!r}; expected one of {LPIPS_NETS}")
    url = weights[net].IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _load_backbone(backbone: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Copy torchvision ``features.N.*`` tensors into lpips' sliced backbone (slices keep the indices N)."""
    used = set()
    with torch.no_grad():
        for slice_ in backbone.children():
            for name, module in slice_.named_children():
                for pname, param in module.named_parameters(recurse=False):
                    key = f"features.{name}.{pname}"
                    if key not in state:
                        raise ValueError(f"{source} has no tensor {key}: "
                                         f"it is not a torchvision {type(backbone).__name__} checkpoint")
                    param.copy_(state[key])
                    used.add(key)
    if not used:
        raise ValueError(f"no backbone tensors were loaded from {source}")


_INIT_FUNCTIONS = ("uniform_", "normal_", "constant_", "zeros_", "ones_", "kaiming_uniform_",
                   "kaiming_normal_", "xavier_uniform_", "xavier_normal_", "trunc_normal_")


@contextmanager
def _skip_random_init() -> Iterator[None]:
    """Make ``torch.nn.init`` fills no-ops while building lpips: torchvision's VGG16 would spend
    seconds randomly initialising a 100 M-parameter classifier that lpips throws away.  Every
    kept parameter is then loaded from a file or re-initialised explicitly."""
    saved = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS}
    try:
        for name in _INIT_FUNCTIONS:
            setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, fn in saved.items():
            setattr(nn.init, name, fn)


def build_lpips(net: str = "vgg", pretrained: bool = True, weights: str | Path | None = None):
    """An ``lpips.LPIPS`` model (eval, frozen) that never downloads anything.

    pretrained=True loads the ImageNet backbone from ``weights`` or from torchvision's cache
    (``torch.hub.get_dir()/checkpoints``) and raises ``MissingWeightsError`` if it is absent;
    pretrained=False keeps a random backbone (for tests).  The LPIPS linear weights ship with
    the ``lpips`` package.
    """
    import lpips

    if net not in LPIPS_NETS:
        raise ValueError(f"unknown LPIPS network {net!r}; expected one of {LPIPS_NETS}")
    path = None
    if pretrained:  # check before building anything: lpips would otherwise try to download
        path = Path(weights) if weights is not None else backbone_weights_path(net)
        if not path.is_file():
            raise MissingWeightsError(
                f"the ImageNet weights of the LPIPS {net} backbone are missing: {path} does not exist. "
                f"Copy {backbone_weights_path(net).name} (torchvision's file) "
                f"into {backbone_weights_path(net).parent}/, "
                f"or pass weights='/path/to/{backbone_weights_path(net).name}'. Online, torchvision fetches it "
                f"into that folder with: python -c \"import torchvision; torchvision.models."
                f"{'vgg16' if net == 'vgg' else 'alexnet'}(weights='IMAGENET1K_V1')\". "
                "brgm-pyro itself never downloads at run time."
            )
    with warnings.catch_warnings(), _skip_random_init():  # lpips still calls torchvision's deprecated API
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        _load_backbone(model.net, state, path)
    else:  # random backbone: PyTorch's default initialisation of each layer
        for module in model.net.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.reset_parameters()
    return model.eval().requires_grad_(False)


def _check_images(x: torch.Tensor, who: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{who} expects images of shape (B, 1 or 3, H, W), got {shape}")


class LPIPSFeatures(nn.Module):
    """phi(x) with ||phi(x) - phi(y)||^2 = LPIPS(x, y) (after the same resize).

    Grayscale inputs are repeated to 3 channels.  Images larger than ``resize`` are area-downsampled
    to ``resize`` x ``resize`` (256, as in the authors' code); smaller ones keep their size unless
    ``upsample=True`` (then they are area-resized, i.e. nearest-neighbour, up to ``resize``).
    ``resize=None`` never resizes.  ``pretrained=False`` keeps a random backbone (tests);
    ``weights`` is an explicit path to torchvision's backbone checkpoint.
    """

    def __init__(self, net: str = "vgg", resize: int | None = 256, pretrained: bool = True,
                 weights: str | Path | None = None, upsample: bool = False) -> None:
        super().__init__()
        self.net_name = net
        self.resize = resize
        self.upsample = upsample
        if resize is not None and (not isinstance(resize, int) or resize < 16):
            raise ValueError(f"resize must be None or an integer >= 16, got {resize!r}")
        self.lpips = build_lpips(net, pretrained=pretrained, weights=weights)
        for i, lin in enumerate(self.lpips.lins):
            if (lin.model[-1].weight < 0).any():
                raise ValueError(f"LPIPS linear layer {i} has negative weights: no real feature map has this distance")

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Channel repeat and resize applied before the backbone."""
        _check_images(x, "LPIPSFeatures")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.resize is None or tuple(x.shape[-2:]) == (self.resize, self.resize):
            return x
        if self.upsample or max(x.shape[-2:]) > self.resize:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="area")
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lpips.scaling_layer(self.prepare(x))
        feats = []
        for out, lin in zip(self.lpips.net(x), self.lpips.lins):
            unit = out / (out.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            w = lin.model[-1].weight.sqrt()  # (1, C, 1, 1), non-negative (checked in __init__)
            feats.append((unit * w.reshape(1, -1, 1, 1)).flatten(1) / math.sqrt(out.shape[2] * out.shape[3]))
        return torch.cat(feats, dim=1)


class FeatureNetwork(nn.Module):
    """Wrap any module as phi: features of the named ``layers`` (forward hooks), each flattened and
    scaled by 1/sqrt(its size per image), so ||phi(x) - phi(y)||^2 is the sum over layers of the
    mean squared feature difference.  ``normalize_channels`` unit-normalises each position first
    (as LPIPS does).  The module is frozen and kept in eval mode.
    """

    def __init__(self, module: nn.Module, layers: Sequence[str], normalize_channels: bool = False,
                 input_transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        if not layers:
            raise ValueError("FeatureNetwork needs at least one layer name")
        names = dict(module.named_modules())
        missing = [name for name in layers if name not in names]
        if missing:
            raise ValueError(f"layers {missing} are not in the module; available: {sorted(n for n in names if n)[:20]}")
        self.module = module.eval().requires_grad_(False)
        self.layers = list(layers)
        self.normalize_channels = normalize_channels
        self.input_transform = input_transform
        self._outputs: dict[str, torch.Tensor] = {}
        for name in self.layers:
            names[name].register_forward_hook(self._make_hook(name))

    def _make_hook(self, name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            self._outputs[name] = output
        return hook

    def train(self, mode: bool = True) -> "FeatureNetwork":
        super().train(mode)
        self.module.eval()  # the feature network never switches to training behaviour
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_transform is not None:
            x = self.input_transform(x)
        self._outputs = {}
        self.module(x)
        feats = []
        for name in self.layers:
            f = self._outputs[name]
            if self.normalize_channels and f.ndim == 4:
                f = f / (f.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            f = f.flatten(1)
            feats.append(f / math.sqrt(f.shape[1]))
        self._outputs = {}
        return torch.cat(feats, dim=1)
