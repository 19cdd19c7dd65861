"""The variational posterior methods of the calibration benchmark, registered in
``brgm_pyro.inference.calibration.METHODS`` by name (imported with ``brgm_pyro.inference``).

Every method is ``method(model, seed) -> Posterior`` with its settings fixed here (what the
benchmark measured), so that a name means one configuration:

- "laplace": MAP (500 steps), then the linearised Laplace approximation N(w*, H^-1) at w*.
- "vi-fullrank": MAP, Laplace, then the full-rank Gaussian guide fitted from the Laplace
  approximation, in its whitened coordinates (200 steps, 8 particles, lr 0.002 decayed 10x).
- "vi-fullrank-psis": "vi-fullrank" resampled with PSIS importance weights (1000 proposals).
- "laplace-psis": "laplace" resampled with PSIS importance weights (1000 proposals).
- "vi-lowrank": MAP, then a rank-32 low-rank + diagonal Gaussian (400 steps, 8 particles).
- "vi-flow": MAP, then two IAF layers on a diagonal Gaussian (400 steps, 8 particles).
- "laplace-ensemble": 4 Laplace approximations at the modes reached by MAP (300 steps each)
  from 4 prior draws, weighted by their ELBO.
- "vi-meanfield-eq8": ``fit_vi``'s mean-field Gaussian with the sigma_v penalty weighted as
  Eq. 8 is written (``weighting="eq8"``), for comparison with the default ("released",
  the registered "vi-meanfield").
"""

from __future__ import annotations

from typing import Sequence

import torch

from brgm_pyro.models.brgm import BRGMModel

from .calibration import register_method
from .ensemble import MixturePosterior, fit_ensemble
from .guides import image_seeds
from .importance import ImportancePosterior, importance_resample
from .laplace import LaplacePosterior, fit_laplace
from .map import map_estimate
from .vi import InverseGammaPenalty, VIPosterior, fit_vi

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
                lr: float = 0.002, num_particles: int = VI_PARTICLES, progress: bool = False) -> VIPosterior:
    """The full-rank Gaussian guide (Eq. 7) started at ``laplace`` (in its whitened coordinates):
    ``vi_steps`` Adam steps, ``lr`` decayed 10x over the fit, ``num_particles`` per step; a
    batched model (``laplace.q`` an ``ImageStack``): one batched fit, each image seeded as if alone.
    ``progress``: a bar over the VI steps."""
    seeds = image_seeds(model, seed)
    trils = [q.distribution.scale_tril for q in laplace.q.images()]
    return fit_vi(model, guide="fullrank", init_loc=laplace.q.mean,
                  init_scale_tril=torch.stack(trils) if model.batched else trils[0],
                  num_steps=vi_steps, lr=lr, lr_decay=0.1 ** (1 / vi_steps), num_particles=num_particles,
                  seed=seeds if model.batched else seeds[0], progress=progress)


@register_method("laplace")
def _laplace(model: BRGMModel, seed: int) -> LaplacePosterior:
    return map_then_laplace(model, seed)


@register_method("laplace-psis")
def _laplace_psis(model: BRGMModel, seed: int, num_proposals: int = 1000) -> ImportancePosterior:
    return importance_resample(map_then_laplace(model, seed), num_proposals=num_proposals, seed=seed)


@register_method("vi-fullrank")
def _vi_fullrank(model: BRGMModel, seed: int) -> VIPosterior:
    return fullrank_from_laplace(model, seed)


@register_method("vi-fullrank-psis")
def _vi_fullrank_psis(model: BRGMModel, seed: int, num_proposals: int = 1000) -> ImportancePosterior:
    return importance_resample(fullrank_from_laplace(model, seed), num_proposals=num_proposals, seed=seed)


def _from_map(model: BRGMModel, seed: int, guide: str, vi_steps: int, **options) -> VIPosterior:
    w_map = map_estimate(model, num_steps=MAP_STEPS, seed=seed, progress=False).latent
    return fit_vi(model, guide=guide, init_loc=w_map, init_scale=0.1 * model.prior.init_scale(), num_steps=vi_steps,
                  lr=0.01, lr_decay=0.1 ** (1 / vi_steps), num_particles=VI_PARTICLES, seed=seed, progress=False,
                  **options)


@register_method("vi-lowrank")
def _vi_lowrank(model: BRGMModel, seed: int) -> VIPosterior:
    return _from_map(model, seed, "lowrank", 400, rank=32)


@register_method("vi-flow")
def _vi_flow(model: BRGMModel, seed: int) -> VIPosterior:
    return _from_map(model, seed, "flow", 400, num_flows=2)


@register_method("laplace-ensemble")
def _laplace_ensemble(model: BRGMModel, seed: int) -> MixturePosterior:
    return fit_ensemble(model, num_components=4, guide="laplace", map_steps=300, seed=seed)


@register_method("vi-meanfield-eq8")
def _vi_meanfield_eq8(model: BRGMModel, seed: int, num_steps: int = 500) -> VIPosterior:
    return fit_vi(model, num_steps=num_steps, seed=seed, progress=False,
                  sigma_prior=InverseGammaPenalty(weighting="eq8"))
