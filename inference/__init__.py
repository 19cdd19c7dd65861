"""Inference for BRGM: guides, MAP / SVI / MCMC runners and diagnostics (imported as ``brgm_pyro.inference``)."""

from .auxiliary import AuxiliaryGuide, gaussian_guide_at, with_auxiliary
from .diagnostics import (
    Coverage, compare, credible_interval_coverage, format_table, mcmc_summary, psis_khat, to_inference_data,
)
from .guides import GUIDES, GaussianGuide, SharedGaussianGuide, make_guide
from .map import MAPResult, map_estimate
from .mcmc import MCMCResult, run_mcmc
from .parameters import parameter_draws, parameter_summary
from .posterior import PixelStatistics, Posterior, PosteriorSamples
from .vi import InverseGammaPenalty, VIPosterior, fit_vi

__all__ = [
    "Coverage", "compare", "credible_interval_coverage", "format_table", "mcmc_summary", "psis_khat",
    "to_inference_data", "GUIDES", "GaussianGuide", "SharedGaussianGuide", "make_guide", "MAPResult",
    "map_estimate", "MCMCResult", "run_mcmc", "PixelStatistics", "Posterior", "PosteriorSamples",
    "InverseGammaPenalty", "VIPosterior", "fit_vi", "AuxiliaryGuide", "gaussian_guide_at", "with_auxiliary", "parameter_draws",
    "parameter_summary",
]

from .calibration import CalibrationProblem, CalibrationReport, calibrate, simulate_problems  # noqa: E402

__all__ += ["CalibrationProblem", "CalibrationReport", "calibrate", "simulate_problems"]
