"""Priors on the generator's latent w (Eq. 2 of the paper).

``LatentPrior`` is the contract every latent prior meets (``BRGMModel.prior`` is typed with it):
a callable ``prior() -> ws`` that runs a Pyro sample statement at its site ``site`` and returns the
W+ latents (..., num_ws, w_dim) given to the generator (leading dimensions are particle / sample
batch dimensions), plus ``init_loc()`` (the starting point, in the shape of its own sample site),
``init_scale()`` (a typical spread per element of that site, for guides' starting scales) and
``ws_from_latent(value)`` (site value -> W+ latents), so that guides and posterior samplers work
with any prior.  A prior need not subclass anything here.

``ColinearityPrior`` is the second product of Eq. 2, a factor on the W+ latents.
"""

from __future__ import annotations

from typing import Protocol, Self, runtime_checkable

import pyro
import pyro.distributions as dist
import torch

from brgm_pyro.generators.base import LatentStats


@runtime_checkable
class LatentPrior(Protocol):
    """What ``BRGMModel`` and the inference code ask of a prior on w (first product of Eq. 2).

    - ``site``: the name of the Pyro sample site of the latent;
    - ``prior()``: sample the site (``pyro.sample(site, ...)``) and return the W+ latents
      (..., num_ws, w_dim);
    - ``init_loc()``: a starting value of the site (MAP, MCMC and guides start there);
    - ``init_scale()``: positive spreads in the site's shape (guides' starting standard deviations,
      the Laplace approximation's prior scale);
    - ``ws_from_latent(value)``: the W+ latents (..., num_ws, w_dim) of site values (..., *site shape).

    Optional capabilities (a prior without them is taken not to have the property):
    ``gaussian_loc_scale()`` -> (loc, scale) in the site's shape when the site is distributed
    N(loc, diag(scale^2)), else None (the Laplace approximation and simulated problems need it);
    ``distribution()`` (the site's distribution) and ``to(device, dtype)``.
    """

    site: str

    def __call__(self) -> torch.Tensor: ...

    def init_loc(self) -> torch.Tensor: ...

    def init_scale(self) -> torch.Tensor: ...

    def ws_from_latent(self, value: torch.Tensor) -> torch.Tensor: ...


def _as_layer_tensor(value: torch.Tensor | float, num_ws: int, w_dim: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.get_default_dtype())
    if t.ndim == 0:
        return t.expand(num_ws, w_dim).clone()
    if t.shape == (w_dim,):
        return t.expand(num_ws, w_dim).clone()
    if t.shape == (num_ws, w_dim):
        return t.clone()
    raise ValueError(f"{name} must be a scalar, ({w_dim},) or ({num_ws}, {w_dim}); got shape {tuple(t.shape)}")


class LocationScaleLatentPrior:
    """w_i ~ D(mean, std) independently per element of every layer i of W+ (event (num_ws, w_dim)),
    for a location-scale family D given by ``distribution()`` (subclasses).

    ``std`` is a scalar (the authors' release: sqrt(mean ||w - mean||^2)), a per-dimension vector,
    or per layer.  Sample site ``site`` (default "w").
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor | float, num_ws: int, site: str = "w") -> None:
        mean = torch.as_tensor(mean)
        w_dim = mean.shape[-1]
        self.num_ws, self.w_dim, self.site = num_ws, w_dim, site
        self.mean = _as_layer_tensor(mean, num_ws, w_dim, "mean")
        self.std = _as_layer_tensor(std, num_ws, w_dim, "std")
        if (self.std <= 0).any():
            raise ValueError("std must be positive")

    @classmethod
    def from_stats(cls, stats: LatentStats, num_ws: int, per_dimension: bool = False) -> Self:
        """mu = mean of the mapping samples; sigma = scalar std (default, as released) or per dimension."""
        return cls(stats.mean, stats.std if per_dimension else stats.std_scalar, num_ws)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Self:
        self.mean = self.mean.to(device=device, dtype=dtype)
        self.std = self.std.to(device=device, dtype=dtype)
        return self

    def distribution(self) -> dist.Distribution:
        raise NotImplementedError(f"{type(self).__name__} must define distribution()")

    def __call__(self) -> torch.Tensor:
        return pyro.sample(self.site, self.distribution())

    def init_loc(self) -> torch.Tensor:
        return self.mean.clone()

    def init_scale(self) -> torch.Tensor:
        return self.std.clone()

    def ws_from_latent(self, value: torch.Tensor) -> torch.Tensor:
        return value

    def gaussian_loc_scale(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """None: the family D is not Gaussian (``GaussianLatentPrior`` says otherwise)."""
        return None


def gaussian_loc_scale(prior: LatentPrior) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``prior.gaussian_loc_scale()`` where the prior has that capability, else None."""
    capability = getattr(prior, "gaussian_loc_scale", None)
    return None if capability is None else capability()


class GaussianLatentPrior(LocationScaleLatentPrior):
    """w_i ~ N(mean, std^2) independently for every layer i of W+ (first product of Eq. 2).

    Sample site ``site`` (default "w") with event shape (num_ws, w_dim).  ``std`` is a scalar
    (the authors' release: sqrt(mean ||w - mean||^2)), a per-dimension vector, or per layer.
    """

    def distribution(self) -> dist.Distribution:
        return dist.Normal(self.mean, self.std).to_event(2)

    def gaussian_loc_scale(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) in the site's shape: the site is N(mean, diag(std^2))."""
        return self.init_loc(), self.init_scale()


class SharedLatentPrior(GaussianLatentPrior):
    """One w shared by every layer (the W space of StyleGAN2): w ~ N(mean, std^2), ws = [w, ..., w].

    Sample site ``site`` with event shape (w_dim,).
    """

    def distribution(self) -> dist.Distribution:
        return dist.Normal(self.mean[0], self.std[0]).to_event(1)

    def __call__(self) -> torch.Tensor:
        return self.ws_from_latent(pyro.sample(self.site, self.distribution()))

    def init_loc(self) -> torch.Tensor:
        return self.mean[0].clone()

    def init_scale(self) -> torch.Tensor:
        return self.std[0].clone()

    def ws_from_latent(self, value: torch.Tensor) -> torch.Tensor:
        return value.unsqueeze(-2).expand(*value.shape[:-1], self.num_ws, self.w_dim)


class LayerCorrelatedPrior(GaussianLatentPrior):
    """Eq. 2's Gaussian on W+ with correlated layers: w_i = w_0 + d_i, where the style w_0 ~ N(mean,
    rho std^2) is shared by every layer and d_i ~ N(0, (1 - rho) std^2) is layer i's own deviation.

    Each w_i is N(mean, std^2), as in Eq. 2's first product, and any two layers correlate with
    ``correlation`` rho per dimension: rho = 0 is the paper's independent layers (``GaussianLatentPrior``),
    rho -> 1 the W space of one shared w (``SharedLatentPrior``).  The sample site holds (w_0, d_1, ..., d_L):
    event shape (num_ws + 1, w_dim), independent Gaussians, so the MAP, the Laplace approximation, the
    guides and NUTS work on it unchanged; ``ws_from_latent`` adds w_0 to every d_i.  For a Gaussian the
    site's mode maps to the mode of the correlated W+ density (the extra direction is profiled out
    exactly), so MAP here is MAP under N(mean, std^2 ((1 - rho) I + rho 1 1^T)) across the layers.
    ``mean`` and ``std`` must be the same for every layer.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor | float, num_ws: int, correlation: float,
                 site: str = "w") -> None:
        super().__init__(mean, std, num_ws, site)
        if not 0.0 < correlation < 1.0:
            raise ValueError(f"correlation must lie in (0, 1) (0: GaussianLatentPrior, 1: SharedLatentPrior), "
                             f"got {correlation}")
        if not (torch.equal(self.mean, self.mean[:1].expand_as(self.mean))
                and torch.equal(self.std, self.std[:1].expand_as(self.std))):
            raise ValueError("LayerCorrelatedPrior needs the same mean and std for every layer")
        self.correlation = float(correlation)

    @classmethod
    def from_stats(cls, stats: LatentStats, num_ws: int, per_dimension: bool = False, *,
                   correlation: float) -> Self:
        return cls(stats.mean, stats.std if per_dimension else stats.std_scalar, num_ws, correlation)

    def init_loc(self) -> torch.Tensor:
        """(w_0, d_1, ..., d_L) at their means: (num_ws + 1, w_dim); every w_i = mean."""
        return torch.cat([self.mean[:1], torch.zeros_like(self.mean)])

    def init_scale(self) -> torch.Tensor:
        """sqrt(rho) std for w_0, sqrt(1 - rho) std for each d_i: (num_ws + 1, w_dim)."""
        return torch.cat([self.correlation ** 0.5 * self.std[:1], (1.0 - self.correlation) ** 0.5 * self.std])

    def distribution(self) -> dist.Distribution:
        return dist.Normal(self.init_loc(), self.init_scale()).to_event(2)

    def __call__(self) -> torch.Tensor:
        return self.ws_from_latent(pyro.sample(self.site, self.distribution()))

    def ws_from_latent(self, value: torch.Tensor) -> torch.Tensor:
        """(..., num_ws + 1, w_dim) -> w_i = w_0 + d_i: (..., num_ws, w_dim)."""
        return value[..., :1, :] + value[..., 1:, :]


class StudentTLatentPrior(LocationScaleLatentPrior):
    """Heavy-tailed alternative: w_i ~ StudentT(df, mean, std) per element, event (num_ws, w_dim)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor | float, num_ws: int, df: float = 3.0,
                 site: str = "w") -> None:
        super().__init__(mean, std, num_ws, site)
        if df <= 0:
            raise ValueError(f"df must be positive, got {df}")
        self.df = float(df)

    def distribution(self) -> dist.Distribution:
        return dist.StudentT(self.df, self.mean, self.std).to_event(2)


def pairwise_cosines(ws: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """cos(angle(w_i, w_j)) for all ordered pairs: (..., L, D) -> (..., L, L).

    The norm is sqrt(||w||^2 + eps), so identical or zero layers give finite values and gradients.
    """
    unit = ws / (ws.square().sum(dim=-1, keepdim=True) + eps).sqrt()
    return unit @ unit.transpose(-1, -2)


class ColinearityPrior:
    """von Mises prior M(angle(w_i, w_j) | 0, kappa) over all L^2 ordered pairs (second product of Eq. 2).

    log p = kappa * sum_{i,j} cos(angle(w_i, w_j)) + const, added as ``pyro.factor(site)``.  The
    value has the batch shape of ``ws`` (one value per particle), never a sum over particles.
    """

    def __init__(self, kappa: float, site: str = "colinearity") -> None:
        if kappa < 0:
            raise ValueError(f"kappa must be non-negative (alignment), got {kappa}")
        self.kappa = float(kappa)
        self.site = site

    def log_factor(self, ws: torch.Tensor) -> torch.Tensor:
        return self.kappa * pairwise_cosines(ws).sum(dim=(-1, -2))

    def __call__(self, ws: torch.Tensor) -> torch.Tensor:
        value = self.log_factor(ws)
        pyro.factor(self.site, value)
        return value
