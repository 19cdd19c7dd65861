"""Widening a posterior about its centre by an interval scale s, so that its central intervals
grow by s (the correction that ``brgm_pyro.study.interval_scale`` fits on simulated problems):

    q_s(w) = N(mu, s^2 Sigma)        for a Gaussian q = N(mu, Sigma)  (exact)
    w_s    = c + s (w - c)           for any other posterior's draws w, about its centre c
"""

from __future__ import annotations

import math

import torch

from .guides import ImageStack, LatentDistribution
from .posterior import Posterior
from .vi import VIPosterior

__all__ = ["check_interval_scale", "widen", "widen_distribution"]


def widen_distribution(q: LatentDistribution, scale: float) -> LatentDistribution:
    """q_s = N(mu, s^2 Sigma) for a Gaussian ``LatentDistribution`` (full-rank, low-rank or
    diagonal); other families raise ``TypeError`` (widen their draws with ``widen`` instead)."""
    d = q.distribution
    D = torch.distributions
    if isinstance(d, D.MultivariateNormal):
        new = D.MultivariateNormal(d.loc, scale_tril=scale * d.scale_tril)
    elif isinstance(d, D.LowRankMultivariateNormal):
        new = D.LowRankMultivariateNormal(d.loc, scale * d.cov_factor, scale ** 2 * d.cov_diag)
    elif isinstance(d, D.Independent) and isinstance(d.base_dist, D.Normal):
        new = D.Independent(D.Normal(d.base_dist.loc, scale * d.base_dist.scale), d.reinterpreted_batch_ndims)
    else:
        raise TypeError(f"cannot widen a {type(d).__name__} in closed form; widen(posterior, scale) widens its draws")
    return LatentDistribution(new, q.shape, q.mean, q.has_log_prob)


def check_interval_scale(scale: float) -> float:
    """``scale`` as a float, or a ``ValueError`` unless it is a finite number > 0."""
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"the interval scale must be a positive number, got {scale}")
    return scale


def widen(posterior: Posterior, scale: float) -> Posterior:
    """The posterior widened by ``scale`` about its centre (module docstring).

    A ``VIPosterior`` with a Gaussian q gets q_s = N(mu, s^2 Sigma) exactly (a new
    ``VIPosterior``; its ``q``, ``log_prob`` and the joint density test follow); any other
    posterior (MCMC draws, mixtures, flows) gets its draws mapped to c + s (w - c) about its
    ``mean_latent`` c.  ``scale`` 1 returns the posterior itself."""
    scale = check_interval_scale(scale)
    if scale == 1.0:
        return posterior
    q = getattr(posterior, "q", None)
    if isinstance(posterior, VIPosterior) and q is not None:
        try:
            if isinstance(q, ImageStack):
                new_q = ImageStack([widen_distribution(c, scale) for c in q.images()])
            else:
                new_q = widen_distribution(q, scale)
        except TypeError:
            new_q = None
        if new_q is not None:
            widened = VIPosterior(posterior.model, new_q.sample, posterior.mean_latent, posterior.history,
                                  posterior.guide, posterior.state, posterior.loc,
                                  None if posterior.scale is None else scale * posterior.scale, new_q)
            widened.diagnostics = {**getattr(posterior, "diagnostics", {}), "interval_scale": scale}
            return widened
    centre = posterior.mean_latent
    if centre is None:
        raise ValueError(f"this {type(posterior).__name__} has no mean_latent to widen its draws about")
    draw = posterior._sample_latents

    def sample_latents(n: int) -> torch.Tensor:
        w = draw(n)
        c = centre.to(w)
        return c + scale * (w - c)

    return Posterior(posterior.model, sample_latents, centre)
