"""The model's parameters (sigmas and kappa) and their conversion from the paper's and the
authors' released lambda weights.

Conventions: images in [-1, 1]; the prior on w has unit weight (a proper Gaussian), so that
VI sees a proper posterior.  The negative log joint is

    sum (w - mu)^2 / (2 s^2) - kappa sum_{i,j} cos(w_i, w_j)
      + sum_obs (I - f(G(w)))^2 / (2 sigma_pixel^2) + ||phi(I) - phi(f(G(w)))||^2 / (2 sigma_percept^2),

which is half of Eq. 6.  Hence the paper's lambda = 1 / sigma^2 (Eq. 6).  The paper reports a
positive lambda_colin (0.03) that *penalises* misalignment; we read it as the weight of
sum_{i,j} (1 - cos), i.e. Eq. 6's -2 kappa sum cos with kappa = lambda_colin / 2 (up to a constant).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from brgm_pyro.functional import PIXEL_SCALE_255


@dataclass(frozen=True)
class BRGMConfig:
    """sigma_pixel / sigma_perceptual: noise std of the two likelihoods (None: term off);
    kappa: von Mises concentration of the colinearity prior (0: off);
    prior_std: "scalar" (the authors' single sigma) or "per-dimension";
    misfit_scale: tau of the generator's misfit x = G(w) + r, r ~ N(0, tau^2) per pixel, integrated
    out of the pixel likelihood (``models.misfit``; a number, "learn", or None: off, the paper's model);
    layer_correlation: rho in [0, 1), the correlation of the Gaussian prior between the layers of W+
    (``priors.LayerCorrelatedPrior``; 0: independent layers, the paper's Eq. 2)."""

    sigma_pixel: float | None = 0.1
    sigma_perceptual: float | None = None
    kappa: float = 0.0
    prior_std: Literal["scalar", "per-dimension"] = "scalar"
    misfit_scale: float | str | None = None
    layer_correlation: float = 0.0

    def __post_init__(self) -> None:
        tau = self.misfit_scale
        if tau is not None and tau != "learn" and not (isinstance(tau, (int, float)) and not isinstance(tau, bool)
                                                       and tau > 0 and math.isfinite(tau)):
            raise ValueError(f"misfit_scale must be a positive finite number, 'learn' or None, got {tau!r}")
        if tau is not None and self.sigma_pixel is None:
            raise ValueError("misfit_scale needs the pixel likelihood (sigma_pixel is None)")
        for name in ("sigma_pixel", "sigma_perceptual"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive finite number or None, got {value}")
        if not (self.kappa >= 0 and math.isfinite(self.kappa)):
            raise ValueError(f"kappa must be a non-negative finite number, got {self.kappa}")
        if self.prior_std not in ("scalar", "per-dimension"):
            raise ValueError(f"prior_std must be 'scalar' or 'per-dimension', got {self.prior_std!r}")
        rho = self.layer_correlation
        if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not 0.0 <= rho < 1.0:
            raise ValueError(f"layer_correlation must be a number in [0, 1), got {rho!r}")

    @classmethod
    def from_lambdas(
        cls, lambda_pixel: float | None, lambda_percept: float | None = None, lambda_colin: float = 0.0,
        prior_std: Literal["scalar", "per-dimension"] = "scalar",
    ) -> "BRGMConfig":
        """The paper's Eq. 6 weights (sums, L_w at unit weight): sigma = lambda^(-1/2), kappa = lambda_colin / 2."""
        def sigma(lam: float | None) -> float | None:
            if lam is None or lam == 0:
                return None
            if lam < 0:
                raise ValueError(f"lambda weights must be non-negative, got {lam}")
            return lam**-0.5

        return cls(sigma(lambda_pixel), sigma(lambda_percept), lambda_colin / 2, prior_std)

    @classmethod
    def from_released(
        cls,
        num_ws: int,
        w_dim: int,
        num_outputs: int,
        num_features: int | None = None,
        lambda_pixel: float = 0.001,
        lambda_percept: float = 1e7,
        lambda_w: float = 100.0,
        lambda_colin: float = 0.1,
    ) -> "BRGMConfig":
        """The authors' released PyTorch loss, rescaled so that the prior has unit weight.

        Released: lambda_pixel * mean((255/2)^2 (I - f)^2) + lambda_percept * mean((phi(I) - phi(f))^2)
        + lambda_w * mean(((w - mu) / s)^2) + lambda_colin * sum_{L^2 pairs} (1 - cos).
        Dividing by c = 2 lambda_w / (L D) turns the prior term into sum (w - mu)^2 / (2 s^2), so
        sigma_pixel^2 = lambda_w N / (L D lambda_pixel 127.5^2) with N = num_outputs (C'H'W', the
        mean includes masked-out zeros), sigma_percept^2 = lambda_w F / (L D lambda_percept), kappa =
        lambda_colin / c.  Use ``released_lambda_colin(task, factor)`` for the colinearity weight.
        """
        if min(num_ws, w_dim, num_outputs) < 1:
            raise ValueError("num_ws, w_dim and num_outputs must be positive")
        ld = num_ws * w_dim
        c = 2 * lambda_w / ld
        sigma_pixel = ((lambda_w * num_outputs / (ld * lambda_pixel * PIXEL_SCALE_255**2)) ** 0.5
                       if lambda_pixel > 0 else None)
        sigma_percept = None
        if num_features is not None and lambda_percept > 0:
            sigma_percept = (lambda_w * num_features / (ld * lambda_percept)) ** 0.5
        return cls(sigma_pixel, sigma_percept, lambda_colin / c, "scalar")

    def lambdas(self) -> dict[str, float | None]:
        """The paper's Eq. 6 weights of this config."""
        return {
            "lambda_pixel": None if self.sigma_pixel is None else self.sigma_pixel**-2,
            "lambda_percept": None if self.sigma_perceptual is None else self.sigma_perceptual**-2,
            "lambda_colin": 2 * self.kappa,
        }


def released_lambda_colin(task: str, factor: int | None = None) -> float:
    """The authors' colinearity weight: 0.1, or 1.0 for super-resolution by factors above 16."""
    return 1.0 if task == "super-resolution" and factor is not None and factor > 16 else 0.1


def weight_overrides(
    sigma_pixel: float | None = None, sigma_perceptual: float | None = None, kappa: float | None = None,
    lambda_pixel: float | None = None, lambda_percept: float | None = None, lambda_colin: float | None = None,
    layer_correlation: float | None = None,
) -> dict[str, float | None]:
    """The ``BRGMConfig`` fields that these weights set (None: not set), for ``dataclasses.replace``.

    Each weight may be given as a sigma / kappa or as the paper's Eq. 6 lambda, converted by
    ``BRGMConfig.from_lambdas`` (sigma = lambda^(-1/2), kappa = lambda_colin / 2); giving both
    forms of one weight is an error.  ``layer_correlation`` (the prior's, no lambda form) passes through.

    >>> weight_overrides(lambda_pixel=100.0, kappa=0.5)
    {'sigma_pixel': 0.1, 'kappa': 0.5}
    """
    converted = BRGMConfig.from_lambdas(lambda_pixel, lambda_percept, 0.0 if lambda_colin is None else lambda_colin)
    pairs = {"sigma_pixel": (sigma_pixel, "lambda_pixel", lambda_pixel),
             "sigma_perceptual": (sigma_perceptual, "lambda_percept", lambda_percept),
             "kappa": (kappa, "lambda_colin", lambda_colin)}
    out: dict[str, float | None] = {}
    for name, (direct, lambda_name, lam) in pairs.items():
        if direct is not None and lam is not None:
            raise ValueError(f"give either {name} or {lambda_name}, not both")
        if direct is not None:
            out[name] = direct
        elif lam is not None:
            out[name] = getattr(converted, name)
    if layer_correlation is not None:
        out["layer_correlation"] = layer_correlation
    return out
