"""Fitting the interval scale: widen a posterior about its centre by a factor s fitted on
problems simulated from the model, so that its central intervals hold the truth at the nominal rate.

Why: on in-painting the recommended Gaussian posterior (``fit_fullrank``) is narrower than the
exact one (the posterior's log density falls more slowly away from the mode than its curvature
says; ``benchmarks/posterior_geometry.py``), and no approximation within 10x MAP's cost that was
tried fixes that (README, "Calibration").  Simulation-based calibration measures the shortfall
on problems drawn from the model itself (``brgm_pyro.study``); this module turns that measurement
into a correction (``brgm_pyro.inference.widening``):

    q_s(w) = N(mu, s^2 Sigma)        for a Gaussian q = N(mu, Sigma)  (exact)
    w_s    = c + s (w - c)           for any other posterior's draws w, about its centre c

with s chosen so that, pooled over the calibration problems, central intervals hold the true
unknown-region pixels (or latents) at their nominal rates: the s whose calibration curve
(coverage against level, 0.1 ... 0.9) is closest to the diagonal.

What it guarantees, and what not: the coverage is then nominal *on average over problems drawn
from the prior* (the frequentist guarantee that SBC checks), for the generator, corruption and
noise level it was fitted on; it is not a per-image guarantee, and it widens every direction of
W+ alike.  Fit s on one set of simulated problems and check it on another
(``benchmarks/interval_scale.py`` does both).
"""

from __future__ import annotations

import copy
import inspect
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from brgm_pyro.inference.posterior import Posterior
from brgm_pyro.inference.widening import check_interval_scale, widen
from brgm_pyro.models.brgm import generate

from .measures import DEFAULT_LEVELS, interval_coverage
from .methods import accepted_options
from .problems import derive_seed

__all__ = ["BUNDLED_INTERVAL_SCALES", "DEFAULT_SCALES", "ScaleFit", "ScaleProblem", "choose_scale", "coverage_by_scale",
           "fit_interval_scale", "fit_method_interval_scale", "widened"]


BUNDLED_INTERVAL_SCALES: dict[str, float] = {"inpainting": 1.35, "super-resolution": 0.95}
"""Interval scales of the recommended posterior (``fit_multistart_fullrank``) for the bundled
generator, the calibration problems' model (w ~ per-dimension Gaussian prior, sigma_pixel 0.1) and
the tasks of the calibration benchmark (in-painting with standard mask 0, x4 bicubic-antialias
super-resolution), fitted on problem seed 2 (24 problems each) by ``benchmarks/interval_scale.py``
(``benchmarks/results/interval_scale/interval_scale.json``) and checked on 49-50 held-out problems
of seeds 0, 1, 3, 4 (README, "Calibration").  For SR the fitted 0.95 is within noise of 1.
They hold for that setting only; fit your own with ``brgm calibrate --fit-interval-scale``."""


# --------------------------------------------------------------------------- fitting the scale


@dataclass
class ScaleProblem:
    """One simulated problem's posterior, reduced to what the scale fit needs: ``draws`` (n,
    *site shape) of the unwidened posterior, their ``centre`` (*site shape), the true ``latent``
    and ``image`` ((1, C, H, W) or (C, H, W)), ``unknown`` (bool (C, H, W)), and the ``model``
    (for its generator and prior)."""

    draws: torch.Tensor
    centre: torch.Tensor
    latent: torch.Tensor
    image: torch.Tensor
    unknown: torch.Tensor
    model: object

    @classmethod
    def from_posterior(cls, problem, posterior: Posterior, num_draws: int = 256, seed: int = 0) -> "ScaleProblem":
        """From a ``calibration.CalibrationProblem`` and the posterior fitted to it."""
        if posterior.mean_latent is None:
            raise ValueError("the posterior has no mean_latent (centre) to widen about")
        draws = posterior.sample(num_draws, images=False, seed=seed).latents
        return cls(draws, posterior.mean_latent.detach().cpu(), problem.latent.cpu(), problem.image.cpu(),
                   problem.unknown.cpu(), problem.model)


@torch.no_grad()
def coverage_by_scale(problem: ScaleProblem, scales: Sequence[float], levels: Sequence[float],
                      chunk_size: int = 64) -> dict[str, list[list[float]]]:
    """Coverage of the widened posterior at each scale (rows) and level (columns), for the
    unknown-region pixels ("pixels") and the latents ("latents"), plus the posterior-mean RMSE of
    the unknown region on the 0-255 scale ("rmse_unknown", one per scale).  The same draws are
    used at every scale (common random numbers)."""
    model = problem.model
    device = model.observation.device
    unknown = problem.unknown.cpu()
    truth_img = problem.image.reshape(unknown.shape).cpu()
    truth_pix = truth_img[unknown]
    centre = problem.centre.cpu()
    flat_truth = problem.latent.reshape(-1).cpu()
    out: dict[str, list] = {"pixels": [], "latents": [], "rmse_unknown": []}
    for s in scales:
        latents = centre + check_interval_scale(s) * (problem.draws.cpu() - centre)
        images = []
        for start in range(0, latents.shape[0], chunk_size):
            ws = model.prior.ws_from_latent(latents[start:start + chunk_size].to(device))
            images.append(generate(model.generator, ws).cpu())
        pix = torch.cat(images)[:, unknown]
        out["pixels"].append(interval_coverage(pix, truth_pix, levels))
        out["latents"].append(interval_coverage(latents.reshape(latents.shape[0], -1), flat_truth, levels))
        out["rmse_unknown"].append(float((pix.double().mean(0) - truth_pix.double()).mul(127.5).square().mean().sqrt()))
    return out


@dataclass
class ScaleFit:
    """The fitted interval scale and the evidence for it.  ``coverage``: pooled coverage (mean over
    problems) for each scale of ``scales`` (rows) and level of ``levels`` (columns), ``coverage_se``
    its standard error across problems; ``calibration_error``: per scale, the mean over the levels
    of |coverage - level| (what the fit minimises)."""

    scale: float
    target: str
    levels: list[float]
    scales: list[float]
    coverage: list[list[float]]
    coverage_se: list[list[float]]
    calibration_error: list[float]
    num_problems: int

    def at(self, scale: float) -> list[float]:
        """Pooled coverage at each level for a scale of the grid."""
        return self.coverage[self.scales.index(scale)]


DEFAULT_SCALES: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(51))  # 0.5 ... 3.0


def choose_scale(scales: Sequence[float], coverage: np.ndarray, levels: Sequence[float]) -> tuple[float, np.ndarray]:
    """The grid scale whose pooled calibration curve is closest to the diagonal.

    ``coverage`` (problems, scales, levels): each problem's coverage.  Returns the scale that
    minimises the mean over ``levels`` of |pooled coverage - level| (ties: the smaller scale), and
    that error for every scale.  A criterion over all levels rather than one: widening the
    latents does not widen the pixel intervals without limit (images leave the generator's range
    and the draws' mean drifts), so a single high level may never be reached."""
    coverage = np.asarray(coverage, dtype=float)
    if coverage.ndim != 3 or coverage.shape[1:] != (len(scales), len(levels)):
        raise ValueError(f"coverage must be (problems, {len(scales)} scales, {len(levels)} levels), "
                         f"got {coverage.shape}")
    if len(scales) > 1 and np.any(np.diff(np.asarray(scales, dtype=float)) <= 0):
        raise ValueError("scales must be increasing")
    error = np.abs(coverage.mean(0) - np.asarray(levels, dtype=float)).mean(1)
    return float(scales[int(np.argmin(error))]), error


def fit_interval_scale(problems: Sequence[ScaleProblem], levels: Sequence[float] = DEFAULT_LEVELS,
                       target: str = "pixels", scales: Sequence[float] = DEFAULT_SCALES) -> ScaleFit:
    """The interval scale s whose widened posteriors are best calibrated over ``problems``: on the
    grid ``scales``, the s minimising the mean over ``levels`` of |pooled coverage - level|
    (``choose_scale``), pooled coverage being the mean of per-problem coverages (each problem
    weighted alike).  ``target``: "pixels" (the unknown region's pixels) or "latents"."""
    if target not in ("pixels", "latents"):
        raise ValueError(f"target must be 'pixels' or 'latents', got {target!r}")
    if not levels or any(not 0 < a < 1 for a in levels):
        raise ValueError(f"levels must be in (0, 1), got {list(levels)}")
    if not problems:
        raise ValueError("fit_interval_scale needs at least one problem")
    grid = [float(s) for s in scales]
    per_problem = np.array([coverage_by_scale(p, grid, levels)[target] for p in problems])  # (P, S, L)
    scale, error = choose_scale(grid, per_problem, levels)
    n = len(problems)
    se = per_problem.std(0, ddof=1) / math.sqrt(n) if n > 1 else np.full(per_problem.shape[1:], np.nan)
    return ScaleFit(scale, target, [float(a) for a in levels], grid, per_problem.mean(0).tolist(), se.tolist(),
                    error.tolist(), n)


# --------------------------------------------------------------------------- methods


def widened(method, scale: float):
    """A calibration method (``model, seed -> result``) whose posterior is ``widen``-ed by
    ``scale``: a returned ``Posterior`` is widened, a result with a ``.posterior`` (MCMC) gets a
    copy with the widened posterior, a point estimate is returned as it is."""
    scale = check_interval_scale(scale)

    def method_widened(model, seed: int, **options):
        result = method(model, seed, **options)
        if isinstance(result, Posterior):
            return widen(result, scale)
        if isinstance(getattr(result, "posterior", None), Posterior):
            result = copy.copy(result)
            result.posterior = widen(result.posterior, scale)
        return result

    method_widened.__name__ = f"{getattr(method, '__name__', 'method')}_widened"
    method_widened.__signature__ = inspect.signature(method)  # calibrate passes the options the method accepts
    return method_widened


def fit_method_interval_scale(problems: Sequence, method, seed: int = 0, num_draws: int = 256,
                              levels: Sequence[float] = DEFAULT_LEVELS,
                              target: str = "pixels", scales: Sequence[float] = DEFAULT_SCALES,
                              options: dict | None = None) -> ScaleFit:
    """Run ``method`` (``model, seed -> Posterior`` or a result with ``.posterior``) on every
    ``calibration.CalibrationProblem`` with the calibration benchmark's seeds (method seed
    ``derive_seed(seed, index, 0)``, draws ``derive_seed(seed, index, 1)``; of ``options`` those the method
    takes), then ``fit_interval_scale``."""
    used = accepted_options(method, options or {})
    reduced = []
    for problem in problems:
        result = method(problem.model, derive_seed(seed, problem.index, 0), **used)
        posterior = result if isinstance(result, Posterior) else getattr(result, "posterior", None)
        if not isinstance(posterior, Posterior):
            raise TypeError(f"the method returned {type(result).__name__}, which has no posterior to widen")
        sample_seed = derive_seed(seed, problem.index, 1)
        reduced.append(ScaleProblem.from_posterior(problem, posterior, num_draws, seed=sample_seed))
    return fit_interval_scale(reduced, levels, target, scales)
