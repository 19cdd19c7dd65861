"""Problems simulated from the model itself, for simulation-based calibration (Talts et al., 2018):
w ~ p(w), x = G(w), y = f(x) + N(0, sigma^2) on the observed entries (Eqs. 2-4 with the pixel
likelihood only).  A correct posterior p(w | y) then covers the truth at the nominal rate on
average over problems.  Every problem's random numbers depend only on (seed, index)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from brgm_pyro.functional import image_shape
from brgm_pyro.inference.quantities import unknown_region
from brgm_pyro.models.brgm import BRGMModel, brgm_model, corrupt, generate
from brgm_pyro.models.config import BRGMConfig

__all__ = ["CalibrationProblem", "derive_seed", "problem_model", "simulate_problem", "simulate_problems"]


@dataclass
class CalibrationProblem:
    """One simulated problem: the true latent and image, the noisy observation, and its model.

    latent: the true value of the prior's sample site (e.g. (num_ws, w_dim)); image: x = G(w),
    (1, C, H, W); observation: y = f(x) + N(0, sigma^2) on the observed entries (f(x) elsewhere);
    model: the BRGM model the problem was drawn from; unknown: bool (C, H, W), the pixels of the
    unknown region (the hidden pixels for in-painting, every pixel otherwise).
    """

    index: int
    latent: torch.Tensor
    image: torch.Tensor
    observation: torch.Tensor
    model: BRGMModel
    unknown: torch.Tensor


def derive_seed(*parts: int) -> int:
    """An independent 31-bit seed for each tuple of integers (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


SIMULATION_SIGMA_PIXEL = 0.1
"""The pixel noise of the simulated calibration problems (and of `brgm calibrate` unless --sigma-pixel)."""


def problem_model(generator, corruption, *, sigma_pixel: float = SIMULATION_SIGMA_PIXEL,
                  prior_std: str = "per-dimension", kappa: float = 0.0, num_stats_samples: int = 10_000) -> BRGMModel:
    """The model problems are drawn from: ``BRGMConfig(sigma_pixel, None, kappa, prior_std)``
    (Gaussian prior on W+, pixel likelihood only), with a zero placeholder observation."""
    config = BRGMConfig(sigma_pixel, None, kappa, prior_std)
    shape = image_shape(generator)
    placeholder = torch.zeros(corruption.output_shape(shape))
    return brgm_model(generator, corruption, placeholder, config=config, num_stats_samples=num_stats_samples)


@torch.no_grad()
def simulate_problem(model: BRGMModel, index: int, seed: int = 0) -> CalibrationProblem:
    """Problem ``index`` of the stream ``seed``: w ~ the model's prior, x = G(w), y = f(x) + noise.

    Its random numbers depend only on (seed, index), so problem 7 is the same whether 10 or
    100 problems are drawn (a benchmark can run each problem in its own process).
    """
    if model.colinearity is not None:
        raise NotImplementedError(
            "simulate_problem draws w from the Gaussian prior directly; with the colinearity factor "
            "(kappa > 0) the prior is not a standard distribution and needs MCMC to sample: use kappa=0")
    sigma = model.require_gaussian_pixel_noise("simulate_problem")
    g = torch.Generator().manual_seed(derive_seed(seed, index))
    prior = model.prior
    loc, scale = model.require_gaussian_prior("simulate_problem")
    shape = torch.broadcast_shapes(loc.shape, scale.shape)
    eps = torch.randn(shape, generator=g, dtype=torch.float64).to(loc)
    latent = loc + scale * eps
    device = model.observation.device
    image = generate(model.generator, prior.ws_from_latent(latent).unsqueeze(0).to(device))
    clean = corrupt(model.corruption, image)[0]
    noise = torch.randn(clean.shape, generator=g, dtype=torch.float64).to(clean) * sigma
    if model.mask is not None:
        noise = noise * model.mask.to(clean)
    observation = clean + noise
    return CalibrationProblem(index, latent.detach(), image.detach(), observation.detach(),
                              replace(model, observation=observation),
                              unknown_region(model.corruption, model.image_shape))


def simulate_problems(generator, corruption, num_problems: int, *, sigma_pixel: float = SIMULATION_SIGMA_PIXEL,
                      prior_std: str = "per-dimension", kappa: float = 0.0, seed: int = 0,
                      start: int = 0) -> list[CalibrationProblem]:
    """``num_problems`` problems (indices ``start`` ...) drawn from the model with a Gaussian prior
    on W+ (``prior_std`` "per-dimension" or "scalar"), no colinearity factor and the pixel
    likelihood with ``sigma_pixel``: w ~ p(w), x = G(w), y = f(x) + N(0, sigma_pixel^2).

    ``kappa > 0`` raises ``NotImplementedError``: the prior with the colinearity factor cannot be
    sampled directly.
    """
    if num_problems < 1:
        raise ValueError(f"num_problems must be >= 1, got {num_problems}")
    if kappa != 0:
        raise NotImplementedError(
            f"kappa={kappa}: the prior with the colinearity factor cannot be sampled directly, so problems "
            "cannot be drawn from it exactly; calibrate with kappa=0")
    model = problem_model(generator, corruption, sigma_pixel=sigma_pixel, prior_std=prior_std, kappa=kappa)
    return [simulate_problem(model, i, seed) for i in range(start, start + num_problems)]
