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
from pyro import poutine

from brgm_pyro.models.brgm import BRGMModel

from .calibration import register_method
from .importance import differentiable_log_joint, trace_log_joint
from .guides import ImageStack, LatentDistribution, image_seeds
from .laplace import LaplacePosterior, laplace_approximation
from .posterior import single_image_model
from .vi import VIPosterior
from .vi_methods import fullrank_at


@dataclass
class MultistartResult:
    """The modes reached from each start (K, *site shape), their log joints (K,) float64, the
    starts, and ``best``: the index of the highest log joint; ``fit_multistart_laplace`` adds the
    mode it used (``chosen``) and, when it ranks by evidence, every mode's ``log_evidences``."""

    latents: torch.Tensor
    log_joints: torch.Tensor
    starts: torch.Tensor
    log_evidences: torch.Tensor | None = None  # set when the mode is chosen by its Laplace evidence
    chosen: int | None = None  # the mode the Laplace approximation was taken at

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
    if starts.ndim < 2 or starts.shape[1:] != model.prior.init_loc().shape:
        raise ValueError(f"starts must have shape (K, *{tuple(model.prior.init_loc().shape)}), "
                         f"got {tuple(starts.shape)}")
    final = _adam_ascent(lambda w: differentiable_log_joint(model, w, chunk_size), starts, num_steps, lr)
    with torch.no_grad():
        log_joints = differentiable_log_joint(model, final, chunk_size)
    return MultistartResult(final, log_joints, starts.detach())


def batched_multistart_map(model: BRGMModel, starts: torch.Tensor, num_steps: int = 500,
                           lr: float = 0.1) -> list[MultistartResult]:
    """``multistart_map`` for a batched model of B images: ``starts`` (K, B, *site shape), all
    K x B optimisations in one generator batch per step (the images' plate broadcasts over the
    starts); one ``MultistartResult`` per image, equal to ``multistart_map`` of that image alone."""
    if not model.batched:
        raise ValueError("batched_multistart_map needs a batched model (use multistart_map)")
    shape = (model.num_images, *model.prior.init_loc().shape)
    if starts.ndim < 3 or starts.shape[1:] != shape:
        raise ValueError(f"starts must have shape (K, *{shape}), got {tuple(starts.shape)}")
    final = _adam_ascent(lambda w: _plate_log_joint(model, w), starts, num_steps, lr)
    with torch.no_grad():
        log_joints = _plate_log_joint(model, final)  # (K, B)
    return [MultistartResult(final[:, b], log_joints[:, b], starts[:, b].detach())
            for b in range(model.num_images)]


def _adam_ascent(log_joint_fn, starts: torch.Tensor, num_steps: int, lr: float) -> torch.Tensor:
    """Adam on -sum(log_joint_fn(latents)) from ``starts``: every latent follows its own gradient."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    latents = starts.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([latents], lr=lr)
    for _ in range(num_steps):
        optimiser.zero_grad()
        loss = -log_joint_fn(latents).sum()
        loss.backward()
        optimiser.step()
    return latents.detach()


def _plate_log_joint(model: BRGMModel, latents: torch.Tensor) -> torch.Tensor:
    """log p(w, I) of a batched model at ``latents`` (K, B, *site shape): (K, B) float64."""
    value = latents.to(model.observation.device)
    trace = poutine.trace(poutine.condition(model.model, data={model.prior.site: value})).get_trace()
    return trace_log_joint(trace, latents.shape[:2])


MODE_SELECTIONS = ("log-joint", "evidence")


def laplace_log_evidence(log_joint: float, laplace: LatentDistribution) -> float:
    """The Laplace estimate of a mode's share of log p(I): log p(w*, I) + (d/2) log 2 pi +
    (1/2) log det Sigma, i.e. the log joint plus the Gaussian's entropy minus d/2.  Ranks modes by
    the posterior mass around them rather than by their height."""
    d = laplace.distribution
    dim = d.event_shape.numel()
    return float(log_joint) + float(d.entropy()) - 0.5 * dim


def fit_multistart_laplace(model: BRGMModel, num_starts: int = 8, num_steps: int = 500,
                           seed: int | Sequence[int] = 0, select: str = "log-joint",
                           ) -> tuple[LaplacePosterior, list[MultistartResult]]:
    """``multistart_map`` from ``prior_starts`` (``num_steps`` each, the authors' 500 by default)
    and the Laplace approximation at the chosen mode: ``select`` "log-joint" (the highest
    log p(w*, I)) or "evidence" (the highest ``laplace_log_evidence``: a Laplace approximation at
    every mode, the one with the most mass; recorded in ``MultistartResult.log_evidences``).
    A batched model: the same for each image on its own (``seed``: one for every image, or one
    per image), all images' starts optimised in one batch (``batched_multistart_map``), Laplace
    approximations stacked per image (an ``ImageStack``); one ``MultistartResult`` per image."""
    if select not in MODE_SELECTIONS:
        raise ValueError(f"select must be one of {MODE_SELECTIONS}, got {select!r}")
    seeds = image_seeds(model, seed)
    if not model.batched:
        singles = [model]
        modes = [multistart_map(model, prior_starts(model, num_starts, seeds[0]), num_steps=num_steps)]
    else:
        singles = [single_image_model(model, b) for b in range(model.num_images)]
        starts = torch.stack([prior_starts(single, num_starts, s) for single, s in zip(singles, seeds)], 1)
        modes = batched_multistart_map(model, starts, num_steps=num_steps)
    chosen = [_choose_mode(single, m, select) for single, m in zip(singles, modes)]
    q = chosen[0] if not model.batched else ImageStack(chosen)
    return LaplacePosterior(model, q), modes


def _choose_mode(model: BRGMModel, modes: MultistartResult, select: str) -> LatentDistribution:
    if select == "log-joint":
        modes.chosen = modes.best
        return laplace_approximation(model, modes.best_latent)
    approximations = [laplace_approximation(model, latent) for latent in modes.latents]
    modes.log_evidences = torch.tensor([laplace_log_evidence(lj, q) for lj, q in
                                        zip(modes.log_joints.tolist(), approximations)], dtype=torch.float64)
    modes.chosen = int(torch.argmax(modes.log_evidences))
    return approximations[modes.chosen]


def fit_multistart_fullrank(model: BRGMModel, num_starts: int = 8, num_steps: int = 500, vi_steps: int = 200,
                            lr: float = 0.002, num_particles: int = 8,
                            seed: int | Sequence[int] = 0, select: str = "log-joint") -> VIPosterior:
    """The recommended posterior: ``fit_multistart_laplace``, then the full-rank Gaussian guide
    (Eq. 7) fitted from that Laplace approximation (``vi_methods.fullrank_at``: ``vi_steps`` Adam
    steps, ``lr`` decayed 10x, ``num_particles`` per step; a batched model: one batched fit, each
    image seeded as if alone: equal to separate fits).  ``.diagnostics`` records every mode's
    log joint (and Laplace evidence with ``select="evidence"``) and which start was used (lists
    over the images for a batched model)."""
    seeds = image_seeds(model, seed)
    laplace, modes = fit_multistart_laplace(model, num_starts, num_steps, seeds, select=select)
    posterior = fullrank_at(model, laplace, seeds, vi_steps=vi_steps, lr=lr, num_particles=num_particles)
    per_image = [{"mode_log_joints": m.log_joints.tolist(), "best_start": m.chosen,
                  **({"mode_log_evidences": m.log_evidences.tolist()} if m.log_evidences is not None else {})}
                 for m in modes]
    posterior.diagnostics = ({key: [d[key] for d in per_image] for key in per_image[0]} if model.batched
                             else per_image[0])
    return posterior


@register_method("multistart-laplace")
def _multistart_laplace(model: BRGMModel, seed: int) -> LaplacePosterior:
    return fit_multistart_laplace(model, seed=seed)[0]


@register_method("multistart-fullrank")
def _multistart_fullrank(model: BRGMModel, seed: int) -> VIPosterior:
    return fit_multistart_fullrank(model, seed=seed)


@register_method("multistart-fullrank-evidence")
def _multistart_fullrank_evidence(model: BRGMModel, seed: int) -> VIPosterior:
    return fit_multistart_fullrank(model, seed=seed, select="evidence")
