"""Variational factors for the model's latent sites besides w (unknown noise levels and corruption
parameters): q(theta) = prod_k T_k(N(loc_k, scale_k^2)), with T_k the bijection onto the support of
theta_k's prior: a LogNormal factor for a positive parameter (blur sigma, noise sigma, gain), a
Normal for a real one (shift, offset).

The paper's ``GaussianGuide`` covers only w; it runs an ``AuxiliaryGuide`` after w when the model
has such sites.  Any other guide of w alone is completed with ``with_auxiliary(guide, model)``.
"""

from __future__ import annotations

from typing import Callable

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch.distributions import biject_to
from torch.distributions import constraints as torch_constraints

from brgm_pyro.models.brgm import BRGMModel


def is_positive(support: constraints.Constraint) -> bool:
    """True for (0, inf) and [0, inf) (HalfNormal's support): the LogNormal factor applies."""
    if support is constraints.positive:
        return True
    bounded = isinstance(support, (torch_constraints._GreaterThan, torch_constraints._GreaterThanEq))
    return bounded and isinstance(support.lower_bound, (int, float)) and support.lower_bound == 0


def factor(support: constraints.Constraint, loc: torch.Tensor, scale: torch.Tensor) -> dist.Distribution:
    """Normal on the real line, LogNormal on the positive half-line, else a Normal pushed through
    ``biject_to(support)``."""
    if support is constraints.real:
        return dist.Normal(loc, scale)
    if is_positive(support):
        return dist.LogNormal(loc, scale)
    return dist.TransformedDistribution(dist.Normal(loc, scale), [biject_to(support)])


class AuxiliaryGuide:
    """q over every latent site of ``model`` except the prior's w: one (loc, scale) pair per site,
    in the unconstrained space, params ``{prefix}{site}.loc`` / ``{prefix}{site}.scale``;
    loc starts at the parameter's starting value, scale at ``init_scale``."""

    def __init__(self, model: BRGMModel, init_scale: float = 0.1, prefix: str = "aux.") -> None:
        if not init_scale > 0:
            raise ValueError(f"init_scale must be positive, got {init_scale}")
        self.parameters = model.latent_parameters()
        self.initial = model.initial_values()
        self.init_scale, self.prefix = float(init_scale), prefix

    def __bool__(self) -> bool:
        return bool(self.parameters)

    def distribution(self, site: str) -> dist.Distribution:
        support = self.parameters[site].prior.support
        start = self.initial[site]
        to_support = biject_to(constraints.positive) if is_positive(support) else biject_to(support)
        loc = pyro.param(f"{self.prefix}{site}.loc", lambda: to_support.inv(start).detach().clone())
        scale = pyro.param(f"{self.prefix}{site}.scale", lambda: torch.full_like(start, self.init_scale),
                           constraint=constraints.positive)
        return factor(support, loc, scale)

    def __call__(self) -> dict[str, torch.Tensor]:
        return {site: pyro.sample(site, self.distribution(site)) for site in self.parameters}


def with_auxiliary(guide: Callable, model: BRGMModel, init_scale: float = 0.1) -> Callable:
    """``guide`` (a guide of w alone) followed by an ``AuxiliaryGuide`` for the model's other latent
    sites; ``guide`` itself when there are none."""
    auxiliary = AuxiliaryGuide(model, init_scale)
    if not auxiliary:
        return guide

    def combined(*args, **kwargs):
        value = guide(*args, **kwargs)
        auxiliary()
        return value

    combined.w_guide, combined.auxiliary = guide, auxiliary  # type: ignore[attr-defined]
    return combined
