"""Measuring one posterior method on one simulated problem: central-interval coverage of the latents
and of the unknown-region pixels, posterior-mean error, the ranks of the truth among L draws (the
SBC statistics), the joint density test, and MCMC convergence.  The record it returns is plain JSON.

A method's result is a ``Posterior`` (``.sample(n, seed=...)``), an object with a ``.posterior``
(e.g. ``MCMCResult``: R-hat, bulk / tail ESS and divergences are then recorded from its ``.latents``
(chains, draws, ...) and ``.divergences``), or a point estimate with ``.latent`` and ``.image``
(``MAPResult``: RMSE only).  A result (or its posterior) with a ``diagnostics`` dict has it recorded.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from brgm_pyro.functional import mean_squared_error_255
from brgm_pyro.inference.posterior import Posterior
from brgm_pyro.inference.quantities import log_likelihood
from brgm_pyro.models.brgm import BRGMModel, generate

from .methods import PosteriorMethod, accepted_options
from .problems import CalibrationProblem, derive_seed

__all__ = ["DEFAULT_LEVELS", "SBCQuantities", "interval_coverage", "joint_density_test", "json_safe",
           "measure_problem"]

DEFAULT_LEVELS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class SBCQuantities:
    """The scalar test quantities of the rank statistics: flat indices of latent coordinates and
    of unknown-region pixels (fixed across problems), plus the log-likelihood."""

    latent_index: list[int]
    pixel_index: list[int]

    @classmethod
    def choose(cls, latent_numel: int, unknown: torch.Tensor, count: int, seed: int) -> "SBCQuantities":
        g = torch.Generator().manual_seed(derive_seed(seed, 9_999_991))
        lat = torch.randperm(latent_numel, generator=g)[:count].sort().values.tolist()
        flat_unknown = unknown.reshape(-1).nonzero().reshape(-1)
        pix = flat_unknown[torch.randperm(flat_unknown.numel(), generator=g)[:count]].sort().values.tolist()
        return cls(lat, pix)


def _sbc_ranks(problem: CalibrationProblem, model: BRGMModel, latents: torch.Tensor, images: torch.Tensor,
               quantities: SBCQuantities) -> dict[str, int]:
    """Rank of the true value among the L draws (number of draws below it), per test quantity."""
    ranks: dict[str, int] = {}
    flat_lat = latents.reshape(latents.shape[0], -1)
    true_lat = problem.latent.reshape(-1).cpu()
    for i in quantities.latent_index:
        ranks[f"latent:{i}"] = int((flat_lat[:, i] < true_lat[i]).sum())
    flat_img = images.reshape(images.shape[0], -1)
    true_img = problem.image.reshape(-1).cpu()
    for i in quantities.pixel_index:
        ranks[f"pixel:{i}"] = int((flat_img[:, i] < true_img[i]).sum())
    ll = log_likelihood(model, latents)
    ll_true = log_likelihood(model, problem.latent.unsqueeze(0).cpu())[0]
    ranks["log_likelihood"] = int((ll < ll_true).sum())
    return ranks


def interval_coverage(draws: torch.Tensor, truth: torch.Tensor, levels: Sequence[float]) -> list[float]:
    """Fraction of coordinates whose central interval (sample quantiles of the draws (n, K)) holds the truth (K,)."""
    q = torch.tensor([p for a in levels for p in ((1 - a) / 2, (1 + a) / 2)], dtype=torch.float64)
    bounds = torch.quantile(draws.double(), q, dim=0).reshape(len(levels), 2, -1)
    truth = truth.double()
    inside = (truth >= bounds[:, 0]) & (truth <= bounds[:, 1])
    return inside.double().mean(dim=1).tolist()


def _mse_255(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(mean_squared_error_255(a, b))


def _thin(result: Any, posterior: Posterior, n: int, seed: int) -> torch.Tensor:
    """L draws for the rank statistics: evenly spaced over the chains of an MCMC result (thinning),
    fresh independent draws otherwise."""
    latents = getattr(result, "latents", None)
    if isinstance(latents, torch.Tensor) and latents.ndim >= 3:
        flat = latents.reshape(-1, *latents.shape[2:])
        idx = torch.linspace(0, flat.shape[0] - 1, n).round().long()
        return flat[idx].cpu()
    return posterior.sample(n, images=False, seed=seed).latents


def joint_density_test(posterior: Posterior, draws: torch.Tensor, truth: torch.Tensor) -> dict[str, float] | None:
    """Where the true latent falls in q's density, a joint test of all latents at once (which the
    per-coordinate intervals cannot see).  ``hpd_level``: the smallest highest-density region of
    q that holds the truth, as the fraction of the draws (n, *site) of q denser than it; uniform on
    [0, 1] over problems when q is the posterior, whatever its shape.  ``z``: (mean of log q over
    the draws - log q(truth)) / their std, about N(0, 1) then (for a Gaussian q in d dimensions,
    (m^2 - d) / sqrt(2 d) with m the truth's Mahalanobis distance); large when q is too narrow or
    misplaced.  In hundreds of dimensions the HPD level saturates at 1 for a scale error of a
    few percent; z grades it.  None when q has no tractable density (MCMC, flows)."""
    q = getattr(posterior, "q", None)
    if q is None or not getattr(q, "has_log_prob", False) or not hasattr(q, "log_prob"):
        return None
    with torch.no_grad():
        log_q_draws = q.log_prob(draws.to(q.mean)).reshape(-1).double()
        log_q_truth = float(q.log_prob(truth.to(q.mean).unsqueeze(0)).reshape(-1).double())
    spread = float(log_q_draws.std())
    z = (float(log_q_draws.mean()) - log_q_truth) / spread if spread > 0 and math.isfinite(log_q_truth) else None
    return {"hpd_level": float((log_q_draws > log_q_truth).double().mean()), "z": z}


def measure_problem(problem: CalibrationProblem, name: str, method: PosteriorMethod, *, levels: Sequence[float],
                    num_draws: int, sbc_draws: int, quantities: SBCQuantities, seed: int,
                    options: Mapping[str, Any]) -> dict[str, Any]:
    """Run one method on one problem and return its record (everything the summaries need)."""
    used = accepted_options(method, options)
    method_seed, sample_seed = derive_seed(seed, problem.index, 0), derive_seed(seed, problem.index, 1)
    t0 = time.perf_counter()
    result = method(problem.model, method_seed, **used)
    fit_seconds = time.perf_counter() - t0
    unknown = problem.unknown.cpu()
    truth_img = problem.image[0].detach().cpu()
    record: dict[str, Any] = {"index": problem.index, "method_seed": method_seed, "sample_seed": sample_seed,
                              "options": {k: v for k, v in used.items()}}
    posterior = result if isinstance(result, Posterior) else getattr(result, "posterior", None)
    if not isinstance(posterior, Posterior):
        image = getattr(result, "image", None)
        if not isinstance(image, torch.Tensor):
            raise TypeError(f"method {name!r} returned {type(result).__name__}: expected a Posterior, an object with "
                            "a .posterior (e.g. MCMCResult), or a point estimate with .image (e.g. MAPResult)")
        image = image.detach().reshape(truth_img.shape).cpu()
        record.update(kind="point", fit_seconds=fit_seconds, seconds=time.perf_counter() - t0,
                      rmse_unknown=math.sqrt(_mse_255(image[unknown], truth_img[unknown])),
                      rmse_image=math.sqrt(_mse_255(image, truth_img)),
                      diagnostics=json_safe(_collect_diagnostics(result)))
        return record
    draws = posterior.sample(num_draws, seed=sample_seed)
    latents, images = draws.latents.cpu(), draws.images.cpu()
    seconds = time.perf_counter() - t0  # the method's cost: fit + num_draws posterior draws and their images
    sbc_latents = _thin(result, posterior, sbc_draws, derive_seed(seed, problem.index, 2))
    with torch.no_grad():
        ws = problem.model.prior.ws_from_latent(sbc_latents).to(problem.model.observation.device)
        sbc_images = generate(problem.model.generator, ws).cpu()
    true_lat = problem.latent.reshape(-1).cpu()
    flat_lat = latents.reshape(num_draws, -1)
    pix_draws = images[:, unknown]  # (n, K)
    pix_truth = truth_img[unknown]
    mean_img = images.double().mean(0)
    record.update(
        kind="samples", fit_seconds=fit_seconds, seconds=seconds,
        coverage_latents=interval_coverage(flat_lat, true_lat, levels),
        coverage_pixels=interval_coverage(pix_draws, pix_truth, levels),
        mse_latents=float((flat_lat.double().mean(0) - true_lat.double()).square().mean()),
        var_latents=float(flat_lat.double().var(0).mean()),
        mse_pixels=_mse_255(pix_draws.double().mean(0), pix_truth),
        var_pixels=float((pix_draws.double() * 127.5).var(0).mean()),
        rmse_unknown=math.sqrt(_mse_255(mean_img[unknown], truth_img[unknown])),
        rmse_image=math.sqrt(_mse_255(mean_img, truth_img)),
        joint_density=joint_density_test(posterior, latents, problem.latent.cpu()),
        sbc_ranks=_sbc_ranks(problem, problem.model, sbc_latents, sbc_images, quantities),
        mcmc=_mcmc_diagnostics(result),
        diagnostics=json_safe(_collect_diagnostics(result, posterior)),
    )
    return record


def _mcmc_diagnostics(result: Any) -> dict[str, Any] | None:
    """R-hat (rank-normalised split), bulk and tail ESS over every latent coordinate, divergences."""
    latents = getattr(result, "latents", None)
    if not isinstance(latents, torch.Tensor) or latents.ndim < 3:
        return None
    import arviz as az

    chains, draws = latents.shape[:2]
    ary = latents.reshape(chains, draws, -1).double().cpu().numpy()
    out: dict[str, Any] = {"num_chains": int(chains), "num_draws": int(draws)}
    if chains >= 2:
        out["rhat_max"] = float(np.nanmax(_az_values(az.rhat, ary)))
    else:
        out["rhat_max"] = None
    out["ess_bulk_min"] = float(np.nanmin(_az_values(lambda a: az.ess(a, method="bulk"), ary)))
    out["ess_tail_min"] = float(np.nanmin(_az_values(lambda a: az.ess(a, method="tail"), ary)))
    divergences = getattr(result, "divergences", None)
    out["divergences"] = None if divergences is None else int(torch.as_tensor(divergences).sum())
    return out


def _az_values(fn: Callable, ary: np.ndarray) -> np.ndarray:
    """Apply an ArviZ diagnostic to a (chain, draw, K) array and return the (K,) values."""
    import arviz as az

    result = fn(az.convert_to_dataset(ary))  # variable "x" with dims (chain, draw, x_dim_0)
    values = [np.asarray(v) for v in result.data_vars.values()]
    return np.concatenate([v.reshape(-1) for v in values])


def _collect_diagnostics(*objects: Any) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    for obj in objects:
        d = getattr(obj, "diagnostics", None)
        if isinstance(d, Mapping):
            out.update(d)
    return out or None


def json_safe(value: Any) -> Any:
    """Plain JSON values: NaN / inf become None, tensors and numpy values become lists / numbers."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, torch.Tensor):
        return json_safe(value.detach().cpu().tolist())
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return str(value)
