"""Inference for BRGM: guides, MAP / SVI / MCMC runners and diagnostics (imported as ``brgm_pyro.inference``)."""

from . import multistart, vi_methods  # noqa: F401 - register the posterior methods in calibration.METHODS
from .auxiliary import AuxiliaryGuide, gaussian_guide_at, with_auxiliary
from .calibration import CalibrationProblem, CalibrationReport, calibrate, simulate_problems
from .diagnostics import (
    ChainStatistics, Coverage, chain_statistics, compare, credible_interval_coverage, format_table,
    mcmc_convergence, mcmc_summary, psis_khat, to_inference_data,
)
from .ensemble import LatentMixture, MixturePosterior, estimate_elbo, fit_ensemble
from .guides import (
    GUIDES, AutoGuideAdapter, CallableGuide, FlowGuide, GaussianGuide, ImageStack, LatentDistribution, LatentGuide,
    MultivariateGaussianGuide, SharedGaussianGuide, StandardNormalNoise, make_guide,
)
from .importance import ImportancePosterior, importance_resample, log_joint, psis_smooth
from .laplace import LaplacePosterior, fit_laplace, laplace_approximation, output_jacobian
from .map import MAPResult, map_estimate
from .mcmc import MCMCResult, run_mcmc
from .neutra import AUTOGUIDE_KINDS, FittedAutoguide, fit_autoguide, run_neutra, run_preconditioned_nuts
from .parameters import parameter_draws, parameter_summary
from .posterior import PixelStatistics, Posterior, PosteriorSamples, single_image_model
from .recommended import RECOMMENDED_STARTS, calibrated_model, fit_recommended_posterior
from .run import MethodOptions, MethodOutput, run_method, run_methods
from .vi import PENALTY_WEIGHTINGS, InverseGammaPenalty, VIPosterior, fit_vi

__all__ = [
    "ChainStatistics", "chain_statistics", "mcmc_convergence", "AUTOGUIDE_KINDS",
    "FittedAutoguide", "fit_autoguide", "run_neutra", "run_preconditioned_nuts",
    "Coverage", "compare", "credible_interval_coverage", "format_table", "mcmc_summary", "psis_khat",
    "to_inference_data", "GUIDES", "GaussianGuide", "SharedGaussianGuide", "make_guide", "MAPResult",
    "map_estimate", "MCMCResult", "run_mcmc", "PixelStatistics", "Posterior", "PosteriorSamples",
    "InverseGammaPenalty", "VIPosterior", "fit_vi", "PENALTY_WEIGHTINGS",
    "AuxiliaryGuide", "gaussian_guide_at", "with_auxiliary", "parameter_draws", "parameter_summary",
    "FlowGuide", "LatentDistribution", "LatentGuide", "AutoGuideAdapter", "CallableGuide", "ImageStack",
    "StandardNormalNoise", "single_image_model", "MultivariateGaussianGuide", "LatentMixture", "MixturePosterior",
    "estimate_elbo", "fit_ensemble", "ImportancePosterior", "importance_resample", "log_joint", "psis_smooth",
    "LaplacePosterior", "fit_laplace", "laplace_approximation", "output_jacobian",
    "RECOMMENDED_STARTS", "calibrated_model", "fit_recommended_posterior",
    "MethodOptions", "MethodOutput", "run_method", "run_methods",
]

__all__ += ["CalibrationProblem", "CalibrationReport", "calibrate", "simulate_problems"]
