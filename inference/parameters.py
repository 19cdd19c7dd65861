"""Posteriors of the model's latent sites besides w (unknown noise levels and corruption
parameters): draws from a MAP, VI or MCMC result, and their summaries (mean, std, central interval)."""

from __future__ import annotations

from typing import Any

import pyro
import torch
from pyro.infer import Predictive

from brgm_pyro.models.brgm import BRGMModel

from .map import MAPResult
from .mcmc import MCMCResult
from .vi import VIPosterior


def parameter_draws(result: MAPResult | VIPosterior | MCMCResult, num_draws: int = 1000,
                    seed: int = 0) -> dict[str, torch.Tensor]:
    """Site -> draws: MAP (1,) the point estimate; VI (num_draws,) from the guide; MCMC
    (chains, draws).  Empty when the model has no latent sites besides w."""
    if isinstance(result, MAPResult):
        return {k: v.detach().cpu().reshape(1, *v.shape) for k, v in result.parameters.items()}
    if isinstance(result, MCMCResult):
        return {k: v.detach().cpu() for k, v in result.parameters.items()}
    if isinstance(result, VIPosterior):
        sites = list(result.model.latent_parameters())
        if not sites:
            return {}
        if num_draws < 1:
            raise ValueError(f"num_draws must be >= 1, got {num_draws}")
        with pyro.get_param_store().scope(result.state), torch.no_grad(), torch.random.fork_rng(devices=[]):
            pyro.set_rng_seed(seed)
            samples = Predictive(result.guide, num_samples=num_draws, return_sites=sites)()
        return {k: samples[k].detach().cpu().reshape(num_draws) for k in sites}
    raise ValueError(f"unsupported result type {type(result).__name__}")


def parameter_summary(result: MAPResult | VIPosterior | MCMCResult, level: float = 0.9, num_draws: int = 1000,
                      seed: int = 0) -> dict[str, dict[str, Any]]:
    """Site -> {"mean", "std", "lower", "upper", "level"}: the posterior mean and the central
    ``level`` interval (None for a MAP point estimate, whose std is None too)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    out: dict[str, dict[str, Any]] = {}
    for site, draws in parameter_draws(result, num_draws, seed).items():
        flat = draws.double().reshape(-1)
        if isinstance(result, MAPResult):
            if draws[0].numel() != 1:  # a batched MAP: one value per image
                out[site] = {"value": draws[0].tolist(), "level": None}
                continue
            out[site] = {"mean": float(flat[0]), "std": None, "lower": None, "upper": None, "level": None}
            continue
        q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
        lo, hi = torch.quantile(flat, q).tolist()
        out[site] = {"mean": float(flat.mean()), "std": float(flat.std()) if flat.numel() > 1 else 0.0,
                     "lower": lo, "upper": hi, "level": level}
    return out


def latent_parameter_names(model: BRGMModel) -> list[str]:
    """The model's latent sites besides w, in sampling order."""
    return list(model.latent_parameters())
