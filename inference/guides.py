"""Variational families for w.

- ``GaussianGuide``: the paper's q(w) = N(mu_v, softplus(rho_v)^2) (Sec. 2.4), a diagonal
  Gaussian over the prior's latent site, mu_v started at the prior mean (w_avg) and rho_v at
  the per-dimension std of w.
- ``SharedGaussianGuide``: one Gaussian w shared by all layers (the W space) for a W+ prior.
- ``MultivariateGaussianGuide``: a full-rank (``"fullrank"``) or low-rank (``"lowrank"``)
  Gaussian over all of W+ jointly, so it can represent the correlations between layers and
  dimensions that the posterior of an under-determined problem has.
- ``FlowGuide``: inverse autoregressive flow layers on top of a diagonal Gaussian (``"flow"``).
- Pyro's ``AutoNormal`` and ``AutoDelta`` by name, or any callable guide.

The guides over the whole site also give ``sample_with_log_prob(n)`` (draws and log q) and, once
fitted, ``freeze()``: a ``LatentDistribution`` that samples q without Pyro's param store, which
is what ``fit_vi``'s posterior, the ensemble and importance resampling use.

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
from pyro.distributions.transforms import AffineAutoregressive
from pyro.infer.autoguide import AutoDelta, AutoNormal
from pyro.infer.autoguide.initialization import init_to_value
from pyro.nn import AutoRegressiveNN
from torch.distributions.transforms import AffineTransform, ReshapeTransform

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
        scale = torch.as_tensor(init_scale, dtype=self.init_loc.dtype, device=self.init_loc.device)
        self.init_scale = scale.expand_as(self.init_loc).clone()
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


class LatentDistribution:
    """A fitted q(w) over the latent site, detached from Pyro's param store.

    ``distribution`` is a torch distribution over the flattened latent (event shape (n,));
    ``shape`` is the site's event shape.  ``sample_with_log_prob(k)`` gives k draws in the site's
    shape and their log q; ``log_prob(latents)`` evaluates log q anywhere (Gaussians only: a
    flow's inverse is sequential over the dimensions, ``has_log_prob`` says which);
    ``mean`` is q's mean where known in closed form, else its base point.
    """

    def __init__(self, distribution: torch.distributions.Distribution, shape: torch.Size,
                 mean: torch.Tensor, has_log_prob: bool = True) -> None:
        self.distribution, self.shape = distribution, torch.Size(shape)
        self.mean, self.has_log_prob = mean, has_log_prob

    @torch.no_grad()
    def sample_with_log_prob(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.distribution
        if isinstance(d, torch.distributions.TransformedDistribution):  # forward log-det, no inversion
            x = d.base_dist.sample((k,))
            log_q = d.base_dist.log_prob(x)
            for t in d.transforms:
                y = t(x)
                ladj = t.log_abs_det_jacobian(x, y)
                log_q = log_q - _sum_rightmost(ladj, ladj.ndim - 1)
                x = y
        else:
            x = d.sample((k,))
            log_q = d.log_prob(x)
        return x.reshape(k, *self.shape), log_q

    def sample(self, k: int) -> torch.Tensor:
        return self.sample_with_log_prob(k)[0]

    @torch.no_grad()
    def log_prob(self, latents: torch.Tensor) -> torch.Tensor:
        if not self.has_log_prob:
            raise ValueError("this q has no tractable log density at arbitrary points (a flow); "
                             "use sample_with_log_prob")
        flat = latents.reshape(*latents.shape[: latents.ndim - len(self.shape)], -1)
        return self.distribution.log_prob(flat)


def _sum_rightmost(x: torch.Tensor, dims: int) -> torch.Tensor:
    return x.reshape(*x.shape[: x.ndim - dims], -1).sum(-1) if dims > 0 else x


class MultivariateGaussianGuide:
    """q(w) = N(loc, Sigma) jointly over the whole latent site (all layers of W+).

    Parameterised in the prior's standard units s (``model.prior.init_scale()``, per element):
    w = loc + s * (M z), z ~ N(0, I); or, given ``init_scale_tril`` C (full rank only), in C's
    whitened units: w = loc + C (M z), M = I at the start.  ``rank=None``: M is lower-triangular
    with a softplus diagonal (full rank, n(n+1)/2 parameters); ``rank=r``: M M^T = F F^T + diag(d^2)
    (low rank plus diagonal, n(r+1) parameters).  Starts at ``init_loc`` (default: the prior mean, w_avg on
    every layer; a MAP solution is a better start) with standard deviations ``init_scale``
    (default: the prior's) and no correlations (low rank: a small random F, off the saddle at 0).
    """

    def __init__(self, model: BRGMModel, rank: int | None = None, init_loc: torch.Tensor | None = None,
                 init_scale: torch.Tensor | float | None = None, prefix: str = "",
                 init_scale_tril: torch.Tensor | None = None) -> None:
        self.site = model.prior.site
        prior_loc = model.prior.init_loc().detach()
        self.shape = prior_loc.shape
        loc = prior_loc if init_loc is None else torch.as_tensor(init_loc).to(prior_loc)
        if loc.shape != self.shape:
            raise ValueError(f"init_loc must have the latent site's shape {tuple(self.shape)}, got {tuple(loc.shape)}")
        self.init_loc = loc.clone()
        self.unit = model.prior.init_scale().detach().to(prior_loc).expand(self.shape).flatten().clone()
        scale = (self.unit if init_scale is None
                 else torch.as_tensor(init_scale).to(prior_loc).expand(self.shape).flatten())
        if (scale <= 0).any():
            raise ValueError("init_scale must be positive")
        self.dim = self.unit.numel()
        if rank is not None and not 1 <= rank <= self.dim:
            raise ValueError(f"rank must be between 1 and the latent dimension {self.dim}, got {rank}")
        self.rank = rank
        self.init_rho = inverse_softplus(scale / self.unit)
        self.init_tril = torch.zeros(self.dim, self.dim).to(prior_loc)
        self.preconditioner: torch.Tensor | None = None
        if init_scale_tril is not None:  # a full covariance's Cholesky factor C (e.g. the Laplace approximation's)
            if rank is not None:
                raise ValueError("init_scale_tril needs the full-rank guide (rank=None)")
            tril = torch.as_tensor(init_scale_tril).to(prior_loc)
            if tril.shape != (self.dim, self.dim) or not (tril.diagonal() > 0).all():
                raise ValueError(f"init_scale_tril must be a ({self.dim}, {self.dim}) lower-triangular matrix "
                                 "with a positive diagonal")
            # w = loc + C (M z) with M = I at the start: the fit works in C's whitened coordinates,
            # where the optimiser's per-parameter steps are on the scale of the posterior itself
            self.preconditioner = torch.tril(tril).clone()
            self.init_rho = inverse_softplus(torch.ones(self.dim).to(prior_loc))
        self.prefix = prefix

    def loc(self) -> torch.Tensor:
        return pyro.param(self.prefix + "loc", lambda: self.init_loc.clone())

    def distribution(self) -> dist.Distribution:
        """q over the flattened latent (event shape (n,))."""
        loc = self.loc().flatten()
        diag = F.softplus(pyro.param(self.prefix + "rho", lambda: self.init_rho.clone()))
        if self.rank is None:
            off = pyro.param(self.prefix + "tril", lambda: self.init_tril.clone())
            tril = torch.tril(off, -1) + torch.diag_embed(diag)
            if self.preconditioner is not None:
                return dist.MultivariateNormal(loc, scale_tril=self.preconditioner @ tril)
            return dist.MultivariateNormal(loc, scale_tril=self.unit.unsqueeze(-1) * tril)
        g = torch.Generator().manual_seed(0)
        factor = pyro.param(self.prefix + "factor",
                            lambda: (0.01 * torch.randn(self.dim, self.rank, generator=g)).to(loc))
        return dist.LowRankMultivariateNormal(loc, self.unit.unsqueeze(-1) * factor, (self.unit * diag).square())

    def __call__(self) -> torch.Tensor:
        q = dist.TransformedDistribution(self.distribution(), [ReshapeTransform((self.dim,), self.shape)])
        return pyro.sample(self.site, q)

    def median(self) -> dict[str, torch.Tensor]:
        return {self.site: self.loc()}

    def freeze(self) -> LatentDistribution:
        """The current q, detached (call inside the param-store scope it was fitted in)."""
        with torch.no_grad():
            d = self.distribution()
        return LatentDistribution(d, self.shape, d.mean.reshape(self.shape).clone())


class FlowGuide:
    """q(w): z ~ N(0, I), w = loc + s * d * T_K(...T_1(z)), with T_k inverse autoregressive
    (affine) flows (Kingma et al., 2016) on permuted coordinates, s the prior's standard units
    and d = softplus(rho).  The flows start at the identity (zeroed output layer), so the guide
    starts as the diagonal Gaussian N(init_loc, init_scale^2)."""

    def __init__(self, model: BRGMModel, num_flows: int = 2, hidden_dim: int | None = None,
                 init_loc: torch.Tensor | None = None, init_scale: torch.Tensor | float | None = None,
                 prefix: str = "") -> None:
        if num_flows < 1:
            raise ValueError(f"num_flows must be >= 1, got {num_flows}")
        base = MultivariateGaussianGuide(model, 1, init_loc, init_scale, prefix)
        self.site, self.shape, self.dim, self.unit = base.site, base.shape, base.dim, base.unit
        self.init_loc, self.init_rho, self.prefix = base.init_loc, base.init_rho, prefix
        hidden = [hidden_dim or max(2 * self.dim, 8)]
        g = torch.Generator().manual_seed(0)
        nets = []
        for _ in range(num_flows):
            net = AutoRegressiveNN(self.dim, hidden, permutation=torch.randperm(self.dim, generator=g))
            last = net.layers[-1]
            torch.nn.init.zeros_(last.weight)
            torch.nn.init.zeros_(last.bias)
            nets.append(net.to(self.init_loc))
        self.nets = torch.nn.ModuleList(nets)

    def loc(self) -> torch.Tensor:
        return pyro.param(self.prefix + "loc", lambda: self.init_loc.clone())

    def distribution(self) -> dist.Distribution:
        nets = pyro.module(self.prefix + "flows", self.nets)
        diag = F.softplus(pyro.param(self.prefix + "rho", lambda: self.init_rho.clone()))
        loc = self.loc().flatten()
        base = dist.Normal(torch.zeros_like(loc), torch.ones_like(loc)).to_event(1)
        transforms = [AffineAutoregressive(net) for net in nets] + [AffineTransform(loc, self.unit * diag, event_dim=1)]
        return dist.TransformedDistribution(base, transforms)

    def __call__(self) -> torch.Tensor:
        # sample the base point as an auxiliary site and score w = T(z) by the forward log-det:
        # log q(w) = log N(z) - log|det dT/dz|, never inverting T (an IAF's inverse is sequential
        # over the dimensions and, under autograd, holds n copies of the network's activations)
        d = self.distribution()
        x = pyro.sample(self.prefix + self.site + "_flow_base", d.base_dist, infer={"is_auxiliary": True})
        log_det = torch.zeros(x.shape[:-1]).to(x)
        for t in d.transforms:
            y = t(x)
            ladj = t.log_abs_det_jacobian(x, y)
            log_det = log_det + _sum_rightmost(ladj, ladj.ndim - log_det.ndim)
            x = y
        w = x.reshape(*x.shape[:-1], *self.shape)
        return pyro.sample(self.site, dist.Delta(w, log_density=-log_det, event_dim=len(self.shape)))

    def median(self) -> dict[str, torch.Tensor]:
        """T(0): the image of the base distribution's mode."""
        with torch.no_grad():
            d = self.distribution()
            x = torch.zeros(self.dim).to(self.init_loc)
            for t in d.transforms:
                x = t(x)
        return {self.site: x.reshape(self.shape)}

    def freeze(self) -> LatentDistribution:
        with torch.no_grad():
            d = self.distribution()
            frozen = dist.TransformedDistribution(d.base_dist, [t if not isinstance(t, AffineTransform) else
                                                  AffineTransform(t.loc.detach(), t.scale.detach(), event_dim=1)
                                                  for t in d.transforms])
        return LatentDistribution(frozen, self.shape, self.median()[self.site].clone(), has_log_prob=False)


GUIDES = ("gaussian", "shared", "normal", "fullrank", "lowrank", "flow", "delta")


def make_guide(guide: str | Callable, model: BRGMModel, init_scale: torch.Tensor | float | None = None,
               init_loc: torch.Tensor | None = None, rank: int | None = None, num_flows: int = 2,
               init_scale_tril: torch.Tensor | None = None) -> Callable:
    """A guide by name (``GUIDES``) or a user's callable, returned as is.  ``init_loc`` (the
    starting point, default w_avg) applies to every named guide; ``rank`` (default
    min(10, latent size)) to "lowrank";
    ``num_flows`` to "flow"; ``init_scale_tril`` (a starting covariance's Cholesky factor over
    the flattened latent) to "fullrank"."""
    if init_scale_tril is not None and guide != "fullrank":
        raise ValueError(f"init_scale_tril applies to the 'fullrank' guide only, not {guide!r}")
    if callable(guide):
        return guide
    start = model.prior.init_loc().detach().clone() if init_loc is None else init_loc.detach().clone()
    init = init_to_value(values={model.prior.site: start,
                                 **model.initial_values()})  # + the starting values of other latent sites
    if guide == "gaussian":
        q = GaussianGuide(model, init_scale)
        q.init_loc = start.to(q.init_loc)
        return q
    if guide == "shared":
        if init_loc is not None:
            raise ValueError("init_loc is not supported by the 'shared' guide")
        return SharedGaussianGuide(model, init_scale)
    if guide == "normal":
        return AutoNormal(model.model, init_loc_fn=init, init_scale=0.1)
    if guide in ("fullrank", "lowrank", "flow") and model.latent_parameters():
        raise ValueError(f"the {guide!r} guide covers w only, but this model also infers "
                         f"{', '.join(model.latent_parameters())}; use guide='gaussian' or 'normal' for it")
    if guide == "fullrank":
        return MultivariateGaussianGuide(model, None, start, init_scale, init_scale_tril=init_scale_tril)
    if guide == "lowrank":
        return MultivariateGaussianGuide(model, min(10, start.numel()) if rank is None else rank, start, init_scale)
    if guide == "flow":
        return FlowGuide(model, num_flows, init_loc=start, init_scale=init_scale)
    if guide == "delta":
        return AutoDelta(model.model, init_loc_fn=init)
    raise ValueError(f"unknown guide {guide!r}; expected one of {GUIDES} or a callable")
