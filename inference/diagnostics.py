"""Posterior diagnostics: ArviZ ``InferenceData``, PSIS k-hat, ESS / R-hat, MAP vs VI vs MCMC
comparison tables, per-pixel uncertainty and the coverage of credible intervals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyro
import torch
from pyro.infer.importance import psis_diagnostic

from brgm_pyro.functional import rmse_255
from brgm_pyro.models.brgm import BRGMModel, corrupt, generate

from .map import MAPResult
from .mcmc import MCMCResult
from .parameters import parameter_draws, parameter_summary
from .posterior import Posterior
from .quantities import log_likelihood, unknown_region
from .vi import VIPosterior

Result = MAPResult | VIPosterior | MCMCResult


def _latent_dims(latent: torch.Tensor) -> list[str]:
    return ["layer", "w_dim"] if latent.ndim == 2 else ["w_dim"][-latent.ndim:]


def to_inference_data(result: Result, model: BRGMModel | None = None, num_draws: int = 100,
                      truth: torch.Tensor | None = None, seed: int = 0):
    """An ``arviz.InferenceData`` for a MAP, VI or MCMC run.

    Groups: ``posterior`` (latent w with dims layer / w_dim; one draw for MAP, ``num_draws`` for
    VI, every draw by chain for MCMC), ``posterior_predictive`` (images G(w), dims channel/y/x),
    ``observed_data`` (the observation), ``constant_data`` (the true image, if given),
    ``sample_stats`` (MCMC: ``diverging``), and ``optimization`` (MAP / VI: the loss and each
    model term per step; ArviZ indexes sample_stats by draw, so step traces live here).
    The model's other latent sites (a learned "sigma_pixel", "corruption.blur_sigma", ...) are
    further ``posterior`` variables, drawn with w (MCMC) or from the guide (VI).
    """
    import arviz as az
    import xarray as xr

    if isinstance(result, MCMCResult):
        model = result.posterior.model
        latents = result.latents
        ws = model.prior.ws_from_latent(latents.reshape(-1, *latents.shape[2:]))
        with torch.no_grad():
            images = torch.cat([generate(model.generator, ws[i:i + 64].to(model.observation.device)).cpu()
                                for i in range(0, ws.shape[0], 64)])
        images = images.reshape(*latents.shape[:2], *images.shape[1:])
        sample_stats = {"diverging": result.divergences.numpy()}
        history = None
    elif isinstance(result, VIPosterior):
        model = result.model
        draws = result.sample(num_draws, seed=seed)
        latents, images = draws.latents.unsqueeze(0), draws.images.unsqueeze(0)
        sample_stats, history = None, result.history
    elif isinstance(result, MAPResult):
        if model is None:
            raise ValueError("pass the model for a MAP result")
        latents = result.latent.cpu()[None, None]
        images = result.image.cpu().unsqueeze(0)
        sample_stats, history = None, result.history
    else:
        raise ValueError(f"unsupported result type {type(result).__name__}")

    dims = {"w": _latent_dims(latents[0, 0]), "image": ["channel", "y", "x"],
            "observation": ["obs_channel", "obs_y", "obs_x"]}
    kwargs: dict[str, Any] = {
        "posterior": {"w": latents.numpy()},
        "posterior_predictive": {"image": images.numpy()},
        "observed_data": {"observation": model.observation.cpu().numpy()},
        "dims": dims,
    }
    if sample_stats is not None:
        kwargs["sample_stats"] = sample_stats
    for site, draws in parameter_draws(result, num_draws, seed).items():  # other latent sites (beyond the paper)
        per_image = tuple(draws.shape[1:]) if isinstance(result, MAPResult) else ()  # a batched MAP: (1, B)
        kwargs["posterior"][site] = draws.reshape(*latents.shape[:2], *per_image).numpy()
    if truth is not None:
        kwargs["constant_data"] = {"truth": truth.reshape(*images.shape[-3:]).cpu().numpy()}
        dims["truth"] = ["channel", "y", "x"]
    idata = az.from_dict(**kwargs)
    if history is not None:
        data = {"loss": ("step", np.asarray(history.loss))}
        data.update({f"term_{name}": ("step", np.asarray(v)) for name, v in history.terms.items()})
        idata.add_groups(optimization=xr.Dataset(data))
    return idata


def psis_khat(posterior: VIPosterior, num_particles: int = 1000, max_simultaneous_particles: int = 250) -> float:
    """Pareto k-hat of the importance weights p(w, I) / q(w) (Yao et al., 2018).

    k < 0.5: q is a good importance proposal; 0.5-0.7: usable; > 0.7: q misses posterior mass.
    The sigma_v penalty is not part of q and does not enter.
    """
    model = posterior.model
    chunk = min(max_simultaneous_particles, num_particles)
    while num_particles % chunk:  # Pyro needs the chunk size to divide the number of particles
        chunk -= 1
    max_simultaneous_particles = chunk
    with pyro.get_param_store().scope(posterior.state), torch.no_grad():
        return float(psis_diagnostic(model.model, posterior.guide, num_particles=num_particles,
                                     max_simultaneous_particles=max_simultaneous_particles, max_plate_nesting=0))


def mcmc_summary(result: MCMCResult):
    """ArviZ summary (mean, sd, ESS bulk/tail, R-hat) of every latent coordinate."""
    import arviz as az

    return az.summary(to_inference_data(result), var_names=["w"], kind="all")


@dataclass
class ChainStatistics:
    """Rank-normalised split R-hat, bulk ESS and tail ESS (Vehtari et al., 2021; computed by ArviZ)
    of each scalar quantity of (chains, draws, *shape) draws, flattened to (n,)."""

    rhat: np.ndarray
    ess_bulk: np.ndarray
    ess_tail: np.ndarray

    def worst(self) -> dict[str, float]:
        """max R-hat, min bulk ESS, min tail ESS over the quantities, and their number."""
        return {"max_rhat": float(np.max(self.rhat)), "min_ess_bulk": float(np.min(self.ess_bulk)),
                "min_ess_tail": float(np.min(self.ess_tail)), "num_quantities": int(self.rhat.size)}


def chain_statistics(draws: torch.Tensor | np.ndarray) -> ChainStatistics:
    """R-hat / ESS of every scalar in ``draws`` (chains, draws, *shape); needs >= 2 chains for R-hat
    to be meaningful (with one chain it is the split-chain R-hat of its two halves)."""
    import arviz as az

    values = draws.detach().cpu().double().numpy() if isinstance(draws, torch.Tensor) else np.asarray(draws, float)
    if values.ndim < 2 or values.shape[1] < 4:
        raise ValueError(f"draws must be (chains, draws >= 4, *shape), got {values.shape}")
    data = az.convert_to_dataset(values.reshape(values.shape[0], values.shape[1], -1))  # "x": (chain, draw, k)
    stats = [fn(data, method=method)["x"].values.reshape(-1)
             for fn, method in ((az.rhat, "rank"), (az.ess, "bulk"), (az.ess, "tail"))]
    return ChainStatistics(*stats)


def mcmc_convergence(result: MCMCResult, num_pixels: int = 64, seed: int = 0) -> dict[str, Any]:
    """Convergence of a multi-chain run over a documented set of quantities.

    Groups: "latents" (every coordinate of w), "pixels" (``num_pixels`` pixels of the unknown
    region, ``quantities.unknown_region``, chosen at random with ``seed``; all of them if fewer), and
    "log_likelihood" (log p(I | w) of each draw).  Returns per group and overall: max R-hat
    (rank-normalised split), min bulk / tail ESS; plus divergences (total and per chain), the
    adapted step size per chain, the mean tree depth and leapfrog steps per draw.
    """
    model = result.posterior.model
    chains, draws = result.latents.shape[:2]
    flat = result.latents.reshape(chains * draws, *result.latents.shape[2:])
    loglik = log_likelihood(model, flat)
    device = model.observation.device
    with torch.no_grad():
        images = torch.cat([generate(model.generator, model.prior.ws_from_latent(flat[i:i + 64]).to(device)).cpu()
                            for i in range(0, flat.shape[0], 64)])
    region = unknown_region(model.corruption, model.image_shape).reshape(-1)
    index = region.nonzero().squeeze(-1)
    if index.numel() > num_pixels:
        g = torch.Generator().manual_seed(seed)
        index = index[torch.randperm(index.numel(), generator=g)[:num_pixels]].sort().values
    pixels = images.reshape(chains, draws, -1)[..., index]
    groups = {"latents": chain_statistics(result.latents).worst(),
              "pixels": chain_statistics(pixels).worst(),
              "log_likelihood": chain_statistics(loglik.reshape(chains, draws)).worst()}
    out: dict[str, Any] = {
        "num_chains": chains, "num_draws": draws,
        "max_rhat": max(g["max_rhat"] for g in groups.values()),
        "min_ess_bulk": min(g["min_ess_bulk"] for g in groups.values()),
        "min_ess_tail": min(g["min_ess_tail"] for g in groups.values()),
        "divergences": int(result.divergences.sum()),
        "divergences_per_chain": result.divergences.sum(1).tolist(),
        "groups": groups, "pixel_indices": index.tolist(),
    }
    if result.step_sizes is not None:
        out["step_sizes"] = result.step_sizes.tolist()
    if result.num_steps is not None:
        out["mean_tree_depth"] = float(result.tree_depths.double().mean())
        out["max_tree_depth_reached"] = int(result.tree_depths.max())
        out["mean_leapfrog_steps"] = float(result.num_steps.double().mean())
    return out


@dataclass
class Coverage:
    """Fraction of true pixels inside their central ``level`` credible interval, and the per-pixel map."""

    level: float
    fraction: float
    inside: torch.Tensor


def credible_interval_coverage(posterior: Posterior, truth: torch.Tensor, level: float = 0.9,
                               num_samples: int = 500, seed: int = 0) -> Coverage:
    """Empirical coverage of per-pixel central credible intervals (from sample quantiles)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    images = posterior.sample(num_samples, seed=seed).images
    truth = truth.reshape(images.shape[1:]).cpu()
    lo = torch.quantile(images, (1 - level) / 2, dim=0)
    hi = torch.quantile(images, (1 + level) / 2, dim=0)
    inside = (truth >= lo) & (truth <= hi)
    return Coverage(level, inside.float().mean().item(), inside)


def compare(results: dict[str, Result], model: BRGMModel, truth: torch.Tensor | None = None,
            num_samples: int = 200, khat_particles: int = 500, seed: int = 0) -> list[dict[str, Any]]:
    """One row per method: data fit (RMSE of f(G(w)) to the observed values, 0-255), distance of
    the reconstruction (posterior mean image) to the truth, posterior spread (mean per-pixel std
    of G(w)), k-hat (VI), wall time.  Print with ``format_table``.

    A model with latent sites besides w adds, per site, its posterior mean (MAP: the estimate) as
    column ``site`` and its central 90% interval as ``site 90%`` (lower, upper); the data fit then
    uses the corruption at the posterior mean of its parameters."""
    rows = []
    obs, mask = model.observation.cpu(), None if model.mask is None else model.mask.cpu()
    for name, result in results.items():
        spread, khat = 0.0, None
        if isinstance(result, MAPResult):
            image, wall = result.image.cpu(), result.history.wall_seconds
        else:
            posterior = result.posterior if isinstance(result, MCMCResult) else result
            stats = posterior.pixel_statistics(num_samples, seed=seed)
            image, spread = stats.mean.unsqueeze(0), float(stats.std.mean())
            wall = result.wall_seconds if isinstance(result, MCMCResult) else result.history.wall_seconds
            if isinstance(result, VIPosterior):
                khat = psis_khat(result, khat_particles)
        summary = parameter_summary(result, num_draws=num_samples, seed=seed)
        corruption_sites = model.corruption.latent_parameters()
        bound = {k: torch.tensor(v["mean"], device=model.observation.device) for k, v in summary.items()
                 if k in corruption_sites}
        with torch.no_grad():
            fitted = corrupt(model.corruption, image.to(model.observation.device), bound).cpu()[0]
        row = {"method": name, "data_fit_rmse": float(rmse_255(fitted, obs, mask)),
               "truth_rmse": None if truth is None else float(rmse_255(image, truth.reshape(image.shape).cpu())),
               "posterior_std": spread, "k_hat": khat, "wall_seconds": wall}
        for site, entry in summary.items():
            row[site] = entry["mean"]
            row[f"{site} 90%"] = None if entry["lower"] is None else (entry["lower"], entry["upper"])
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of ``compare`` rows."""
    if not rows:
        return ""
    keys = list(rows[0])
    def fmt(v: Any) -> str:
        if isinstance(v, tuple):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)
