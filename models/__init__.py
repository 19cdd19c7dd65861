"""The Pyro models of BRGM: priors, likelihoods and the composed model (imported as ``brgm_pyro.models``)."""

from brgm_pyro.corruptions.latent import LatentParameter

from .brgm import (
    BRGMModel, brgm_model, check_observation, corrupt, default_config, generate, released_config,
    sample_corruption_parameters,
)
from .config import BRGMConfig, released_lambda_colin, weight_overrides
from .likelihoods import PerceptualLikelihood, PixelLikelihood, learn_noise
from .noise import inverse_gamma_on_variance, perceptual_noise_prior, pixel_noise_prior
from .misfit import MisfitPixelLikelihood, misfit_likelihood, operator_matrix, point_images, predictive_images
from .priors import (
    ColinearityPrior, GaussianLatentPrior, LatentPrior, LayerCorrelatedPrior, LocationScaleLatentPrior,
    SharedLatentPrior,
    StudentTLatentPrior, pairwise_cosines,
)

__all__ = [
    "BRGMModel", "brgm_model", "released_config", "check_observation", "corrupt", "generate", "BRGMConfig",
    "released_lambda_colin", "PerceptualLikelihood", "PixelLikelihood", "ColinearityPrior",
    "GaussianLatentPrior", "LayerCorrelatedPrior", "SharedLatentPrior", "StudentTLatentPrior", "LatentPrior",
    "LocationScaleLatentPrior",
    "pairwise_cosines",
    "LatentParameter", "sample_corruption_parameters", "inverse_gamma_on_variance", "perceptual_noise_prior",
    "pixel_noise_prior", "learn_noise", "default_config", "weight_overrides",
    "MisfitPixelLikelihood", "misfit_likelihood", "operator_matrix", "point_images", "predictive_images",
]
