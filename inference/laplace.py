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

from .guides import ImageStack, LatentDistribution
from .map import MAPResult, map_estimate
from .posterior import Posterior, single_image_model


def output_jacobian(model: BRGMModel, latent: torch.Tensor, chunk_size: int = 256) -> torch.Tensor:
    """J = d vec(f(G(w))) / d vec(w) at ``latent`` (the prior site's value): (outputs, latent numel),
    rows of the observed outputs only (all outputs without a mask).

    One forward pass and ``chunk_size`` vector-Jacobian products at a time (``torch.func.vmap`` of
    ``vjp``: 0.6x the CPU time of repeating the forward per chunk on the bundled in-painting model,
    ``docs/speed.md``); a generator whose operations ``vmap`` cannot batch falls back to a batched
    forward + backward per chunk, which gives the same matrix."""
    rows = torch.arange(model.observation.numel(), device=latent.device)
    if model.mask is not None:
        rows = rows[model.mask.expand(model.observation.shape).reshape(-1).bool().to(rows.device)]
    try:
        return _vmapped_jacobian(model, latent, rows, chunk_size)
    except (RuntimeError, NotImplementedError):  # an operation without a batching rule
        return _batched_jacobian(model, latent, rows, chunk_size)


def _outputs(model: BRGMModel, value: torch.Tensor) -> torch.Tensor:
    """f(G(w)) for latents ``value`` (n, *site shape): (n, C', H', W')."""
    return corrupt(model.corruption, generate(model.generator, model.prior.ws_from_latent(value)))


def _vmapped_jacobian(model: BRGMModel, latent: torch.Tensor, rows: torch.Tensor, chunk_size: int) -> torch.Tensor:
    from torch.func import vjp, vmap

    out, pull = vjp(lambda w: _outputs(model, w.unsqueeze(0)).reshape(-1), latent.detach())
    jac = []
    for start in range(0, rows.numel(), chunk_size):
        idx = rows[start:start + chunk_size]
        cotangents = torch.zeros(idx.numel(), out.numel(), dtype=out.dtype, device=out.device)
        cotangents[torch.arange(idx.numel(), device=out.device), idx] = 1
        grad, = vmap(pull)(cotangents)
        jac.append(grad.reshape(idx.numel(), -1))
    return torch.cat(jac)


def _batched_jacobian(model: BRGMModel, latent: torch.Tensor, rows: torch.Tensor, chunk_size: int) -> torch.Tensor:
    jac = []
    for start in range(0, rows.numel(), chunk_size):
        idx = rows[start:start + chunk_size]
        value = latent.detach().unsqueeze(0).repeat(idx.numel(), *[1] * latent.ndim).requires_grad_(True)
        picked = _outputs(model, value).reshape(idx.numel(), -1).gather(1, idx.unsqueeze(1)).sum()
        grad, = torch.autograd.grad(picked, value)
        jac.append(grad.reshape(idx.numel(), -1))
    return torch.cat(jac)


def laplace_approximation(model: BRGMModel, latent: torch.Tensor, chunk_size: int = 256) -> LatentDistribution:
    """N(w*, H^-1) with the Gauss-Newton precision H at ``latent`` = w* (e.g. ``map_estimate(model).latent``).

    Needs a Gaussian prior (``prior.gaussian_loc_scale()``) without the colinearity factor and one
    likelihood with Gaussian pixel noise (``likelihood.gaussian_pixel_noise()``) or with a Gauss-Newton
    precision of its own (``likelihood.gauss_newton(J)``: the misfit term of ``models.misfit``).
    """
    _, prior_scale = model.require_gaussian_prior("the Laplace approximation")
    model.require_single("laplace_approximation")
    likelihood = model.likelihoods[0] if len(model.likelihoods) == 1 else None
    gauss_newton = getattr(likelihood, "gauss_newton", None)  # J^T S^-1 J of a correlated Gaussian (models.misfit)
    sigma = None if gauss_newton is not None else model.require_gaussian_pixel_noise("the Laplace approximation")
    with torch.enable_grad():
        jac = output_jacobian(model, latent, chunk_size).double()
    prior_std = prior_scale.reshape(-1).double().to(jac.device)
    if gauss_newton is not None:
        precision = gauss_newton(jac) + torch.diag(prior_std.pow(-2))
    else:
        precision = jac.T @ jac / sigma**2 + torch.diag(prior_std.pow(-2))
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
