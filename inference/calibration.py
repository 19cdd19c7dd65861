"""Simulation-based calibration of posterior approximations (Talts et al., 2018).

Problems are drawn from the model itself -- w ~ p(w), x = G(w), y = f(x) + N(0, sigma^2) on the
observed entries (Eqs. 2-4 with the pixel likelihood only) -- so a correct posterior p(w | y)
covers the truth at the nominal rate: on average over problems, a central interval of level
``a`` holds the true value with probability ``a``, and the rank of the true value among L
posterior draws is uniform on 0..L.  ``calibrate`` measures both for any set of methods:

    problems = simulate_problems(G, SuperResolution(4), 20, sigma_pixel=0.1)
    report = calibrate(problems, ["map", "vi-meanfield"], num_draws=256)
    print(report.table()); report.to_json("calibration.json"); report.figure("calibration.png")

A *posterior method* is a callable ``method(model, seed, **options) -> result`` where the result
is a ``Posterior`` (``.sample(n, seed=...)``), an object with a ``.posterior`` (e.g.
``MCMCResult``: R-hat, bulk / tail ESS and divergences are then recorded from its ``.latents``
(chains, draws, ...) and ``.divergences``), or a point estimate with ``.latent`` and ``.image``
(``MAPResult``: RMSE only, the reference of the RMSE comparison).  A result (or its posterior)
with a ``diagnostics`` dict (e.g. PSIS k-hat) has it recorded.  ``calibrate`` passes each method
only the ``options`` its signature accepts (e.g. ``num_steps``) and records which it used.

Methods are looked up by name in ``METHODS`` ("map", "vi-meanfield", "vi-meanfield-nopenalty"
here); add one with ``register_method``, in the module that defines it::

    @register_method("fullrank")
    def _fullrank(model, seed, num_steps=500):
        return fit_vi(model, guide="fullrank", num_steps=num_steps, seed=seed, progress=False)

Standard errors are computed across problems (pixels of one problem are correlated): each
coverage is the mean of per-problem coverages +- their std / sqrt(P).

Per-coordinate intervals can hold while the joint distribution is wrong (a Gaussian tangent to a
curved posterior).  For posteriors with a density (``q.log_prob``), ``joint_density_test`` also
ranks the truth's log q among the draws': the share of problems whose truth lies in q's a-highest-
density region ("joint coverage", a for the posterior) and z, the truth's standardised log q.
"""

from __future__ import annotations

import inspect
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pyro.distributions as dist
import torch
from pyro import poutine

from brgm_pyro.functional import image_shape, mean_squared_error_255
from brgm_pyro.models.brgm import BRGMModel, brgm_model, corrupt, generate
from brgm_pyro.models.config import BRGMConfig

from .map import MAPResult, map_estimate
from .posterior import Posterior
from .vi import fit_vi

DEFAULT_LEVELS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


# --------------------------------------------------------------------------- problems


@dataclass
class CalibrationProblem:
    """One simulated problem: the true latent and image, the noisy observation, and its model.

    latent: the true value of the prior's sample site (e.g. (num_ws, w_dim)); image: x = G(w),
    (1, C, H, W); observation: y = f(x) + N(0, sigma^2) on the observed entries (f(x) elsewhere);
    model: the BRGM model the problem was drawn from; unknown: bool (C, H, W), the pixels of the
    unknown region (the hidden pixels for in-painting, every pixel otherwise).
    """

    index: int
    latent: torch.Tensor
    image: torch.Tensor
    observation: torch.Tensor
    model: BRGMModel
    unknown: torch.Tensor


def unknown_region(corruption: torch.nn.Module, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """bool (C, H, W): the pixels that are not observed directly.  For a pointwise corruption with
    an observation mask (in-painting) the masked-out pixels; for any other corruption every pixel."""
    mask = corruption.observation_mask(image_shape)
    if mask is not None and getattr(corruption, "pointwise", False) and tuple(mask.shape) == tuple(image_shape):
        unknown = mask.detach().cpu() == 0
        if not unknown.any():
            raise ValueError(f"{corruption.describe()} observes every pixel: there is no unknown region")
        return unknown
    return torch.ones(image_shape, dtype=torch.bool)


def _seed(*parts: int) -> int:
    """An independent 31-bit seed for each tuple of integers (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


def problem_model(generator, corruption, *, sigma_pixel: float = 0.1, prior_std: str = "per-dimension",
                  kappa: float = 0.0, num_stats_samples: int = 10_000) -> BRGMModel:
    """The model problems are drawn from: ``BRGMConfig(sigma_pixel, None, kappa, prior_std)``
    (Gaussian prior on W+, pixel likelihood only), with a zero placeholder observation."""
    config = BRGMConfig(sigma_pixel, None, kappa, prior_std)
    shape = image_shape(generator)
    placeholder = torch.zeros(corruption.output_shape(shape))
    return brgm_model(generator, corruption, placeholder, config=config, num_stats_samples=num_stats_samples)


@torch.no_grad()
def simulate_problem(model: BRGMModel, index: int, seed: int = 0) -> CalibrationProblem:
    """Problem ``index`` of the stream ``seed``: w ~ the model's prior, x = G(w), y = f(x) + noise.

    Its random numbers depend only on (seed, index), so problem 7 is the same whether 10 or
    100 problems are drawn (a benchmark can run each problem in its own process).
    """
    if model.colinearity is not None:
        raise NotImplementedError(
            "simulate_problem draws w from the Gaussian prior directly; with the colinearity factor "
            "(kappa > 0) the prior is not a standard distribution and needs MCMC to sample: use kappa=0")
    sigma = _pixel_sigma(model)
    g = torch.Generator().manual_seed(_seed(seed, index))
    prior = model.prior
    base = prior.distribution()
    loc, scale = base.base_dist.loc, base.base_dist.scale
    if not isinstance(base.base_dist, dist.Normal):
        raise NotImplementedError(f"simulate_problem samples Gaussian priors only, not {type(base.base_dist).__name__}")
    shape = torch.broadcast_shapes(loc.shape, scale.shape)
    eps = torch.randn(shape, generator=g, dtype=torch.float64).to(loc)
    latent = loc + scale * eps
    device = model.observation.device
    image = generate(model.generator, prior.ws_from_latent(latent).unsqueeze(0).to(device))
    clean = corrupt(model.corruption, image)[0]
    noise = torch.randn(clean.shape, generator=g, dtype=torch.float64).to(clean) * sigma
    if model.mask is not None:
        noise = noise * model.mask.to(clean)
    observation = clean + noise
    return CalibrationProblem(index, latent.detach(), image.detach(), observation.detach(),
                              replace(model, observation=observation),
                              unknown_region(model.corruption, model.image_shape))


def simulate_problems(generator, corruption, num_problems: int, *, sigma_pixel: float = 0.1,
                      prior_std: str = "per-dimension", kappa: float = 0.0, seed: int = 0,
                      start: int = 0) -> list[CalibrationProblem]:
    """``num_problems`` problems (indices ``start`` ...) drawn from the model with a Gaussian prior
    on W+ (``prior_std`` "per-dimension" or "scalar"), no colinearity factor and the pixel
    likelihood with ``sigma_pixel``: w ~ p(w), x = G(w), y = f(x) + N(0, sigma_pixel^2).

    ``kappa > 0`` raises ``NotImplementedError``: the prior with the colinearity factor cannot be
    sampled directly.
    """
    if num_problems < 1:
        raise ValueError(f"num_problems must be >= 1, got {num_problems}")
    if kappa != 0:
        raise NotImplementedError(
            f"kappa={kappa}: the prior with the colinearity factor cannot be sampled directly, so problems "
            "cannot be drawn from it exactly; calibrate with kappa=0")
    model = problem_model(generator, corruption, sigma_pixel=sigma_pixel, prior_std=prior_std, kappa=kappa)
    return [simulate_problem(model, i, seed) for i in range(start, start + num_problems)]


def _pixel_sigma(model: BRGMModel) -> float:
    from brgm_pyro.models.likelihoods import PixelLikelihood

    sigmas = [lik.sigma for lik in model.likelihoods if isinstance(lik, PixelLikelihood)]
    if len(sigmas) != 1 or len(model.likelihoods) != 1:
        raise ValueError("simulated problems need a model with exactly one likelihood, the pixel likelihood "
                         f"(got {[type(lik).__name__ for lik in model.likelihoods]})")
    return sigmas[0]


# --------------------------------------------------------------------------- methods

PosteriorResult = Any  # Posterior | MCMCResult | MAPResult | object with .posterior / .diagnostics
PosteriorMethod = Callable[..., PosteriorResult]  # (model, seed, **options) -> fitted posterior

METHODS: dict[str, PosteriorMethod] = {}


def register_method(name: str, method: PosteriorMethod | None = None):
    """Add a posterior method to ``METHODS`` (usable as a decorator): ``method(model, seed, **options)``."""
    def add(fn: PosteriorMethod) -> PosteriorMethod:
        METHODS[name] = fn
        return fn

    return add if method is None else add(method)


@register_method("map")
def _map(model: BRGMModel, seed: int, num_steps: int = 500) -> MAPResult:
    """MAP (Eq. 6), the authors' optimiser settings: a point estimate, the RMSE reference."""
    return map_estimate(model, num_steps=num_steps, seed=seed, progress=False)


@register_method("vi-meanfield")
def _vi_meanfield(model: BRGMModel, seed: int, num_steps: int = 500) -> Posterior:
    """``fit_vi`` with its defaults: the paper's mean-field Gaussian with the sigma_v penalty (Eqs. 7-8)."""
    return fit_vi(model, num_steps=num_steps, seed=seed, progress=False)


@register_method("vi-meanfield-nopenalty")
def _vi_meanfield_nopenalty(model: BRGMModel, seed: int, num_steps: int = 500) -> Posterior:
    """The mean-field Gaussian fitted to the plain ELBO (Eq. 7, no sigma_v penalty)."""
    return fit_vi(model, num_steps=num_steps, seed=seed, progress=False, sigma_prior=None)


def resolve_methods(methods: Mapping[str, PosteriorMethod] | Sequence[str] | str) -> dict[str, PosteriorMethod]:
    """Names (from ``METHODS``; a comma-separated string is split) or a mapping name -> method."""
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    if isinstance(methods, Mapping):
        out = dict(methods)
    else:
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; registered: {', '.join(sorted(METHODS))}")
        out = {m: METHODS[m] for m in methods}
    if not out:
        raise ValueError("no methods given")
    return out


def _accepted_options(method: PosteriorMethod, options: Mapping[str, Any]) -> dict[str, Any]:
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return dict(options)
    names = {p.name for p in params}
    return {k: v for k, v in options.items() if k in names}


# --------------------------------------------------------------------------- measuring one problem


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


@torch.no_grad()
def log_likelihood(model: BRGMModel, latents: torch.Tensor, chunk_size: int = 64) -> torch.Tensor:
    """log p(y | w) of the model's observed sites (the likelihoods, not factors) for each latent (n, *site) -> (n,)."""
    site = model.prior.site
    out = []
    for start in range(0, latents.shape[0], chunk_size):
        value = latents[start:start + chunk_size].to(model.observation.device)
        trace = poutine.trace(poutine.condition(model.model, data={site: value})).get_trace()
        total = torch.zeros(value.shape[0], dtype=torch.float64)
        for name, node in trace.nodes.items():
            if node["type"] != "sample" or name == site or not node["is_observed"]:
                continue
            if isinstance(node["fn"], dist.Unit):  # pyro.factor (the colinearity prior), not data
                continue
            lp = node["fn"].log_prob(node["value"]).double().cpu()
            total = total + lp.expand(value.shape[0])  # batch shape (n,), or () if it does not depend on w
        out.append(total)
    return torch.cat(out)


@dataclass
class SBCQuantities:
    """The scalar test quantities of the rank statistics: flat indices of latent coordinates and
    of unknown-region pixels (fixed across problems), plus the log-likelihood."""

    latent_index: list[int]
    pixel_index: list[int]

    @classmethod
    def choose(cls, latent_numel: int, unknown: torch.Tensor, count: int, seed: int) -> "SBCQuantities":
        g = torch.Generator().manual_seed(_seed(seed, 9_999_991))
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


def _coverage(draws: torch.Tensor, truth: torch.Tensor, levels: Sequence[float]) -> list[float]:
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
    used = _accepted_options(method, options)
    method_seed, sample_seed = _seed(seed, problem.index, 0), _seed(seed, problem.index, 1)
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
                      diagnostics=_json_safe(_collect_diagnostics(result)))
        return record
    draws = posterior.sample(num_draws, seed=sample_seed)
    latents, images = draws.latents.cpu(), draws.images.cpu()
    seconds = time.perf_counter() - t0  # the method's cost: fit + num_draws posterior draws and their images
    sbc_latents = _thin(result, posterior, sbc_draws, _seed(seed, problem.index, 2))
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
        coverage_latents=_coverage(flat_lat, true_lat, levels),
        coverage_pixels=_coverage(pix_draws, pix_truth, levels),
        mse_latents=float((flat_lat.double().mean(0) - true_lat.double()).square().mean()),
        var_latents=float(flat_lat.double().var(0).mean()),
        mse_pixels=_mse_255(pix_draws.double().mean(0), pix_truth),
        var_pixels=float((pix_draws.double() * 127.5).var(0).mean()),
        rmse_unknown=math.sqrt(_mse_255(mean_img[unknown], truth_img[unknown])),
        rmse_image=math.sqrt(_mse_255(mean_img, truth_img)),
        joint_density=joint_density_test(posterior, latents, problem.latent.cpu()),
        sbc_ranks=_sbc_ranks(problem, problem.model, sbc_latents, sbc_images, quantities),
        mcmc=_mcmc_diagnostics(result),
        diagnostics=_json_safe(_collect_diagnostics(result, posterior)),
    )
    return record


# --------------------------------------------------------------------------- statistics


def _mean_se(values: Iterable[float | None]) -> dict[str, float | None]:
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if x.size == 0:
        return {"mean": None, "se": None, "n": 0}
    se = float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else None
    return {"mean": float(x.mean()), "se": se, "n": int(x.size)}


def _pooled_ratio(var: Sequence[float], mse: Sequence[float]) -> dict[str, float | None]:
    """sqrt(mean posterior variance) / sqrt(mean squared error of the posterior mean), pooled over
    problems, with a jackknife standard error over problems (1.0 for a calibrated posterior)."""
    v, m = np.asarray(var, float), np.asarray(mse, float)
    if v.size == 0 or m.sum() == 0:
        return {"ratio": None, "se": None}
    ratio = float(math.sqrt(v.mean() / m.mean()))
    se = None
    if v.size > 2:
        loo = np.sqrt((v.sum() - v) / (m.sum() - m))
        se = float(math.sqrt((v.size - 1) / v.size * np.square(loo - loo.mean()).sum()))
    return {"ratio": ratio, "se": se}


def chi_square_uniformity(counts: Sequence[int], probs: Sequence[float]) -> float:
    """p-value of Pearson's chi-square test of ``counts`` against bin probabilities ``probs``."""
    counts_a, probs_a = np.asarray(counts, float), np.asarray(probs, float)
    total = counts_a.sum()
    if total == 0 or len(counts_a) < 2:
        return float("nan")
    expected = total * probs_a / probs_a.sum()
    stat = float(((counts_a - expected) ** 2 / expected).sum())
    df = len(counts_a) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64),
                                         torch.tensor(stat / 2, dtype=torch.float64)))


def rank_bins(num_problems: int, sbc_draws: int, max_bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(edges, probs): bins of the ranks 0..L with about 5 expected counts per bin per quantity."""
    values = sbc_draws + 1
    bins = int(max(2, min(max_bins, values, num_problems // 5)))
    # rank r is in bin b if edges[b] <= r < edges[b+1]
    edges = np.floor(np.arange(bins + 1) * values / bins).astype(int)
    probs = np.diff(edges) / values
    return edges, probs


def sbc_summary(records: Sequence[Mapping[str, Any]], sbc_draws: int) -> dict[str, Any]:
    """Per group of test quantities ("latents", "pixels", "log_likelihood"): the rank histogram
    (pooled over the group's quantities and the problems), each quantity's chi-square p-value
    (ranks of one quantity are independent across problems) and their Bonferroni-corrected
    minimum ``p_value`` (valid however the quantities of a group depend on each other)."""
    ranked = [r["sbc_ranks"] for r in records if r.get("sbc_ranks")]
    if not ranked:
        return {}
    edges, probs = rank_bins(len(ranked), sbc_draws)
    groups: dict[str, dict[str, list[int]]] = {}
    for ranks in ranked:
        for q, value in ranks.items():
            group = "latents" if q.startswith("latent:") else "pixels" if q.startswith("pixel:") else q
            groups.setdefault(group, {}).setdefault(q, []).append(int(value))
    out: dict[str, Any] = {}
    for group, per_q in groups.items():
        pvals, pooled = [], np.zeros(len(probs), int)
        for values in per_q.values():
            counts = np.histogram(values, bins=edges)[0]
            pooled += counts
            pvals.append(chi_square_uniformity(counts, probs))
        finite = [p for p in pvals if not math.isnan(p)]
        out[group] = {
            "num_quantities": len(per_q), "num_problems": len(ranked), "bin_edges": edges.tolist(),
            "histogram": pooled.tolist(), "expected": (pooled.sum() * probs).tolist(),
            "p_value": min(1.0, min(finite) * len(finite)) if finite else None,
            "p_values": pvals,
        }
    return out


def summarize_method(records: Sequence[Mapping[str, Any]], levels: Sequence[float], sbc_draws: int,
                     reference: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Summary of one method's per-problem records (means +- standard errors across problems)."""
    kind = records[0]["kind"] if records else None
    out: dict[str, Any] = {"kind": kind, "num_problems": len(records),
                           "seconds": _mean_se(r["seconds"] for r in records),
                           "fit_seconds": _mean_se(r["fit_seconds"] for r in records),
                           "rmse_unknown": _mean_se(r["rmse_unknown"] for r in records),
                           "rmse_image": _mean_se(r["rmse_image"] for r in records)}
    if reference is not None:
        ref = {r["index"]: r for r in reference}
        paired = [r for r in records if r["index"] in ref]
        for key in ("rmse_unknown", "rmse_image"):
            out[f"{key}_minus_map"] = _mean_se(r[key] - ref[r["index"]][key] for r in paired)
    if kind == "samples":
        for part in ("latents", "pixels"):
            cov = np.asarray([r[f"coverage_{part}"] for r in records], float)  # (P, levels)
            out[f"coverage_{part}"] = [dict(level=float(a), **_mean_se(cov[:, j])) for j, a in enumerate(levels)]
            out[f"std_error_ratio_{part}"] = _pooled_ratio([r[f"var_{part}"] for r in records],
                                                           [r[f"mse_{part}"] for r in records])
        out["sbc"] = sbc_summary(records, sbc_draws)
        joint = [r["joint_density"] for r in records if r.get("joint_density")]
        if joint:  # fraction of problems whose truth lies in q's a-HPD region (a for a calibrated q)
            hpd = np.asarray([j["hpd_level"] for j in joint], float)
            out["joint_coverage_latents"] = [dict(level=float(a), **_mean_se((hpd <= a).astype(float)))
                                             for a in levels]
            out["joint_hpd_level_mean"] = _mean_se(hpd)  # 0.5 for a calibrated q
            zs = [j["z"] for j in joint if j["z"] is not None]
            out["joint_density_z"] = _mean_se(zs)  # about 0 for a calibrated q
            out["joint_density_z_median"] = float(np.median(zs)) if zs else None  # robust to a far-off mode
        mcmc = [r["mcmc"] for r in records if r.get("mcmc")]
        if mcmc:
            def pick(key: str) -> list[float]:
                return [m[key] for m in mcmc if m.get(key) is not None]

            mixed = [m for m in mcmc if m.get("rhat_max") is not None and m["rhat_max"] < 1.05
                     and m["ess_bulk_min"] >= 100 and not m.get("divergences")]
            out["mcmc"] = {"rhat_max": max(pick("rhat_max"), default=None),
                           "ess_bulk_min": min(pick("ess_bulk_min"), default=None),
                           "ess_tail_min": min(pick("ess_tail_min"), default=None),
                           "divergences": int(sum(pick("divergences"))),
                           "problems_mixed": len(mixed), "problems": len(mcmc),
                           "mixed_rule": "R-hat < 1.05 (>= 2 chains), bulk ESS >= 100, no divergences"}
    diags = [r["diagnostics"] for r in records if r.get("diagnostics")]
    if diags:
        keys = sorted({k for d in diags for k, v in d.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)})
        out["diagnostics"] = {k: {**_mean_se(d.get(k) for d in diags),
                                  "max": max(d[k] for d in diags if d.get(k) is not None)} for k in keys}
    return out


def _json_safe(value: Any) -> Any:
    """Plain JSON values: NaN / inf become None, tensors and numpy values become lists / numbers."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, torch.Tensor):
        return _json_safe(value.detach().cpu().tolist())
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return str(value)


# --------------------------------------------------------------------------- the report


@dataclass
class CalibrationReport:
    """Per-problem records of every method and their summaries (computed from the records, so
    reports of the same problems from different runs can be merged with ``merge``)."""

    levels: list[float]
    num_draws: int
    sbc_draws: int
    seed: int
    records: dict[str, list[dict[str, Any]]]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return list(self.records)

    def summary(self, method: str) -> dict[str, Any]:
        reference = self.records.get("map") if method != "map" else None
        return summarize_method(self.records[method], self.levels, self.sbc_draws, reference)

    def coverage(self, method: str, part: str = "pixels", level: float = 0.9) -> dict[str, float | None]:
        """{"mean", "se", "n"} of the coverage of ``level`` intervals for "pixels" or "latents"."""
        for entry in self.summary(method).get(f"coverage_{part}", []):
            if math.isclose(entry["level"], level):
                return entry
        raise KeyError(f"no coverage of {part} at level {level} for {method!r} (levels {self.levels})")

    def to_dict(self) -> dict[str, Any]:
        return _json_safe({
            "levels": self.levels, "num_draws": self.num_draws, "sbc_draws": self.sbc_draws, "seed": self.seed,
            "settings": self.settings,
            "summary": {m: self.summary(m) for m in self.records},
            "records": self.records,
        })

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False))
        return path

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CalibrationReport":
        return cls([float(a) for a in data["levels"]], int(data["num_draws"]), int(data["sbc_draws"]),
                   int(data["seed"]), {m: list(r) for m, r in data["records"].items()}, dict(data.get("settings", {})))

    @classmethod
    def from_json(cls, path: str | Path) -> "CalibrationReport":
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def merge(cls, reports: Sequence["CalibrationReport"]) -> "CalibrationReport":
        """One report of the records of several (same levels, draws and seed; records of the same
        method and problem index must not repeat)."""
        if not reports:
            raise ValueError("nothing to merge")
        first = reports[0]
        records: dict[str, list[dict[str, Any]]] = {}
        for rep in reports:
            if (rep.levels, rep.num_draws, rep.sbc_draws, rep.seed) != (first.levels, first.num_draws,
                                                                         first.sbc_draws, first.seed):
                raise ValueError("reports differ in levels, num_draws, sbc_draws or seed and cannot be merged")
            for method, recs in rep.records.items():
                have = {r["index"] for r in records.get(method, [])}
                dup = sorted(have & {r["index"] for r in recs})
                if dup:
                    raise ValueError(f"method {method!r} has problems {dup} in more than one report")
                records.setdefault(method, []).extend(recs)
        for recs in records.values():
            recs.sort(key=lambda r: r["index"])
        return cls(first.levels, first.num_draws, first.sbc_draws, first.seed, records, dict(first.settings))

    def table(self) -> str:
        """Markdown: coverage of the unknown-region pixels at 90% / 50% and latents at 90% (mean +- se
        over problems), pooled posterior std / error, posterior-mean RMSE (0-255) and its paired
        difference to MAP's, SBC p-values, and wall seconds per problem."""
        def ms(entry: Mapping[str, Any] | None, digits: int = 2) -> str:
            if not entry or entry.get("mean") is None:
                return "-"
            se = entry.get("se")
            return f"{entry['mean']:.{digits}f}" + ("" if se is None else f" ± {se:.{digits}f}")

        header = ("| method | problems | cov90 pixels | cov50 pixels | cov90 latents | cov50 latents | "
                  "joint 90% latents (median z) | std/error pixels | RMSE unknown | RMSE − MAP | RMSE image | "
                  "SBC p (lat/pix/loglik) | s/problem |")
        lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for method in self.records:
            s = self.summary(method)
            cov = {}
            joint = "-"
            if s.get("joint_coverage_latents"):
                z = s["joint_density_z_median"]
                joint = (ms(min(s["joint_coverage_latents"], key=lambda e: abs(e["level"] - 0.9)))
                         + ("" if z is None else f" (z {z:.3g})"))
            if s["kind"] == "samples":
                for part in ("pixels", "latents"):
                    for level in (0.9, 0.5):
                        try:
                            cov[part, level] = ms(self.coverage(method, part, level))
                        except KeyError:
                            cov[part, level] = "-"
                r = s["std_error_ratio_pixels"]
                ratio = "-" if r["ratio"] is None else (
                    f"{r['ratio']:.2f}" + ("" if r["se"] is None else f" ± {r['se']:.2f}"))
                sbc = s.get("sbc", {})
                sbc_text = "/".join("-" if sbc.get(g, {}).get("p_value") is None else f"{sbc[g]['p_value']:.2g}"
                                    for g in ("latents", "pixels", "log_likelihood"))
            else:
                ratio, sbc_text = "-", "-"
            lines.append("| " + " | ".join([
                method, str(s["num_problems"]), cov.get(("pixels", 0.9), "-"), cov.get(("pixels", 0.5), "-"),
                cov.get(("latents", 0.9), "-"), cov.get(("latents", 0.5), "-"), joint, ratio,
                ms(s["rmse_unknown"], 1), ms(s.get("rmse_unknown_minus_map"), 1), ms(s["rmse_image"], 1),
                sbc_text, ms(s["seconds"], 1)]) + " |")
        return "\n".join(lines)

    def figure(self, path: str | Path) -> Path:
        """Nominal vs empirical coverage (mean +- se over problems), one line per method, for the
        unknown-region pixels and the latents, with the diagonal."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from brgm_pyro.io import save_figure

        fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True)
        for ax, part, title in ((axes[0], "pixels", "unknown-region pixels"), (axes[1], "latents", "latents")):
            ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="nominal")
            for method in self.records:
                s = self.summary(method)
                if s["kind"] != "samples":
                    continue
                entries = s[f"coverage_{part}"]
                x = [e["level"] for e in entries]
                y = [e["mean"] for e in entries]
                err = [e["se"] or 0.0 for e in entries]
                ax.errorbar(x, y, yerr=err, marker="o", ms=3, capsize=2, label=f"{method} ({s['num_problems']})")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_xlabel("nominal level of the central interval")
            ax.set_title(title)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("empirical coverage (mean ± se over problems)")
        axes[1].legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        return save_figure(fig, path, dpi=120)


# --------------------------------------------------------------------------- the driver


def calibrate(problems: Sequence[CalibrationProblem], methods: Mapping[str, PosteriorMethod] | Sequence[str] | str,
              *, num_draws: int = 256, levels: Sequence[float] = DEFAULT_LEVELS, seed: int = 0,
              progress: bool = False, sbc_draws: int | None = None, sbc_quantities: int = 8,
              options: Mapping[str, Any] | None = None, settings: Mapping[str, Any] | None = None,
              ) -> CalibrationReport:
    """Run every method on every problem and measure its calibration.

    num_draws: posterior draws per problem for the intervals, the posterior mean and std;
    sbc_draws: L, the draws the true value is ranked among (default min(num_draws, 99); thinned
    evenly over the chains for MCMC); sbc_quantities: latent coordinates and unknown pixels used
    as test quantities (a fixed random subset, plus the log-likelihood); seed: the methods' and
    the draws' seeds (derived per problem); options: keyword arguments given to the methods that
    accept them (e.g. ``{"num_steps": 500}``); settings: free-form metadata stored in the report.
    """
    if not problems:
        raise ValueError("no problems given")
    if num_draws < 2:
        raise ValueError(f"num_draws must be >= 2, got {num_draws}")
    levels = [float(a) for a in levels]
    if not levels or not all(0 < a < 1 for a in levels):
        raise ValueError(f"levels must be in (0, 1), got {levels}")
    sbc_draws = min(num_draws, 99) if sbc_draws is None else int(sbc_draws)
    if sbc_draws < 1:
        raise ValueError(f"sbc_draws must be >= 1, got {sbc_draws}")
    indices = [p.index for p in problems]
    if len(set(indices)) != len(indices):
        raise ValueError(f"problem indices repeat: {indices}")
    resolved = resolve_methods(methods)
    first = problems[0]
    quantities = SBCQuantities.choose(first.latent.numel(), first.unknown, sbc_quantities, seed)
    options = dict(options or {})
    records: dict[str, list[dict[str, Any]]] = {name: [] for name in resolved}
    from tqdm.auto import tqdm

    jobs = [(p, name) for p in problems for name in resolved]
    for problem, name in tqdm(jobs, disable=not progress, desc="calibrate", leave=False):
        records[name].append(measure_problem(problem, name, resolved[name], levels=levels, num_draws=num_draws,
                                             sbc_draws=sbc_draws, quantities=quantities, seed=seed,
                                             options=options))
    info = {"sbc_quantities": {"latent_index": quantities.latent_index, "pixel_index": quantities.pixel_index},
            "options": options}
    info.update(settings or {})
    return CalibrationReport(levels, num_draws, sbc_draws, seed, records, _json_safe(info))


__all__ = [
    "CalibrationProblem", "CalibrationReport", "DEFAULT_LEVELS", "METHODS", "PosteriorMethod", "SBCQuantities",
    "calibrate", "chi_square_uniformity", "log_likelihood", "measure_problem", "problem_model", "rank_bins",
    "register_method", "resolve_methods", "sbc_summary", "simulate_problem", "simulate_problems",
    "summarize_method", "unknown_region",
]
