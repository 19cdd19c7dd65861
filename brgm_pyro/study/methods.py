"""The named posterior methods of the calibration study, in one table (``METHODS``).

A *posterior method* is a callable ``method(model, seed, **options) -> result`` (``measures``
says which results it may return); its name means one configuration, with its settings fixed
here (what the benchmarks measured).  Options a method declares (e.g. ``num_steps``) can be
set through ``calibrate(..., options=...)``.  To measure a method of your own, pass a mapping
``{"name": method}`` to ``calibrate`` (or add it to a copy of ``METHODS``).

- "map": MAP (Eq. 6), the authors' optimiser settings: a point estimate, the RMSE reference.
- "vi-meanfield": ``fit_vi``'s defaults, the paper's mean-field Gaussian with the sigma_v penalty
  (Eqs. 7-8); "vi-meanfield-nopenalty": the plain ELBO; "vi-meanfield-eq8": the penalty weighted
  as Eq. 8 is written (``weighting="eq8"``).
- "laplace": MAP (500 steps), then the linearised Laplace approximation N(w*, H^-1) at w*;
  "laplace-psis": it resampled with PSIS importance weights (1000 proposals).
- "vi-fullrank": MAP, Laplace, then the full-rank Gaussian guide fitted from the Laplace
  approximation, in its whitened coordinates (200 steps, 8 particles, lr 0.002 decayed 10x);
  "vi-fullrank-psis": it resampled with PSIS importance weights (1000 proposals).
- "vi-lowrank": MAP, then a rank-32 low-rank + diagonal Gaussian (400 steps, 8 particles);
  "vi-flow": MAP, then two IAF layers on a diagonal Gaussian (400 steps, 8 particles).
- "laplace-ensemble": 4 Laplace approximations at the modes reached by MAP (300 steps each)
  from 4 prior draws, weighted by their ELBO.
- "recommended": the recommended posterior as ``brgm`` fits it (``fit_recommended_posterior``,
  unwidened: 8 starts, the best 3 climbing on after 50 of 500 MAP steps, 100 VI steps).
- "multistart-laplace", "multistart-fullrank" (the recommended posterior's fit until session 11:
  all 8 starts x 500 MAP steps, 200 VI steps; the stored calibration records and the interval
  scales were measured with it), "multistart-fullrank-evidence" (the mode chosen by Laplace
  evidence), "multistart32-fullrank" (32 starts kept to 4), "multistart-fullrank-flow" (IAF
  layers on top): ``inference.multistart``.
- "nuts" (the reference sampler: NUTS with the Laplace covariance as dense mass matrix),
  "nuts-fullrank" (with the recommended posterior's covariance and starts) and its longer /
  deeper variants, "nuts-fullrank-adapted" (metric learnt from a pilot run), "neutra".
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Mapping, Sequence

from brgm_pyro.inference.diagnostics import mcmc_convergence
from brgm_pyro.inference.ensemble import MixturePosterior, fit_ensemble
from brgm_pyro.inference.importance import ImportancePosterior, importance_resample
from brgm_pyro.inference.laplace import LaplacePosterior
from brgm_pyro.inference.map import MAPResult, map_estimate
from brgm_pyro.inference.recommended import fit_recommended_posterior
from brgm_pyro.inference.mcmc import MCMCResult
from brgm_pyro.inference.multistart import fit_multistart_flow, fit_multistart_fullrank, fit_multistart_laplace
from brgm_pyro.inference.nuts import GuideFit, NUTSSettings, run_adapted_nuts, run_neutra, run_preconditioned_nuts
from brgm_pyro.inference.posterior import InferenceResult, Posterior
from brgm_pyro.inference.vi import InverseGammaPenalty, VIPosterior, fit_vi
from brgm_pyro.inference.warm_start import fullrank_from_laplace, map_then_laplace, vi_from_map
from brgm_pyro.models.brgm import BRGMModel

__all__ = ["METHODS", "PosteriorMethod", "accepted_options", "methods_from", "resolve_methods"]

PosteriorMethod = Callable[..., InferenceResult]  # (model, seed, **options) -> a runner's result


# --------------------------------------------------------------------------- MAP and VI


def map_point(model: BRGMModel, seed: int, num_steps: int = 500) -> MAPResult:
    """MAP (Eq. 6), the authors' optimiser settings: a point estimate, the RMSE reference."""
    return map_estimate(model, num_steps=num_steps, seed=seed, progress=False)


def vi_meanfield(model: BRGMModel, seed: int, num_steps: int = 500) -> Posterior:
    """``fit_vi`` with its defaults: the paper's mean-field Gaussian with the sigma_v penalty (Eqs. 7-8)."""
    return fit_vi(model, num_steps=num_steps, seed=seed, progress=False)


def vi_meanfield_nopenalty(model: BRGMModel, seed: int, num_steps: int = 500) -> Posterior:
    """The mean-field Gaussian fitted to the plain ELBO (Eq. 7, no sigma_v penalty)."""
    return fit_vi(model, num_steps=num_steps, seed=seed, progress=False, sigma_prior=None)


def vi_meanfield_eq8(model: BRGMModel, seed: int, num_steps: int = 500) -> VIPosterior:
    """The mean-field Gaussian with the sigma_v penalty weighted as Eq. 8 is written."""
    return fit_vi(model, num_steps=num_steps, seed=seed, progress=False,
                  sigma_prior=InverseGammaPenalty(weighting="eq8"))


def laplace(model: BRGMModel, seed: int) -> LaplacePosterior:
    """MAP (500 steps), then the Laplace approximation at its solution."""
    return map_then_laplace(model, seed)


def laplace_psis(model: BRGMModel, seed: int, num_proposals: int = 1000) -> ImportancePosterior:
    """"laplace" resampled with PSIS importance weights."""
    return importance_resample(map_then_laplace(model, seed), num_proposals=num_proposals, seed=seed)


def vi_fullrank(model: BRGMModel, seed: int) -> VIPosterior:
    """The full-rank Gaussian fitted from the Laplace approximation at the MAP from w_avg."""
    return fullrank_from_laplace(model, seed)


def vi_fullrank_psis(model: BRGMModel, seed: int, num_proposals: int = 1000) -> ImportancePosterior:
    """"vi-fullrank" resampled with PSIS importance weights."""
    return importance_resample(fullrank_from_laplace(model, seed), num_proposals=num_proposals, seed=seed)


def vi_lowrank(model: BRGMModel, seed: int) -> VIPosterior:
    """A rank-32 low-rank + diagonal Gaussian started at the MAP (400 steps)."""
    return vi_from_map(model, seed, "lowrank", 400, rank=32)


def vi_flow(model: BRGMModel, seed: int) -> VIPosterior:
    """Two IAF layers on a diagonal Gaussian started at the MAP (400 steps)."""
    return vi_from_map(model, seed, "flow", 400, num_flows=2)


def laplace_ensemble(model: BRGMModel, seed: int) -> MixturePosterior:
    """4 Laplace approximations at the modes reached by MAP (300 steps) from 4 prior draws, ELBO-weighted."""
    return fit_ensemble(model, num_components=4, guide="laplace", map_steps=300, seed=seed)


# --------------------------------------------------------------------------- multi-start


def multistart_laplace(model: BRGMModel, seed: int) -> LaplacePosterior:
    """The Laplace approximation at the best of 8 MAP modes (by log joint)."""
    return fit_multistart_laplace(model, seed=seed)[0]


def recommended(model: BRGMModel, seed: int) -> VIPosterior:
    """The recommended posterior with its defaults, unwidened (interval scale 1)."""
    return fit_recommended_posterior(model, seed=seed)


def multistart_fullrank(model: BRGMModel, seed: int) -> VIPosterior:
    """The recommended posterior's former fit: ``fit_multistart_fullrank`` with its defaults
    (8 starts x 500 MAP steps, 200 VI steps)."""
    return fit_multistart_fullrank(model, seed=seed)


def multistart_fullrank_evidence(model: BRGMModel, seed: int) -> VIPosterior:
    """``fit_multistart_fullrank`` with the mode chosen by its Laplace evidence."""
    return fit_multistart_fullrank(model, seed=seed, select="evidence")


def multistart32_fullrank(model: BRGMModel, seed: int) -> VIPosterior:
    """``fit_multistart_fullrank`` from 32 starts, the best 4 kept after 100 steps."""
    return fit_multistart_fullrank(model, seed=seed, num_starts=32, keep=4, screen_steps=100)


def multistart_fullrank_flow(model: BRGMModel, seed: int) -> VIPosterior:
    """``fit_multistart_flow`` with its defaults."""
    return fit_multistart_flow(model, seed=seed)


# --------------------------------------------------------------------------- NUTS


def nuts_reference(model: BRGMModel, seed: int, num_chains: int = 4, num_samples: int = 100, warmup_steps: int = 100,
                   max_tree_depth: int = 5, preconditioner: str = "laplace", init_spread: float = 1.0,
                   target_accept_prob: float = 0.8) -> MCMCResult:
    """The reference sampler of the calibration benchmark: ``run_preconditioned_nuts`` (MAP +
    Gauss-Newton Laplace covariance as dense mass matrix, starts drawn from it) with its
    convergence (``mcmc_convergence``: R-hat / ESS of latents, 64 unknown-region pixels and the
    log-likelihood) in ``diagnostics``."""
    settings = NUTSSettings(num_chains, num_samples, warmup_steps, max_tree_depth, target_accept_prob, seed)
    result = run_preconditioned_nuts(model, settings, guide=preconditioner, init_spread=init_spread)
    result.diagnostics.update(_settings(result), **mcmc_convergence(result, seed=seed))
    return result


def nuts_fullrank(model: BRGMModel, seed: int, num_chains: int = 4, num_samples: int = 200, warmup_steps: int = 150,
                  max_tree_depth: int = 6) -> MCMCResult:
    """``nuts_reference`` with the covariance and starts of the recommended posterior
    (multi-start MAP, Laplace, full-rank VI) instead of the Laplace approximation at one MAP."""
    return nuts_reference(model, seed, num_chains=num_chains, num_samples=num_samples, warmup_steps=warmup_steps,
                          max_tree_depth=max_tree_depth, preconditioner="multistart-fullrank")


def nuts_fullrank_long(model: BRGMModel, seed: int) -> MCMCResult:
    """``nuts-fullrank`` with twice the draws (4 x (300 warmup + 400 draws)) and target acceptance
    0.9 (smaller steps, against the divergences seen at 0.8): about 2.5x its cost."""
    return nuts_reference(model, seed, num_chains=4, num_samples=400, warmup_steps=300, max_tree_depth=6,
                          preconditioner="multistart-fullrank", target_accept_prob=0.9)


def nuts_fullrank_depth7(model: BRGMModel, seed: int) -> MCMCResult:
    """``nuts-fullrank`` with trees up to depth 7 (127 leapfrog steps) and 4 x (300 warmup + 500
    draws), target acceptance 0.8: for in-painting, where every depth-6 tree hits the limit."""
    return nuts_reference(model, seed, num_chains=4, num_samples=500, warmup_steps=300, max_tree_depth=7,
                          preconditioner="multistart-fullrank", target_accept_prob=0.8)


def nuts_fullrank_depth7_short(model: BRGMModel, seed: int) -> MCMCResult:
    """``nuts-fullrank-depth7`` with 4 x (150 warmup + 300 draws), 0.56x its cost: the metric is
    fixed, so warmup only adapts the step size, and depth 7 gave ~0.2 bulk ESS per draw."""
    return nuts_reference(model, seed, num_chains=4, num_samples=300, warmup_steps=150, max_tree_depth=7,
                          preconditioner="multistart-fullrank", target_accept_prob=0.8)


def nuts_fullrank_adapted(model: BRGMModel, seed: int) -> MCMCResult:
    """``run_adapted_nuts``: a pilot of 4 x (100 + 100) with the recommended posterior's metric,
    then 4 x (100 warmup + 300 draws) with the metric learnt from the pilot; depth 6."""
    settings = NUTSSettings(num_chains=4, num_samples=300, warmup_steps=100, max_tree_depth=6, seed=seed)
    result = run_adapted_nuts(model, settings, pilot_warmup=100, pilot_samples=100)
    result.diagnostics.update(_settings(result), pilot=result.info["pilot"], **mcmc_convergence(result, seed=seed))
    return result


def neutra_fullrank(model: BRGMModel, seed: int, num_chains: int = 4, num_samples: int = 200, warmup_steps: int = 150,
                    max_tree_depth: int = 6, guide_steps: int = 1500) -> MCMCResult:
    """``run_neutra`` with a full-rank Gaussian guide, diagnostics as for "nuts"."""
    settings = NUTSSettings(num_chains, num_samples, warmup_steps, max_tree_depth, seed=seed)
    result = run_neutra(model, "fullrank", settings, GuideFit(num_steps=guide_steps))
    result.diagnostics.update(_settings(result), **mcmc_convergence(result, seed=seed))
    return result


def _settings(result: MCMCResult) -> dict[str, Any]:
    keep = {k: v for k, v in result.info.items() if isinstance(v, (str, int, float))}
    return {**keep, "setup_seconds": result.setup_seconds, "chain_seconds": result.chain_seconds.tolist(),
            "accept_probs": result.accept_probs.tolist()}


METHODS: dict[str, PosteriorMethod] = {
    "map": map_point,
    "vi-meanfield": vi_meanfield,
    "vi-meanfield-nopenalty": vi_meanfield_nopenalty,
    "vi-meanfield-eq8": vi_meanfield_eq8,
    "laplace": laplace,
    "laplace-psis": laplace_psis,
    "vi-fullrank": vi_fullrank,
    "vi-fullrank-psis": vi_fullrank_psis,
    "vi-lowrank": vi_lowrank,
    "vi-flow": vi_flow,
    "laplace-ensemble": laplace_ensemble,
    "recommended": recommended,
    "multistart-laplace": multistart_laplace,
    "multistart-fullrank": multistart_fullrank,
    "multistart-fullrank-evidence": multistart_fullrank_evidence,
    "multistart32-fullrank": multistart32_fullrank,
    "multistart-fullrank-flow": multistart_fullrank_flow,
    "nuts": nuts_reference,
    "nuts-fullrank": nuts_fullrank,
    "nuts-fullrank-long": nuts_fullrank_long,
    "nuts-fullrank-depth7": nuts_fullrank_depth7,
    "nuts-fullrank-depth7-short": nuts_fullrank_depth7_short,
    "nuts-fullrank-adapted": nuts_fullrank_adapted,
    "neutra": neutra_fullrank,
}
"""Every named configuration of the study, name -> method (the one place they are listed)."""


def resolve_methods(methods: Mapping[str, PosteriorMethod] | Sequence[str] | str,
                    table: Mapping[str, PosteriorMethod] = METHODS) -> dict[str, PosteriorMethod]:
    """Names (from ``table``, by default ``METHODS``; a comma-separated string is split) or a mapping
    name -> method."""
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    if isinstance(methods, Mapping):
        out = dict(methods)
    else:
        unknown = [m for m in methods if m not in table]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; known: {', '.join(sorted(table))}")
        out = {m: table[m] for m in methods}
    if not out:
        raise ValueError("no methods given")
    return out


def methods_from(modules: Sequence[str]) -> dict[str, PosteriorMethod]:
    """``METHODS`` and the ``METHODS`` dict (name -> method) of each named module (later ones win): how
    ``brgm calibrate --import`` adds methods of your own."""
    table = dict(METHODS)
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is None or not (name == err.name or name.startswith(err.name + ".")):
                raise  # the module exists but one of its own imports is missing: a real error, with its traceback
            raise ValueError(f"no module named {name!r} to import methods from (a module on the Python path, "
                             "e.g. my_methods for my_methods.py in the current folder)") from None
        extra = getattr(module, "METHODS", None)
        if not isinstance(extra, Mapping):
            raise ValueError(f"module {name!r} has no METHODS dict (name -> method) to add")
        table.update(extra)
    return table


def accepted_options(method: PosteriorMethod, options: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``options`` that ``method`` takes as keyword arguments (all of them if it takes ``**kwargs``)."""
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return dict(options)
    names = {p.name for p in params}
    return {k: v for k, v in options.items() if k in names}
