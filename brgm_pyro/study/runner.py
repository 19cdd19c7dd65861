"""Simulation-based calibration of posterior methods (Talts et al., 2018): run every method on every
simulated problem and measure its calibration::

    problems = simulate_problems(G, SuperResolution(4), 20, sigma_pixel=0.1)
    report = calibrate(problems, ["map", "vi-meanfield"], num_draws=256)
    print(report.table()); report.to_json("calibration.json"); report.figure("calibration.png")

On problems drawn from the model itself, a correct posterior p(w | y) covers the truth at the
nominal rate: on average over problems, a central interval of level ``a`` holds the true value with
probability ``a``, and the rank of the true value among L posterior draws is uniform on 0..L.
``calibrate`` passes each method only the ``options`` its signature accepts (e.g. ``num_steps``) and
records which it used.  Standard errors are computed across problems.

Per-coordinate intervals can hold while the joint distribution is wrong (a Gaussian tangent to a
curved posterior).  For posteriors with a density (``q.log_prob``), ``joint_density_test`` also
ranks the truth's log q among the draws': the share of problems whose truth lies in q's a-highest-
density region ("joint coverage", a for the posterior) and z, the truth's standardised log q.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from tqdm.auto import tqdm

from .measures import DEFAULT_LEVELS, SBCQuantities, json_safe, measure_problem
from .methods import PosteriorMethod, resolve_methods
from .problems import CalibrationProblem
from .report import CalibrationReport

__all__ = ["calibrate"]


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
    jobs = [(p, name) for p in problems for name in resolved]
    for problem, name in tqdm(jobs, disable=not progress, desc="calibrate", leave=False):
        records[name].append(measure_problem(problem, name, resolved[name], levels=levels, num_draws=num_draws,
                                             sbc_draws=sbc_draws, quantities=quantities, seed=seed,
                                             options=options))
    info = {"sbc_quantities": {"latent_index": quantities.latent_index, "pixel_index": quantities.pixel_index},
            "options": options}
    info.update(settings or {})
    return CalibrationReport(levels, num_draws, sbc_draws, seed, records, json_safe(info))
