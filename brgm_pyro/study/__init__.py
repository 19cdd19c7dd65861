"""The calibration study (imported as ``brgm_pyro.study``): problems simulated from the model, the
simulation-based calibration (SBC) and coverage measurements of posterior methods and their report,
the fit of the interval scale, and the table of the named method configurations (``METHODS``).
It sits above the algorithms (``brgm_pyro.inference``) and below the application."""

from .interval_scale import (
    BUNDLED_INTERVAL_SCALES, DEFAULT_SCALES, ScaleFit, ScaleProblem, choose_scale, coverage_by_scale,
    fit_interval_scale, fit_method_interval_scale, widened,
)
from .measures import DEFAULT_LEVELS, SBCQuantities, interval_coverage, joint_density_test, measure_problem
from .methods import METHODS, PosteriorMethod, accepted_options, methods_from, resolve_methods
from .problems import CalibrationProblem, derive_seed, problem_model, simulate_problem, simulate_problems
from .report import CalibrationReport
from .runner import calibrate
from .statistics import chi_square_uniformity, rank_bins, sbc_summary, summarize_method

__all__ = [
    "BUNDLED_INTERVAL_SCALES", "CalibrationProblem", "CalibrationReport", "DEFAULT_LEVELS", "DEFAULT_SCALES",
    "METHODS", "PosteriorMethod", "SBCQuantities", "ScaleFit", "ScaleProblem", "accepted_options", "calibrate",
    "chi_square_uniformity", "choose_scale", "coverage_by_scale", "derive_seed", "fit_interval_scale",
    "fit_method_interval_scale", "interval_coverage", "joint_density_test", "measure_problem", "methods_from",
    "problem_model",
    "rank_bins", "resolve_methods", "sbc_summary", "simulate_problem", "simulate_problems", "summarize_method",
    "widened",
]
