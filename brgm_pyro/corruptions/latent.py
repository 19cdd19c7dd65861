"""Latent (unknown) parameters of corruptions and likelihoods: a prior in place of a number.

The paper assumes the noise level and the corruption are known exactly.  A ``LatentParameter``
passed where a number is expected makes that parameter a random variable of the Pyro model: the
model samples it as a site (``"corruption.blur_sigma"``, ``"sigma_pixel"``, ...) and MAP, VI and
NUTS infer it jointly with w.  A plain number keeps today's fixed operator, bit for bit.

    from pyro import distributions as dist
    blur = Blur.gaussian(sigma=LatentParameter(dist.LogNormal(math.log(1.5), 0.4)))

Making a parameter of your own corruption latent (the recipe):

    class Darken(Corruption):
        pointwise = True

        def __init__(self, factor: float | LatentParameter = 0.5) -> None:
            super().__init__()
            self.declare_parameter("factor", factor, site="darken_factor")    # number or prior

        def output_shape(self, input_shape):
            return tuple(input_shape)

        def forward(self, x):
            return x * self.parameter_batch("factor", x)[:, None, None, None]   # (N,) per image

``declare_parameter`` keeps a number as it is and registers a ``LatentParameter`` under the site
``"corruption." + site`` (or the parameter's own ``name``).  ``parameter(name)`` returns the
number, or the value the model bound for this draw (a tensor of shape () or (N,), one per image
of the batch given to ``forward``); ``parameter_batch(name, x)`` always returns an (N,) tensor.
``forward`` must be differentiable in that value.  Outside the model, bind values yourself:
``with op.bind({"corruption.darken_factor": torch.tensor(0.3)}): y = op(x)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import TorchDistributionMixin


@dataclass
class LatentParameter:
    """An unknown scalar parameter with a prior (a scalar ``pyro.distributions`` distribution).

    name: the Pyro site name (default: chosen by the owner, e.g. ``"corruption.blur_sigma"``);
    init: where MAP / VI / NUTS start (default: the prior's median).
    """

    prior: dist.Distribution
    name: str | None = None
    init: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.prior, TorchDistributionMixin):
            raise ValueError(
                "LatentParameter needs a pyro.distributions distribution as its prior, "
                f"got {type(self.prior).__name__} "
                "(use pyro.distributions.LogNormal etc., not torch.distributions)"
            )
        if tuple(self.prior.batch_shape) or tuple(self.prior.event_shape):
            raise ValueError(
                f"a LatentParameter's prior must be scalar; got batch shape {tuple(self.prior.batch_shape)} "
                f"and event shape {tuple(self.prior.event_shape)}"
            )
        if self.init is not None:
            value = torch.as_tensor(float(self.init))
            if not bool(self.prior.support.check(value)):
                raise ValueError(f"init {self.init} lies outside the support of the prior {self.prior}")
        if self.name is not None and not self.name:
            raise ValueError("a LatentParameter's name must be a non-empty string or None")

    def site(self, default: str) -> str:
        return self.name if self.name is not None else default

    def quantile(self, q: float) -> float:
        """The prior's q-quantile (from ``icdf`` where defined, else from 20,001 seeded draws)."""
        try:
            return float(self.prior.icdf(torch.tensor(q)))
        except (NotImplementedError, AttributeError):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                draws = self.prior.sample((20_001,)).double()
            return float(torch.quantile(draws, q))

    def initial_value(self) -> torch.Tensor:
        """The starting value: ``init``, else the prior's median."""
        value = self.init if self.init is not None else self.quantile(0.5)
        return torch.tensor(float(value))

    def describe(self) -> str:
        return f"latent ~ {describe_distribution(self.prior)}"


def describe_distribution(d: dist.Distribution) -> str:
    """A short readable form of a scalar distribution, e.g. ``LogNormal(loc=0.405, scale=0.4)``."""
    names = [n for n in ("loc", "scale", "concentration", "rate", "low", "high") if n in type(d).arg_constraints]
    args = ", ".join(f"{n}={float(getattr(d, n)):.3g}" for n in names)
    return f"{type(d).__name__}({args})"


def positive_prior_size(parameter: LatentParameter, spread: float, upper_quantile: float = 0.99) -> int:
    """An odd kernel size covering +-``spread`` standard deviations at the prior's upper quantile."""
    return 2 * math.ceil(spread * parameter.quantile(upper_quantile)) + 1
