"""Pixel intervals from posterior draws, and their widening by a factor about their midpoint, the
family that split conformal calibration on real images fits (issue 25; ``brgm_pyro.study.conformal``).

For draws x^(1..n) of an image (n, C, H, W) and a level a, the central interval of pixel k is
[l_k, u_k] = the sample quantiles (1 - a) / 2 and (1 + a) / 2 of the draws.  Widened by a factor f
about its midpoint c_k = (l_k + u_k) / 2 with half-width h_k = (u_k - l_k) / 2:

    I_k(f) = [c_k - f h_k,  c_k + f h_k]                       (f = 1: the draws' own interval)

The intervals are nested in f, so the fraction of pixels an image's intervals miss can only fall
as f grows: the monotone loss that conformal risk control needs, with no approximation.  Unlike
widening the latent posterior (``widening.widen``), which pushes draws off the generator's range
and stops raising coverage near s = 2 on real in-painting, the factor reaches any coverage.

The factor changes the *intervals* only: the draws and the posterior mean stay as they are.  Each
level has its own factor (real errors are heavier-tailed than the draws' spread, so one factor
cannot put a 50% and a 90% interval right at once).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from .widening import check_positive

__all__ = ["DEFAULT_FACTORS", "INTERVAL_DRAWS", "central_interval", "check_factor", "coverage_by_factor",
           "interval_coverage_by_factor", "posterior_intervals", "widen_interval"]

INTERVAL_DRAWS = 256
"""Draws behind the calibrated intervals (the number the real-image calibration measured with)."""

DEFAULT_FACTORS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(2, 121))
"""The factor grid the conformal fit chooses from: 0.1, 0.15, ..., 6.0 (fixed before any data)."""


def check_factor(factor: float) -> float:
    """``factor`` as a float, or a ``ValueError`` unless it is a finite number > 0."""
    return check_positive(factor, "interval factor")


def _check_level(level: float) -> float:
    level = float(level)
    if not 0 < level < 1:
        raise ValueError(f"the interval level must be in (0, 1), got {level}")
    return level


def central_interval(draws: torch.Tensor, level: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(lower, upper): the sample quantiles (1 - level) / 2 and (1 + level) / 2 of ``draws`` over
    their first axis (n draws, ...), float64."""
    level = _check_level(level)
    if draws.ndim < 1 or draws.shape[0] < 2:
        raise ValueError(f"need at least 2 draws along the first axis, got shape {tuple(draws.shape)}")
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64, device=draws.device)
    lower, upper = torch.quantile(draws.double(), q, dim=0)
    return lower, upper


def widen_interval(lower: torch.Tensor, upper: torch.Tensor, factor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """[c - f h, c + f h] with c the midpoint and h the half-width of [lower, upper] (module docstring)."""
    factor = check_factor(factor)
    if lower.shape != upper.shape:
        raise ValueError(f"lower and upper must have one shape, got {tuple(lower.shape)} and {tuple(upper.shape)}")
    if bool((upper < lower).any()):
        raise ValueError("upper must be >= lower everywhere")
    centre, half = (lower + upper) / 2, (upper - lower) / 2
    return centre - factor * half, centre + factor * half


def coverage_by_factor(draws: torch.Tensor, truth: torch.Tensor, level: float,
                       factors: Sequence[float] = DEFAULT_FACTORS) -> list[float]:
    """For each factor, the fraction of coordinates whose level-``level`` central interval of the
    draws (n, K), widened by the factor (``widen_interval``), holds the truth (K,)."""
    if draws.ndim != 2 or truth.shape != draws.shape[1:]:
        raise ValueError(f"draws must be (n, K) and truth (K,), got {tuple(draws.shape)} and {tuple(truth.shape)}")
    return interval_coverage_by_factor(*central_interval(draws, level), truth, factors)


def interval_coverage_by_factor(lower: torch.Tensor, upper: torch.Tensor, truth: torch.Tensor,
                                factors: Sequence[float] = DEFAULT_FACTORS) -> list[float]:
    """For each factor, the fraction of coordinates whose interval [lower, upper] (K,), widened by
    the factor (``widen_interval``), holds the truth (K,) (``coverage_by_factor`` on given intervals)."""
    if lower.shape != upper.shape or truth.shape != lower.shape:
        raise ValueError(f"lower, upper and truth must have one shape, got {tuple(lower.shape)}, "
                         f"{tuple(upper.shape)} and {tuple(truth.shape)}")
    f = torch.tensor([check_factor(x) for x in factors], dtype=torch.float64, device=lower.device)
    if f.numel() == 0:
        raise ValueError("need at least one factor")
    centre, half = (lower + upper) / 2, (upper - lower) / 2
    distance = (truth.double().to(lower.device) - centre).abs()
    inside = distance.unsqueeze(0) <= f.unsqueeze(1) * half.unsqueeze(0)  # (F, K)
    return inside.double().mean(dim=1).tolist()


def posterior_intervals(posterior, factors: Mapping[float, float], num_draws: int = INTERVAL_DRAWS,
                        seed: int | None = 0) -> dict[float, tuple[torch.Tensor, torch.Tensor]]:
    """{level: (lower, upper)} images (C, H, W), float64: the level's central interval of ``num_draws``
    image draws of a single-image ``posterior``, widened by its factor (``factors``: {level: factor},
    e.g. the conformal factors a generator's metadata records, ``interval_factors``)."""
    if not factors:
        raise ValueError("need at least one {level: factor}")
    checked = {_check_level(a): check_factor(f) for a, f in factors.items()}
    images = posterior.sample(num_draws, seed=seed).images
    if images.ndim != 4:
        raise ValueError(f"posterior_intervals needs a single-image posterior (draws (n, C, H, W)), got draws of "
                         f"shape {tuple(images.shape)}; use posterior.image(b)")
    return {a: widen_interval(*central_interval(images, a), f) for a, f in checked.items()}
