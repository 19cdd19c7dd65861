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


def check_positive(value: float, what: str) -> float:
    """``value`` as a float, or a ``ValueError`` naming ``what`` unless it is a finite number > 0."""
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"the {what} must be a positive number, got {value}")
    return value


def check_interval_scale(scale: float) -> float:
    """``scale`` as a float, or a ``ValueError`` unless it is a finite number > 0."""
    return check_positive(scale, "interval scale")


def widen(posterior: Posterior, scale: float) -> Posterior:
    """The posterior widened by ``scale`` about its centre (module docstring).

    A posterior defined by a Gaussian q that can rebuild itself around another (``with_q``: a
    ``VIPosterior``) gets q_s = N(mu, s^2 Sigma) exactly (its ``q``, ``log_prob`` and the joint
    density test follow); any other
    posterior (MCMC draws, mixtures, flows) gets its draws mapped to c + s (w - c) about its
    ``mean_latent`` c.  ``scale`` 1 returns the posterior itself."""
    scale = check_interval_scale(scale)
    if scale == 1.0:
        return posterior
    q = getattr(posterior, "q", None)
    with_q = getattr(posterior, "with_q", None)  # a posterior defined by its q (VI) rebuilds itself around q_s
    if with_q is not None and q is not None:
        try:
            new_q = ImageStack([widen_distribution(c, scale) for c in q.images()]) if isinstance(q, ImageStack) \
                else widen_distribution(q, scale)
        except TypeError:
            new_q = None
        if new_q is not None:
            widened = with_q(new_q, scale)
            widened.diagnostics = {**getattr(posterior, "diagnostics", {}), "interval_scale": scale}
            return widened
    centre = posterior.mean_latent
    if centre is None:
        raise ValueError(f"this {type(posterior).__name__} has no mean_latent to widen its draws about")
    draw = posterior.sample_latents

    def sample_latents(n: int) -> torch.Tensor:
        w = draw(n)
        c = centre.to(w)
        return c + scale * (w - c)

    return Posterior(posterior.model, sample_latents, centre)
