"""Inference for BRGM: guides, MAP / SVI / MCMC runners and diagnostics (imported as ``brgm_pyro.inference``)."""

from .diagnostics import (
    ChainStatistics, Coverage, chain_statistics, compare, credible_interval_coverage, format_table,
    mcmc_convergence, mcmc_summary, psis_khat, to_inference_data,
)
from .guides import GUIDES, GaussianGuide, SharedGaussianGuide, make_guide
from .map import MAPResult, map_estimate
from .mcmc import MCMCResult, run_mcmc
from .neutra import AUTOGUIDE_KINDS, FittedAutoguide, fit_autoguide, run_neutra, run_preconditioned_nuts
from .posterior import PixelStatistics, Posterior, PosteriorSamples
from .vi import InverseGammaPenalty, VIPosterior, fit_vi

__all__ = [
    "ChainStatistics", "chain_statistics", "mcmc_convergence", "AUTOGUIDE_KINDS",
    "FittedAutoguide", "fit_autoguide", "run_neutra", "run_preconditioned_nuts",
    "Coverage", "compare", "credible_interval_coverage", "format_table", "mcmc_summary", "psis_khat",
    "to_inference_data", "GUIDES", "GaussianGuide", "SharedGaussianGuide", "make_guide", "MAPResult",
    "map_estimate", "MCMCResult", "run_mcmc", "PixelStatistics", "Posterior", "PosteriorSamples",
    "InverseGammaPenalty", "VIPosterior", "fit_vi",
]

from .calibration import CalibrationProblem, CalibrationReport, calibrate, simulate_problems  # noqa: E402

__all__ += ["CalibrationProblem", "CalibrationReport", "calibrate", "simulate_problems"]
