"""Likelihoods of the observation given the corrupted generated image f(G(w)) (Eq. 4).

A likelihood is a callable ``likelihood(corrupted, observation, mask)`` that runs one observed
Pyro sample statement.  ``corrupted``: (..., C', H', W') with leading particle dimensions;
``observation``: (C', H', W'); ``mask``: (C', H', W') with 1 = observed, or None.  Optional
capability: ``gaussian_pixel_noise()`` -> sigma when the observation is f(G(w)) + N(0, sigma^2)
pixel by pixel with a known sigma, else None (the Laplace approximation and simulated problems
need it; a likelihood without the method is taken not to be one).

``sigma`` may be a number, ``"learn"`` or a ``LatentParameter``: an unknown noise level is sampled
at its own site (``"sigma_pixel"`` / ``"sigma_perceptual"``, priors in ``models.noise``) just
before the observation, one value per image of a batch and per particle.
"""

from __future__ import annotations

from dataclasses import replace

import pyro
import torch
import pyro.distributions as dist
from torch import nn

from brgm_pyro.corruptions.latent import LatentParameter

from .noise import PERCEPTUAL_NOISE_SITE, PIXEL_NOISE_SITE, as_noise_parameter


class NoiseLevel:
    """The sigma of a likelihood: fixed (``sigma`` a float) or latent (``sigma`` None, ``sigma_prior`` set)."""

    def _set_sigma(self, sigma: float | str | LatentParameter, default_site: str) -> None:
        value = as_noise_parameter(sigma, default_site)
        if isinstance(value, LatentParameter):
            self.sigma, self.sigma_prior = None, value
            self.sigma_site = value.site(default_site)
        else:
            self.sigma, self.sigma_prior, self.sigma_site = value, None, None

    def latent_parameters(self) -> dict[str, LatentParameter]:
        return {} if self.sigma_prior is None else {self.sigma_site: self.sigma_prior}

    def _sigma(self, event_dims: int) -> float | torch.Tensor:
        if self.sigma_prior is None:
            return self.sigma
        sigma = pyro.sample(self.sigma_site, self.sigma_prior.prior)
        return sigma.reshape(*sigma.shape, *(1,) * event_dims) if sigma.ndim else sigma


class PixelLikelihood(NoiseLevel):
    """I ~ N(f(G(w)), sigma^2) on the observed pixels only (first factor of Eq. 4).

    Unobserved values (mask 0) are left out of the likelihood, not compared with a fill value.
    """

    def __init__(self, sigma: float | str | LatentParameter, site: str = "obs_pixel") -> None:
        self._set_sigma(sigma, PIXEL_NOISE_SITE)
        self.site = site

    def gaussian_pixel_noise(self) -> float | None:
        """sigma: the observation is N(f(G(w)), sigma^2) per observed pixel; None when sigma is learnt."""
        return self.sigma

    def with_pixel_noise(self, sigma: float | str | LatentParameter) -> "PixelLikelihood":
        """The same likelihood with another sigma_pixel (a number, "learn" or a ``LatentParameter``)."""
        return PixelLikelihood(sigma, self.site)

    def __call__(self, corrupted: torch.Tensor, observation: torch.Tensor, mask: torch.Tensor | None) -> None:
        d = dist.Normal(corrupted, self._sigma(3))
        if mask is not None:
            d = d.mask(mask.bool())
        pyro.sample(self.site, d.to_event(3), obs=observation)


class PerceptualLikelihood(NoiseLevel):
    """phi(I) ~ N(phi(f(G(w))), sigma^2) in a feature space (second factor of Eq. 4).

    Together with the pixel likelihood this is a *composite* likelihood: phi(I) is a function of
    I, so the two factors are not independent observations; the paper (and this library) still
    multiplies them, which weighs the perceptual agreement as extra evidence.
    """

    def __init__(self, features: nn.Module, sigma: float | str | LatentParameter, site: str = "obs_perceptual") -> None:
        self._set_sigma(sigma, PERCEPTUAL_NOISE_SITE)
        self.features = features
        self.site = site
        self._target_key: tuple | None = None
        self._target: torch.Tensor | None = None

    def gaussian_pixel_noise(self) -> None:
        """None: the noise is in feature space, not on the pixels."""
        return None

    def target(self, observation: torch.Tensor) -> torch.Tensor:
        """phi(I), computed once per observation tensor ((C', H', W') -> (F,), (B, ...) -> (B, F))."""
        key = (observation.data_ptr(), tuple(observation.shape), observation.device, observation._version)
        if key != self._target_key:
            with torch.no_grad():
                if observation.ndim == 4:
                    self._target = self.features(observation)
                else:
                    self._target = self.features(observation.unsqueeze(0))[0]
            self._target_key = key
        return self._target

    def __call__(self, corrupted: torch.Tensor, observation: torch.Tensor, mask: torch.Tensor | None) -> None:
        batch = corrupted.shape[:-3]
        feats = self.features(corrupted.reshape(-1, *corrupted.shape[-3:]))
        feats = feats.reshape(*batch, feats.shape[-1])
        pyro.sample(self.site, dist.Normal(feats, self._sigma(1)).to_event(1), obs=self.target(observation))


def gaussian_pixel_noise(likelihood) -> float | None:
    """``likelihood.gaussian_pixel_noise()`` where the likelihood has that capability, else None."""
    capability = getattr(likelihood, "gaussian_pixel_noise", None)
    return None if capability is None else capability()


def learn_noise(model, prior: dist.Distribution | None = None, perceptual: bool = False):
    """A copy of ``model`` whose pixel likelihood (``with_pixel_noise``: the plain one or the misfit term's) learns
    sigma_pixel (prior ``prior``, default ``pixel_noise_prior()``), and with ``perceptual`` the perceptual sigma
    too."""
    likelihoods, pixel = [], False
    for lik in model.likelihoods:
        if callable(getattr(lik, "with_pixel_noise", None)):  # the pixel likelihood, with or without a misfit term
            lik = lik.with_pixel_noise("learn" if prior is None else LatentParameter(prior, name=PIXEL_NOISE_SITE))
            pixel = True
        elif perceptual and isinstance(lik, PerceptualLikelihood):
            lik = PerceptualLikelihood(lik.features, "learn", lik.site)
        likelihoods.append(lik)
    if not pixel:
        raise ValueError("learn_noise needs a model with a pixel likelihood")
    return replace(model, likelihoods=tuple(likelihoods))
