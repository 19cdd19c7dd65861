"""Likelihoods of the observation given the corrupted generated image f(G(w)) (Eq. 4).

A likelihood is a callable ``likelihood(corrupted, observation, mask)`` that runs one observed
Pyro sample statement.  ``corrupted``: (..., C', H', W') with leading particle dimensions;
``observation``: (C', H', W'); ``mask``: (C', H', W') with 1 = observed, or None.
"""

from __future__ import annotations

import torch
import pyro
import pyro.distributions as dist
from torch import nn


class PixelLikelihood:
    """I ~ N(f(G(w)), sigma^2) on the observed pixels only (first factor of Eq. 4).

    Unobserved values (mask 0) are left out of the likelihood, not compared with a fill value.
    """

    def __init__(self, sigma: float, site: str = "obs_pixel") -> None:
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.sigma = float(sigma)
        self.site = site

    def __call__(self, corrupted: torch.Tensor, observation: torch.Tensor, mask: torch.Tensor | None) -> None:
        d = dist.Normal(corrupted, self.sigma)
        if mask is not None:
            d = d.mask(mask.bool())
        pyro.sample(self.site, d.to_event(3), obs=observation)


class PerceptualLikelihood:
    """phi(I) ~ N(phi(f(G(w))), sigma^2) in a feature space (second factor of Eq. 4).

    Together with the pixel likelihood this is a *composite* likelihood: phi(I) is a function of
    I, so the two factors are not independent observations; the paper (and this library) still
    multiplies them, which weighs the perceptual agreement as extra evidence.
    """

    def __init__(self, features: nn.Module, sigma: float, site: str = "obs_perceptual") -> None:
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.features = features
        self.sigma = float(sigma)
        self.site = site
        self._target_key: tuple | None = None
        self._target: torch.Tensor | None = None

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
        pyro.sample(self.site, dist.Normal(feats, self.sigma).to_event(1), obs=self.target(observation))
