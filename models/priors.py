"""Priors on the generator's latent w (Eq. 2 of the paper).

A latent prior is a callable ``prior() -> ws`` that runs Pyro sample statements and returns the
W+ latents (..., num_ws, w_dim) given to the generator; leading dimensions are particle/sample
batch dimensions.  It also offers ``init_loc()`` (the starting point, in the shape of its own
sample site) and ``ws_from_latent(value)`` (site value -> W+ latents) so that guides and
posterior samplers work with any prior.

``ColinearityPrior`` is the second product of Eq. 2, a factor on the W+ latents.
"""

from __future__ import annotations

import torch
import pyro
import pyro.distributions as dist

from brgm_pyro.generators.base import LatentStats


def _as_layer_tensor(value: torch.Tensor | float, num_ws: int, w_dim: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.get_default_dtype())
    if t.ndim == 0:
        return t.expand(num_ws, w_dim).clone()
    if t.shape == (w_dim,):
        return t.expand(num_ws, w_dim).clone()
    if t.shape == (num_ws, w_dim):
        return t.clone()
    raise ValueError(f"{name} must be a scalar, ({w_dim},) or ({num_ws}, {w_dim}); got shape {tuple(t.shape)}")


class GaussianLatentPrior:
    """w_i ~ N(mean, std^2) independently for every layer i of W+ (first product of Eq. 2).

    Sample site ``site`` (default "w") with event shape (num_ws, w_dim).  ``std`` is a scalar
    (the authors' release: sqrt(mean ||w - mean||^2)), a per-dimension vector, or per layer.
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
    def from_stats(cls, stats: LatentStats, num_ws: int, per_dimension: bool = False) -> "GaussianLatentPrior":
        """mu = mean of the mapping samples; sigma = scalar std (default, as released) or per dimension."""
        return cls(stats.mean, stats.std if per_dimension else stats.std_scalar, num_ws)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "GaussianLatentPrior":
        self.mean = self.mean.to(device=device, dtype=dtype)
        self.std = self.std.to(device=device, dtype=dtype)
        return self

    def distribution(self) -> dist.Distribution:
        return dist.Normal(self.mean, self.std).to_event(2)

    def __call__(self) -> torch.Tensor:
        return pyro.sample(self.site, self.distribution())

    def init_loc(self) -> torch.Tensor:
        return self.mean.clone()

    def init_scale(self) -> torch.Tensor:
        return self.std.clone()

    def ws_from_latent(self, value: torch.Tensor) -> torch.Tensor:
        return value


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


class StudentTLatentPrior(GaussianLatentPrior):
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
