"""Variational fits warm-started from an optimisation: the full-rank Gaussian guide started at the
Laplace approximation at the MAP, and any guide started around the MAP (the configurations of the
calibration study, ``brgm_pyro.study.methods``, are built from these)."""

from __future__ import annotations

from typing import Sequence

import torch

from brgm_pyro.models.brgm import BRGMModel

from .guides import image_seeds
from .laplace import LaplacePosterior, fit_laplace
from .map import map_estimate
from .vi import VIPosterior, fit_vi

MAP_STEPS = 500
VI_PARTICLES = 8


def map_then_laplace(model: BRGMModel, seed: int, map_steps: int = MAP_STEPS) -> LaplacePosterior:
    """MAP (Eq. 6, the authors' optimiser settings) and the Laplace approximation at its solution."""
    return fit_laplace(model, num_steps=map_steps, seed=seed)


def fullrank_from_laplace(model: BRGMModel, seed: int | Sequence[int], vi_steps: int = 200, lr: float = 0.002,
                          num_particles: int = VI_PARTICLES, map_steps: int = MAP_STEPS) -> VIPosterior:
    """The full-rank Gaussian guide started at the Laplace approximation at the MAP from w_avg
    (``fullrank_at``).  A batched model: one batched MAP, one Laplace approximation per image,
    one batched VI fit (``seed``: one, or one per image)."""
    seeds = image_seeds(model, seed)
    laplace = map_then_laplace(model, seeds[0], map_steps=map_steps)
    return fullrank_at(model, laplace, seeds, vi_steps=vi_steps, lr=lr, num_particles=num_particles)


def fullrank_at(model: BRGMModel, laplace: LaplacePosterior, seed: int | Sequence[int], vi_steps: int = 200,
                lr: float = 0.002, num_particles: int = VI_PARTICLES) -> VIPosterior:
    """The full-rank Gaussian guide (Eq. 7) started at ``laplace`` (in its whitened coordinates):
    ``vi_steps`` Adam steps, ``lr`` decayed 10x over the fit, ``num_particles`` per step; a
    batched model (``laplace.q`` an ``ImageStack``): one batched fit, each image seeded as if alone."""
    seeds = image_seeds(model, seed)
    trils = [q.distribution.scale_tril for q in laplace.q.images()]
    return fit_vi(model, guide="fullrank", init_loc=laplace.q.mean,
                  init_scale_tril=torch.stack(trils) if model.batched else trils[0],
                  num_steps=vi_steps, lr=lr, lr_decay=0.1 ** (1 / vi_steps), num_particles=num_particles,
                  seed=seeds if model.batched else seeds[0], progress=False)


def vi_from_map(model: BRGMModel, seed: int, guide: str, vi_steps: int, **options) -> VIPosterior:
    """``guide`` (a ``fit_vi`` guide name) started at the MAP (``MAP_STEPS`` steps) with scale 0.1 x the
    prior's: ``vi_steps`` Adam steps at lr 0.01 decayed 10x, ``VI_PARTICLES`` particles; ``options`` go
    to ``fit_vi`` (e.g. ``rank``, ``num_flows``)."""
    w_map = map_estimate(model, num_steps=MAP_STEPS, seed=seed, progress=False).latent
    return fit_vi(model, guide=guide, init_loc=w_map, init_scale=0.1 * model.prior.init_scale(), num_steps=vi_steps,
                  lr=0.01, lr_decay=0.1 ** (1 / vi_steps), num_particles=VI_PARTICLES, seed=seed, progress=False,
                  **options)
