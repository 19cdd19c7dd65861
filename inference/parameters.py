"""Posteriors of the model's latent sites besides w (unknown noise levels and corruption
parameters): draws from any inference result, and their summaries (mean, std, central interval)."""

from __future__ import annotations

from typing import Any

import torch

from .posterior import InferenceResult


def parameter_draws(result: InferenceResult, num_draws: int = 1000, seed: int = 0) -> dict[str, torch.Tensor]:
    """Site -> draws (``result.parameter_draws``): MAP (1,) the point estimate; VI (num_draws,) from
    the guide; MCMC (chains, draws).  Empty when the model has no latent sites besides w."""
    draw = getattr(result, "parameter_draws", None)
    if draw is None:
        raise TypeError(f"{type(result).__name__} is not an inference result: it has no parameter_draws()")
    return draw(num_draws, seed)


def parameter_summary(result: InferenceResult, level: float = 0.9, num_draws: int = 1000,
                      seed: int = 0) -> dict[str, dict[str, Any]]:
    """Site -> {"mean", "std", "lower", "upper", "level"}: the posterior mean and the central
    ``level`` interval (None for a point estimate such as MAP, whose std is None too)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    point = result.posterior is None
    out: dict[str, dict[str, Any]] = {}
    for site, draws in parameter_draws(result, num_draws, seed).items():
        flat = draws.double().reshape(-1)
        if point:
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
