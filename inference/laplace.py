"""The linearised (Gauss-Newton) Laplace approximation at a MAP solution.

With a Gaussian prior N(mu, diag(s^2)) and the pixel likelihood I ~ N(f(G(w)), sigma^2) on the
observed entries, linearising r(w) = f(G(w)) around w* gives the Gaussian

    q(w) = N(w*, H^-1),   H = J^T M J / sigma^2 + diag(1 / s^2),   J = d f(G(w)) / dw at w*,

(M: the observation mask), the exact posterior of the linearised model.  It costs one batched
Jacobian (one backward pass per observed output) after MAP, and is a good starting point for
the full-rank variational guide (``fit_vi(guide="fullrank", init_loc=..., init_scale_tril=...)``).
"""

from __future__ import annotations

import torch

from brgm_pyro.models.brgm import BRGMModel, corrupt, generate
from brgm_pyro.models.likelihoods import PixelLikelihood
from brgm_pyro.models.misfit import MisfitPixelLikelihood
from brgm_pyro.models.priors import GaussianLatentPrior, SharedLatentPrior

from .guides import ImageStack, LatentDistribution
from .map import MAPResult, map_estimate
from .posterior import Posterior, single_image_model


def output_jacobian(model: BRGMModel, latent: torch.Tensor, chunk_size: int = 256) -> torch.Tensor:
    """J = d vec(f(G(w))) / d vec(w) at ``latent`` (the prior site's value): (outputs, latent numel),
    rows of the observed outputs only (all outputs without a mask)."""
    prior = model.prior
    out_shape = model.observation.shape
    mask = model.mask
    rows = torch.arange(out_shape.numel(), device=latent.device)
    if mask is not None:
        rows = rows[mask.expand(out_shape).reshape(-1).bool().to(rows.device)]
    jac = []
    for start in range(0, rows.numel(), chunk_size):
        idx = rows[start:start + chunk_size]
        value = latent.detach().unsqueeze(0).repeat(idx.numel(), *[1] * latent.ndim).requires_grad_(True)
        out = corrupt(model.corruption, generate(model.generator, prior.ws_from_latent(value)))
        picked = out.reshape(idx.numel(), -1).gather(1, idx.unsqueeze(1)).sum()
        grad, = torch.autograd.grad(picked, value)
        jac.append(grad.reshape(idx.numel(), -1))
    return torch.cat(jac)


def laplace_approximation(model: BRGMModel, latent: torch.Tensor, chunk_size: int = 256) -> LatentDistribution:
    """N(w*, H^-1) with the Gauss-Newton precision H at ``latent`` = w* (e.g. ``map_estimate(model).latent``).

    Needs the Gaussian prior (per-element mean and std, W+ or shared W) without the colinearity
    factor and the pixel likelihood as the only likelihood.
    """
    if type(model.prior) not in (GaussianLatentPrior, SharedLatentPrior):
        raise ValueError(f"the Laplace approximation needs a Gaussian prior, not {type(model.prior).__name__}")
    if model.colinearity is not None:
        raise ValueError("the Laplace approximation does not include the colinearity factor: use kappa=0")
    if len(model.likelihoods) != 1 or not isinstance(model.likelihoods[0], (PixelLikelihood, MisfitPixelLikelihood)):
        raise ValueError("the Laplace approximation needs the pixel likelihood as the only likelihood")
    model.require_single("laplace_approximation")
    likelihood = model.likelihoods[0]
    with torch.enable_grad():
        jac = output_jacobian(model, latent, chunk_size).double()
    prior_std = model.prior.init_scale().reshape(-1).double().to(jac.device)
    if isinstance(likelihood, MisfitPixelLikelihood):  # S = sigma^2 I + tau^2 A A^T (models.misfit)
        precision = likelihood.gauss_newton(jac) + torch.diag(prior_std.pow(-2))
    else:
        precision = jac.T @ jac / likelihood.sigma**2 + torch.diag(prior_std.pow(-2))
    cov = torch.cholesky_inverse(torch.linalg.cholesky(precision))
    cov = 0.5 * (cov + cov.T)
    loc = latent.detach().reshape(-1)
    d = torch.distributions.MultivariateNormal(loc, scale_tril=torch.linalg.cholesky(cov).to(loc))
    return LatentDistribution(d, latent.shape, latent.detach().clone())


class LaplacePosterior(Posterior):
    """Draws from the Laplace approximation ``q`` (a ``LatentDistribution`` with ``log_prob``, or
    an ``ImageStack`` of them for a batched model); ``map_result`` is the MAP fit it is centred on."""

    def __init__(self, model: BRGMModel, q: LatentDistribution | ImageStack,
                 map_result: MAPResult | None = None) -> None:
        super().__init__(model, q.sample, q.mean, self._image if model.batched else None)
        self.q, self.map_result = q, map_result

    def _image(self, b: int) -> "LaplacePosterior":
        return LaplacePosterior(single_image_model(self.model, b), self.q.images()[b])


def fit_laplace(model: BRGMModel, num_steps: int = 500, lr: float = 0.1, init: torch.Tensor | None = None,
                seed: int = 0, progress: bool = False, chunk_size: int = 256) -> LaplacePosterior:
    """MAP (``map_estimate`` with these settings; the defaults are the authors') and the linearised
    Laplace approximation at its solution: a Gaussian posterior for about the cost of MAP plus
    one backward pass per observed output.  A batched model gets one batched MAP and one
    Laplace approximation per image (an ``ImageStack``)."""
    result = map_estimate(model, num_steps=num_steps, lr=lr, init=init, seed=seed, progress=progress)
    if not model.batched:
        return LaplacePosterior(model, laplace_approximation(model, result.latent, chunk_size), result)
    qs = [laplace_approximation(single_image_model(model, b), result.latent[b], chunk_size)
          for b in range(model.num_images)]
    return LaplacePosterior(model, ImageStack(qs), result)
