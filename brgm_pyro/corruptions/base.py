"""The forward-operator interface: a corruption f maps a clean image to what is observed.

A corruption is a ``torch.nn.Module`` (so masks and kernels move with ``.to(device)``):

- ``forward(x)`` / ``f(x)``: (B, C, H, W) -> (B, C', H', W'), differentiable in x (the A(x) of
  an inverse problem; f in Eqs. 3-4 of the paper).
- ``output_shape(input_shape)``: (C, H, W) -> (C', H', W'), validating the input shape.
- ``observation_mask(input_shape)``: (C', H', W') float tensor, 1 where an output value is
  observed and 0 where it is not, or ``None`` when every output value is observed.  The
  likelihoods count only observed values.
- ``describe()``: a one-line human description.

Parameters may be unknown: ``declare_parameter(name, value)`` takes a number or a
``LatentParameter`` (a prior); the model samples latent ones as Pyro sites and binds the draws
(``bind``) while it runs ``forward``, which reads them with ``parameter`` / ``parameter_batch``.
See ``brgm_pyro.corruptions.latent`` for the recipe.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Mapping

import torch
from torch import nn

from .latent import LatentParameter


class Corruption(nn.Module):
    """Base class of forward corruption operators.  Subclasses implement ``forward`` and
    ``output_shape`` and may override ``observation_mask``.

    An operator is applied to a batch of images in [-1, 1], A(x) = f(x) (B, C, H, W) -> (B, C', H', W'):

    >>> import torch
    >>> from brgm_pyro.corruptions import Inpainting, SuperResolution, standard_mask
    >>> x = torch.rand(2, 1, 32, 32) * 2 - 1
    >>> f = SuperResolution(4, kernel="box")                 # the mean of every 4x4 block
    >>> f(x).shape, f.output_shape((1, 32, 32))
    (torch.Size([2, 1, 8, 8]), (1, 8, 8))
    >>> bool(torch.isclose(f(x)[1, 0, 0, 0], x[1, 0, :4, :4].mean()))
    True
    >>> g = Inpainting(standard_mask(0, 32))                 # same size; hidden pixels have mask 0
    >>> g(x).shape, g.observation_mask((1, 32, 32)).shape
    (torch.Size([2, 1, 32, 32]), torch.Size([1, 32, 32]))
    >>> f.describe()
    'super-resolution x4 (box kernel)'
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        raise NotImplementedError  # pragma: no cover - abstract

    def observation_mask(self, input_shape: tuple[int, int, int]) -> torch.Tensor | None:
        self.output_shape(input_shape)  # validates
        return None

    def describe(self) -> str:
        return type(self).__name__

    def check_input(self, x: torch.Tensor) -> tuple[int, int, int]:
        """Raise ``ValueError`` unless x is (B, C, H, W) and valid for this operator; return (C, H, W)."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{type(self).__name__} expects images of shape (B, C, H, W), got {shape}")
        chw = (int(x.shape[1]), int(x.shape[2]), int(x.shape[3]))
        self.output_shape(chw)
        return chw

    def extra_repr(self) -> str:
        return self.describe()

    # --- parameters that may be latent (see brgm_pyro.corruptions.latent) ---

    def declare_parameter(self, name: str, value: float | LatentParameter, site: str | None = None) -> None:
        """Register parameter ``name``: a fixed number, or a ``LatentParameter`` sampled by the model
        at the site ``value.name`` or ``"corruption." + (site or name)``."""
        if "_parameters_declared" not in self.__dict__:
            self.__dict__["_parameters_declared"] = {}
            self.__dict__["_bound"] = {}
        if isinstance(value, LatentParameter):
            self._parameters_declared[name] = (value, value.site("corruption." + (site or name)))
        else:
            if isinstance(value, torch.Tensor) and value.numel() != 1:
                raise ValueError(f"parameter {name} must be a number or a LatentParameter, "
                                 f"got a tensor of shape {tuple(value.shape)}")
            self._parameters_declared[name] = (float(value), None)

    def is_latent(self, name: str) -> bool:
        return self.__dict__.get("_parameters_declared", {}).get(name, (None, None))[1] is not None

    def parameter(self, name: str) -> float | torch.Tensor:
        """The fixed number, or the value bound for this draw (tensor of shape () or (N,))."""
        declared = self.__dict__.get("_parameters_declared", {})
        if name not in declared:
            raise ValueError(f"{type(self).__name__} has no declared parameter {name!r}")
        value, site = declared[name]
        if site is None:
            return value
        if site not in self._bound:
            raise ValueError(
                f"parameter {name!r} of {self.describe()} is latent (site {site!r}) and has no value bound: "
                f"run it inside the model, or `with op.bind({{{site!r}: value}}): op(x)`"
            )
        return self._bound[site]

    def parameter_batch(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """The parameter as an (N,) tensor on x's device and dtype, one value per image of x (N, C, H, W)."""
        value = torch.as_tensor(self.parameter(name), device=x.device, dtype=x.dtype)
        if value.ndim > 1 or value.ndim == 1 and value.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"parameter {name!r} has shape {tuple(value.shape)}; expected () or ({x.shape[0]},)")
        return value.reshape(-1).expand(x.shape[0])

    def latent_parameters(self) -> dict[str, LatentParameter]:
        """Every latent parameter of this operator and the operators inside it, by site name."""
        out: dict[str, LatentParameter] = {}
        for module in self.modules():
            for value, site in module.__dict__.get("_parameters_declared", {}).values():
                if site is None:
                    continue
                if site in out and out[site] is not value:
                    raise ValueError(f"two latent corruption parameters share the site name {site!r}; give one a name=")
                out[site] = value
        return out

    @contextlib.contextmanager
    def bind(self, values: Mapping[str, torch.Tensor]) -> Iterator["Corruption"]:
        """Use ``values`` (site name -> tensor of shape () or (N,)) for the latent parameters inside."""
        sites = self.latent_parameters()
        missing, unknown = set(sites) - set(values), set(values) - set(sites)
        if missing or unknown:
            raise ValueError(f"bind needs exactly the latent sites {sorted(sites)}; missing {sorted(missing)}, "
                             f"unknown {sorted(unknown)}")
        saved = []
        for module in self.modules():
            if "_bound" in module.__dict__:
                saved.append((module, module._bound))
                own = {site for _, site in module._parameters_declared.values() if site is not None}
                module.__dict__["_bound"] = {site: values[site] for site in own}
        try:
            yield self
        finally:
            for module, bound in saved:
                module.__dict__["_bound"] = bound
