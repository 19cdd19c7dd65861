"""Variational families for w.

- ``GaussianGuide``: the paper's q(w) = N(mu_v, softplus(rho_v)^2) (Sec. 2.4), a diagonal
  Gaussian over the prior's latent site, mu_v started at the prior mean (w_avg) and rho_v at
  the per-dimension std of w.
- ``SharedGaussianGuide``: one Gaussian w shared by all layers (the W space) for a W+ prior.
- Pyro's ``AutoNormal``, ``AutoLowRankMultivariateNormal`` and ``AutoDelta`` by name, or any
  callable guide.

When the model has latent sites besides w (a learned noise level, unknown corruption
parameters), the Gaussian guides add an ``AuxiliaryGuide`` factor for them and the auto guides
cover them by construction (started at the parameters' starting values).
"""

from __future__ import annotations

from typing import Callable

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer.autoguide import AutoDelta, AutoLowRankMultivariateNormal, AutoNormal
from pyro.infer.autoguide.initialization import init_to_value

from brgm_pyro.models.brgm import BRGMModel

from .auxiliary import AuxiliaryGuide


def inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    """rho with softplus(rho) = x (x > 0)."""
    return x + torch.log(-torch.expm1(-x))


class GaussianGuide:
    """q(w) = N(mu_v, softplus(rho_v)^2) over the prior's sample site, elementwise independent.

    Params ``mu_v`` and ``rho_v`` live in Pyro's param store.  ``sigma()`` gives softplus(rho_v).
    """

    def __init__(self, model: BRGMModel, init_scale: torch.Tensor | float | None = None, prefix: str = "") -> None:
        self.site = model.prior.site
        self.init_loc = model.prior.init_loc().detach().clone()
        if init_scale is None:  # the per-dimension std of w, broadcast to the site's shape
            init_scale = model.generator.latent_stats().std.to(self.init_loc)
        self.init_scale = torch.as_tensor(init_scale, dtype=self.init_loc.dtype, device=self.init_loc.device).expand_as(self.init_loc).clone()
        if (self.init_scale <= 0).any():
            raise ValueError("init_scale must be positive")
        self.loc_name, self.rho_name = prefix + "mu_v", prefix + "rho_v"
        self.auxiliary = AuxiliaryGuide(model, prefix=prefix + "aux.")  # other latent sites (none in the paper)

    def loc(self) -> torch.Tensor:
        return pyro.param(self.loc_name, lambda: self.init_loc.clone())

    def sigma(self) -> torch.Tensor:
        return F.softplus(pyro.param(self.rho_name, lambda: inverse_softplus(self.init_scale)))

    def __call__(self) -> torch.Tensor:
        w = pyro.sample(self.site, dist.Normal(self.loc(), self.sigma()).to_event(self.init_loc.ndim))
        self.auxiliary()
        return w


class SharedGaussianGuide(GaussianGuide):
    """One w ~ N(mu_v, softplus(rho_v)^2) of shape (w_dim,) copied to every layer of a W+ site.

    q is supported on the diagonal {w_1 = ... = w_L} of W+, so its ELBO scores only that
    subspace: it is the W-space restriction of the posterior, not a bound on the W+ evidence.
    For a proper W-space model use ``SharedLatentPrior`` with ``GaussianGuide``.
    """

    def __init__(self, model: BRGMModel, init_scale: torch.Tensor | float | None = None, prefix: str = "") -> None:
        super().__init__(model, init_scale, prefix)
        if self.init_loc.ndim != 2:
            raise ValueError("SharedGaussianGuide needs a W+ prior site of shape (num_ws, w_dim)")
        self.num_ws = self.init_loc.shape[0]
        self.init_loc, self.init_scale = self.init_loc[0].clone(), self.init_scale[0].clone()

    def __call__(self) -> torch.Tensor:
        shared = pyro.sample(
            self.site + "_shared", dist.Normal(self.loc(), self.sigma()).to_event(1), infer={"is_auxiliary": True}
        )
        ws = shared.unsqueeze(-2).expand(*shared.shape[:-1], self.num_ws, shared.shape[-1])
        w = pyro.sample(self.site, dist.Delta(ws, event_dim=2))
        self.auxiliary()
        return w


GUIDES = ("gaussian", "shared", "normal", "lowrank", "delta")


def make_guide(guide: str | Callable, model: BRGMModel, init_scale: torch.Tensor | float | None = None) -> Callable:
    """A guide by name (``GUIDES``) or a user's callable, returned as is."""
    if callable(guide):
        return guide
    init = init_to_value(values={model.prior.site: model.prior.init_loc().detach().clone(),
                                 **model.initial_values()})  # + the starting values of other latent sites
    if guide == "gaussian":
        return GaussianGuide(model, init_scale)
    if guide == "shared":
        return SharedGaussianGuide(model, init_scale)
    if guide == "normal":
        return AutoNormal(model.model, init_loc_fn=init, init_scale=0.1)
    if guide == "lowrank":
        return AutoLowRankMultivariateNormal(model.model, init_loc_fn=init, init_scale=0.1, rank=10)
    if guide == "delta":
        return AutoDelta(model.model, init_loc_fn=init)
    raise ValueError(f"unknown guide {guide!r}; expected one of {GUIDES} or a callable")
