"""MAP from several starting points at once, and the calibrated posterior method built on it.

In-painting posteriors are multimodal: MAP started at w_avg (Eq. 6) often climbs to a mode far
from the truth, and a Gaussian around that mode cannot cover it.  ``multistart_map`` runs K MAP
optimisations together (one batched generator call per step), from w_avg and K - 1 draws of the
prior, and ranks the modes it reaches by the log joint log p(w*, I).  ``fit_multistart_fullrank``
takes the Laplace approximation at the best mode and fits the full-rank Gaussian guide from it
(as the "vi-fullrank" method does from the single w_avg start).
(Continuing MAP from a mode with a fresh Adam state is not neutral: Adam's first steps move every
coordinate by about ``lr`` and can leave the mode, so the modes are used as the batch leaves them.)

The K optimisations are independent: each latent's Adam update sees only its own gradient,
so the result equals K separate ``map_estimate`` runs from the same starts (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from brgm_pyro.models.brgm import BRGMModel

from .calibration import register_method
from .importance import differentiable_log_joint
from .guides import ImageStack, image_seeds
from .laplace import LaplacePosterior, laplace_approximation
from .posterior import single_image_model
from .vi import VIPosterior
from .vi_methods import fullrank_at


@dataclass
class MultistartResult:
    """The modes reached from each start (K, *site shape), their log joints (K,) float64, the
    starts, and ``best``: the index of the highest log joint."""

    latents: torch.Tensor
    log_joints: torch.Tensor
    starts: torch.Tensor

    @property
    def best(self) -> int:
        return int(torch.argmax(self.log_joints))

    @property
    def best_latent(self) -> torch.Tensor:
        return self.latents[self.best]


def prior_starts(model: BRGMModel, num_starts: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    """w_avg (the prior's mean, MAP's usual start) and ``num_starts - 1`` draws of the prior's
    per-element Gaussian (std multiplied by ``scale``): (num_starts, *site shape)."""
    if num_starts < 1:
        raise ValueError(f"num_starts must be >= 1, got {num_starts}")
    loc, std = model.prior.init_loc().detach(), model.prior.init_scale().detach()
    g = torch.Generator().manual_seed(seed)
    draws = [loc + scale * std * torch.randn(loc.shape, generator=g, dtype=loc.dtype).to(loc)
             for _ in range(num_starts - 1)]
    return torch.stack([loc, *draws])


def multistart_map(model: BRGMModel, starts: torch.Tensor, num_steps: int = 500, lr: float = 0.1,
                   chunk_size: int = 64) -> MultistartResult:
    """Maximise log p(w | I) from each of ``starts`` (K, *site shape) with Adam (``lr``, the
    authors' 0.1), all K in one batch; returns every mode with its log joint."""
    model.require_single("multistart_map")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if starts.ndim < 2 or starts.shape[1:] != model.prior.init_loc().shape:
        raise ValueError(f"starts must have shape (K, *{tuple(model.prior.init_loc().shape)}), "
                         f"got {tuple(starts.shape)}")
    latents = starts.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([latents], lr=lr)
    for _ in range(num_steps):
        optimiser.zero_grad()
        loss = -differentiable_log_joint(model, latents, chunk_size).sum()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        final = latents.detach()
        log_joints = differentiable_log_joint(model, final, chunk_size)
    return MultistartResult(final, log_joints, starts.detach())


def fit_multistart_laplace(model: BRGMModel, num_starts: int = 8, num_steps: int = 500,
                           seed: int | Sequence[int] = 0) -> tuple[LaplacePosterior, list[MultistartResult]]:
    """``multistart_map`` from ``prior_starts`` (``num_steps`` each, the authors' 500 by default)
    and the Laplace approximation at the mode with the highest log joint.  A batched model: the
    same for each image on its own (``seed``: one for every image, or one per image), Laplace
    approximations stacked per image (an ``ImageStack``); one ``MultistartResult`` per image."""
    seeds = image_seeds(model, seed)
    if not model.batched:
        modes = multistart_map(model, prior_starts(model, num_starts, seeds[0]), num_steps=num_steps)
        return LaplacePosterior(model, laplace_approximation(model, modes.best_latent)), [modes]
    per_image = [fit_multistart_laplace(single_image_model(model, b), num_starts, num_steps, seeds[b])
                 for b in range(model.num_images)]
    stack = ImageStack([laplace.q for laplace, _ in per_image])
    return LaplacePosterior(model, stack), [modes[0] for _, modes in per_image]


def fit_multistart_fullrank(model: BRGMModel, num_starts: int = 8, num_steps: int = 500, vi_steps: int = 200,
                            lr: float = 0.002, num_particles: int = 8,
                            seed: int | Sequence[int] = 0) -> VIPosterior:
    """The recommended posterior: ``fit_multistart_laplace``, then the full-rank Gaussian guide
    (Eq. 7) fitted from that Laplace approximation (``vi_methods.fullrank_at``: ``vi_steps`` Adam
    steps, ``lr`` decayed 10x, ``num_particles`` per step; a batched model: one batched fit, each
    image seeded as if alone: equal to separate fits).  ``.diagnostics`` records every mode's
    log joint and which start was used (lists over the images for a batched model)."""
    seeds = image_seeds(model, seed)
    laplace, modes = fit_multistart_laplace(model, num_starts, num_steps, seeds)
    posterior = fullrank_at(model, laplace, seeds, vi_steps=vi_steps, lr=lr, num_particles=num_particles)
    log_joints = [m.log_joints.tolist() for m in modes]
    best = [m.best for m in modes]
    posterior.diagnostics = ({"mode_log_joints": log_joints, "best_start": best} if model.batched
                             else {"mode_log_joints": log_joints[0], "best_start": best[0]})
    return posterior


@register_method("multistart-laplace")
def _multistart_laplace(model: BRGMModel, seed: int) -> LaplacePosterior:
    return fit_multistart_laplace(model, seed=seed)[0]


@register_method("multistart-fullrank")
def _multistart_fullrank(model: BRGMModel, seed: int) -> VIPosterior:
    return fit_multistart_fullrank(model, seed=seed)
