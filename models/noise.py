"""Priors on unknown noise levels (a learned sigma_pixel / sigma_perceptual).

``PixelLikelihood(sigma="learn")`` samples sigma_pixel at the site ``"sigma_pixel"`` from
``pixel_noise_prior()`` = HalfNormal(0.5) (images in [-1, 1]: weakly informative, 95% below 0.98);
``PixelLikelihood(sigma=LatentParameter(prior))`` takes any positive scalar prior, e.g.
``inverse_gamma_on_variance(alpha, beta)`` (sigma^2 ~ InvGamma(alpha, beta)) or a LogNormal.
``PerceptualLikelihood(features, sigma="learn")`` uses ``perceptual_noise_prior()`` =
LogNormal(log 0.1, 2) (wide on the log scale, since the feature scale depends on the network).
"""

from __future__ import annotations

import math

import pyro.distributions as dist
from torch.distributions.transforms import PowerTransform

from brgm_pyro.corruptions.latent import LatentParameter

PIXEL_NOISE_SITE = "sigma_pixel"
PERCEPTUAL_NOISE_SITE = "sigma_perceptual"


def pixel_noise_prior(scale: float = 0.5) -> dist.Distribution:
    """sigma_pixel ~ HalfNormal(scale) (default 0.5, on [-1, 1] images)."""
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    return dist.HalfNormal(scale)


def perceptual_noise_prior(median: float = 0.1, log_scale: float = 2.0) -> dist.Distribution:
    """sigma_perceptual ~ LogNormal(log median, log_scale)."""
    if not median > 0 or not log_scale > 0:
        raise ValueError(f"median and log_scale must be positive, got {median}, {log_scale}")
    return dist.LogNormal(math.log(median), log_scale)


def inverse_gamma_on_variance(alpha: float, beta: float) -> dist.Distribution:
    """The distribution of sigma when sigma^2 ~ InverseGamma(alpha, beta) (the conjugate choice)."""
    if not alpha > 0 or not beta > 0:
        raise ValueError(f"alpha and beta must be positive, got {alpha}, {beta}")
    return dist.TransformedDistribution(dist.InverseGamma(alpha, beta), [PowerTransform(0.5)])


def as_noise_parameter(sigma: float | str | LatentParameter, default_site: str) -> float | LatentParameter:
    """A likelihood's sigma argument: a positive number, "learn" (the default prior), or a LatentParameter."""
    if isinstance(sigma, str):
        if sigma != "learn":
            raise ValueError(f"sigma must be a positive number, 'learn' or a LatentParameter, got {sigma!r}")
        prior = pixel_noise_prior() if default_site == PIXEL_NOISE_SITE else perceptual_noise_prior()
        return LatentParameter(prior, name=default_site)
    if isinstance(sigma, LatentParameter):
        if sigma.name is None:
            return LatentParameter(sigma.prior, name=default_site, init=sigma.init)
        return sigma
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    return float(sigma)
