"""Inference for BRGM (imported as ``brgm_pyro.inference``): guides, MAP / VI / Laplace / multi-start /
MCMC runners, posteriors, widening and diagnostics."""

from .auxiliary import AuxiliaryGuide, with_auxiliary
from .diagnostics import (
    ChainStatistics, Coverage, chain_statistics, compare, credible_interval_coverage, format_table,
    mcmc_convergence, mcmc_summary, psis_khat, to_inference_data,
)
from .ensemble import LatentMixture, MixturePosterior, estimate_elbo, fit_ensemble
from .guides import (
    GUIDES, AutoGuideAdapter, CallableGuide, FlowGuide, GaussianGuide, ImageStack, LatentDistribution, LatentGuide,
    MultivariateGaussianGuide, SharedGaussianGuide, StandardNormalNoise, gaussian_guide_at, make_guide,
)
from .importance import ImportancePosterior, importance_resample, log_joint, psis_smooth
from .intervals import (
    DEFAULT_FACTORS, INTERVAL_DRAWS, central_interval, coverage_by_factor, interval_coverage_by_factor,
    posterior_intervals, widen_interval,
)
from .laplace import LaplacePosterior, fit_laplace, laplace_approximation, output_jacobian
from .map import MAPResult, map_estimate
from .mcmc import MCMCResult, run_mcmc
from .multistart import (
    fit_multistart_flow, fit_multistart_fullrank, fit_multistart_laplace, multistart_containing_map, multistart_map,
)
from .nuts import (
    AUTOGUIDE_KINDS, GuideFit, NUTSSettings, fit_autoguide, run_adapted_nuts, run_neutra, run_preconditioned_nuts,
)
from .parameters import parameter_draws, parameter_summary
from .posterior import InferenceResult, PixelStatistics, Posterior, PosteriorSamples, single_image_model
from .quantities import log_likelihood, unknown_region
from .recommended import (
    RECOMMENDED_KEEP, RECOMMENDED_STARTS, RECOMMENDED_VI_STEPS, calibrated_config, calibrated_model,
    fit_recommended_posterior,
)
from .run import MethodOptions, MethodOutput, run_method, run_methods
from .vi import PENALTY_WEIGHTINGS, InverseGammaPenalty, VIPosterior, fit_vi
from .warm_start import fullrank_at, fullrank_from_laplace, map_then_laplace, vi_from_map
from .widening import check_interval_scale, widen, widen_distribution

__all__ = [
    # guides
    "GUIDES", "AutoGuideAdapter", "AuxiliaryGuide", "CallableGuide", "FlowGuide", "GaussianGuide", "ImageStack",
    "LatentDistribution", "LatentGuide", "MultivariateGaussianGuide", "SharedGaussianGuide", "StandardNormalNoise",
    "gaussian_guide_at", "make_guide", "with_auxiliary",
    # runners
    "MAPResult", "map_estimate", "InverseGammaPenalty", "PENALTY_WEIGHTINGS", "VIPosterior", "fit_vi",
    "LaplacePosterior", "fit_laplace", "laplace_approximation", "output_jacobian",
    "fullrank_at", "fullrank_from_laplace", "map_then_laplace", "vi_from_map",
    "fit_multistart_flow", "fit_multistart_fullrank", "fit_multistart_laplace", "multistart_containing_map",
    "multistart_map",
    "LatentMixture", "MixturePosterior", "estimate_elbo", "fit_ensemble",
    "ImportancePosterior", "importance_resample", "log_joint", "psis_smooth",
    "MCMCResult", "run_mcmc", "AUTOGUIDE_KINDS", "GuideFit", "NUTSSettings", "fit_autoguide", "run_adapted_nuts",
    "run_neutra", "run_preconditioned_nuts",
    # one way to run a method, and the recommended posterior
    "MethodOptions", "MethodOutput", "run_method", "run_methods",
    "RECOMMENDED_KEEP", "RECOMMENDED_STARTS", "RECOMMENDED_VI_STEPS", "calibrated_config", "calibrated_model",
    "fit_recommended_posterior",
    # posteriors and widening
    "InferenceResult", "PixelStatistics", "Posterior", "PosteriorSamples", "single_image_model",
    "check_interval_scale", "widen", "widen_distribution",
    # pixel intervals and their calibration factors
    "DEFAULT_FACTORS", "INTERVAL_DRAWS", "central_interval", "coverage_by_factor", "interval_coverage_by_factor",
    "posterior_intervals",
    "widen_interval",
    # diagnostics
    "ChainStatistics", "Coverage", "chain_statistics", "compare", "credible_interval_coverage", "format_table",
    "mcmc_convergence", "mcmc_summary", "psis_khat", "to_inference_data", "log_likelihood", "unknown_region",
    "parameter_draws", "parameter_summary",
]
