"""Inference for BRGM: guides, MAP / SVI / MCMC runners and diagnostics (imported as ``brgm_pyro.inference``)."""

from .diagnostics import (
    Coverage, compare, credible_interval_coverage, format_table, mcmc_summary, psis_khat, to_inference_data,
)
from .guides import GUIDES, GaussianGuide, SharedGaussianGuide, make_guide
from .map import MAPResult, map_estimate
from .mcmc import MCMCResult, run_mcmc
from .posterior import PixelStatistics, Posterior, PosteriorSamples
from .vi import InverseGammaPenalty, VIPosterior, fit_vi

__all__ = [
    "Coverage", "compare", "credible_interval_coverage", "format_table", "mcmc_summary", "psis_khat",
    "to_inference_data", "GUIDES", "GaussianGuide", "SharedGaussianGuide", "make_guide", "MAPResult",
    "map_estimate", "MCMCResult", "run_mcmc", "PixelStatistics", "Posterior", "PosteriorSamples",
    "InverseGammaPenalty", "VIPosterior", "fit_vi",
]

from .calibration import CalibrationProblem, CalibrationReport, calibrate, simulate_problems  # noqa: E402

__all__ += ["CalibrationProblem", "CalibrationReport", "calibrate", "simulate_problems"]
