"""A mixture of Gaussian variational fits from several starting points (for multimodal posteriors).

Each component k starts at a draw w0_k from the prior, climbs to a mode with MAP (``map_steps``
Adam steps, Eq. 6), and is a Gaussian there: the Laplace approximation (``guide="laplace"``), the
full-rank guide fitted from it (``"fullrank"``), or another Gaussian guide fitted with ``fit_vi``
from the mode (``"lowrank"``, ``"gaussian"``; Eq. 7).  The mixture
q(w) = sum_k pi_k q_k(w) weights the components by their ELBO, pi_k ∝ exp(ELBO_k) (each ELBO
estimated with fresh draws, so it is not the noisy last SVI step): a component's ELBO is a lower
bound on log p(I) restricted to its mode, so these are approximate posterior masses of the modes.
``weighting="equal"`` gives every component 1 / K instead.
"""

from __future__ import annotations

from typing import Any

import torch

from brgm_pyro.models.brgm import BRGMModel

from .guides import LatentDistribution
from .importance import log_joint
from .laplace import LaplacePosterior, fit_laplace
from .map import map_estimate
from .posterior import Posterior
from .vi import VIPosterior, fit_vi

WEIGHTINGS = ("elbo", "equal")
ENSEMBLE_GUIDES = ("laplace", "fullrank", "lowrank", "gaussian")


class LatentMixture:
    """sum_k pi_k q_k(w) over the latent site, with components that have ``log_prob``."""

    def __init__(self, components: list[LatentDistribution], log_weights: torch.Tensor) -> None:
        if len(components) != log_weights.numel():
            raise ValueError("one log weight per component")
        self.components = components
        self.log_weights = log_weights - torch.logsumexp(log_weights, 0)
        self.shape = components[0].shape
        self.has_log_prob = all(c.has_log_prob for c in components)
        self.mean = (self.log_weights.exp().reshape(-1, *[1] * len(self.shape)).to(components[0].mean)
                     * torch.stack([c.mean for c in components])).sum(0)

    @torch.no_grad()
    def log_prob(self, latents: torch.Tensor) -> torch.Tensor:
        per = torch.stack([c.log_prob(latents) for c in self.components], -1)
        return torch.logsumexp(per + self.log_weights.to(per), -1)

    @torch.no_grad()
    def sample_with_log_prob(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        which = torch.multinomial(self.log_weights.exp(), n, replacement=True)
        counts = torch.bincount(which, minlength=len(self.components))
        draws = [c.sample(int(m)) for c, m in zip(self.components, counts) if m > 0]
        latents = torch.cat(draws)[torch.randperm(n)]
        return latents, self.log_prob(latents)

    def sample(self, n: int) -> torch.Tensor:
        which = torch.multinomial(self.log_weights.exp(), n, replacement=True)
        counts = torch.bincount(which, minlength=len(self.components))
        draws = [c.sample(int(m)) for c, m in zip(self.components, counts) if m > 0]
        return torch.cat(draws)[torch.randperm(n)]


class MixturePosterior(Posterior):
    """Draws from the mixture ``q`` (a ``LatentMixture``); ``fits`` are the components' ``fit_vi``
    results, ``elbos`` their ELBO estimates, ``weights`` the mixture weights, ``diagnostics``
    {"weights", "elbos"} (recorded by the calibration benchmark)."""

    def __init__(self, model: BRGMModel, q: LatentMixture, fits: list[VIPosterior | LaplacePosterior],
                 elbos: torch.Tensor) -> None:
        super().__init__(model, q.sample, q.mean)
        self.q, self.fits, self.elbos = q, fits, elbos
        self.weights = q.log_weights.exp()
        self.diagnostics: dict[str, Any] = {"weights": self.weights.tolist(), "elbos": elbos.tolist()}


@torch.no_grad()
def estimate_elbo(model: BRGMModel, q: LatentDistribution, num_draws: int = 256) -> float:
    """E_q[log p(w, I) - log q(w)] from ``num_draws`` fresh draws of q."""
    latents, log_q = q.sample_with_log_prob(num_draws)
    return float((log_joint(model, latents) - log_q.double().cpu()).mean())


def fit_ensemble(
    model: BRGMModel,
    num_components: int = 4,
    guide: str = "laplace",
    map_steps: int = 300,
    weighting: str = "elbo",
    num_elbo_draws: int = 256,
    start_scale: float = 1.0,
    seed: int = 0,
    **fit_options: Any,
) -> MixturePosterior:
    """Fit ``num_components`` Gaussians (``guide``: "laplace", "fullrank", "lowrank" or "gaussian")
    from starting points drawn from the prior (std multiplied by ``start_scale``), each first moved
    to a nearby mode by ``map_steps`` MAP steps, and mix them weighted by their ELBO (``weighting``).
    ``fit_options`` go to ``fit_vi`` (num_steps, lr, num_particles, init_scale, rank, ...); the
    fits are kept in ``.fits`` (``LaplacePosterior`` or ``VIPosterior``).
    """
    if num_components < 1:
        raise ValueError(f"num_components must be >= 1, got {num_components}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if guide not in ENSEMBLE_GUIDES:
        raise ValueError(f"guide must be one of {ENSEMBLE_GUIDES} (a Gaussian with a log density), got {guide!r}")
    if map_steps < 1 and guide in ("laplace", "fullrank"):
        raise ValueError(f"the {guide!r} components need a mode: map_steps must be >= 1")
    model.require_single("fit_ensemble")
    g = torch.Generator().manual_seed(seed)
    loc, scale = model.prior.init_loc().detach(), model.prior.init_scale().detach()
    fits, elbos = [], []
    for k in range(num_components):
        start = loc + start_scale * scale * torch.randn(loc.shape, generator=g).to(loc)
        if guide in ("laplace", "fullrank"):
            fit = fit_laplace(model, num_steps=map_steps, init=start, seed=seed + k)
            if guide == "fullrank":
                fit = fit_vi(model, guide="fullrank", init_loc=fit.q.mean,
                             init_scale_tril=fit.q.distribution.scale_tril, seed=seed + k, progress=False,
                             **fit_options)
        else:
            if map_steps > 0:
                start = map_estimate(model, num_steps=map_steps, init=start, seed=seed + k, progress=False).latent
            fit = fit_vi(model, guide=guide, init_loc=start, seed=seed + k, progress=False, **fit_options)
        torch.manual_seed(seed + 7919 * (k + 1))
        fits.append(fit)
        elbos.append(estimate_elbo(model, fit.q, num_elbo_draws))
    elbo = torch.tensor(elbos, dtype=torch.float64)
    log_weights = elbo.clone() if weighting == "elbo" else torch.zeros(num_components, dtype=torch.float64)
    mixture = LatentMixture([f.q for f in fits], log_weights)
    return MixturePosterior(model, mixture, fits, elbo)


