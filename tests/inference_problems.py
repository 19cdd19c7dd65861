"""Small inference problems with known answers, shared by the model and inference tests."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from brgm_pyro.corruptions import Denoising
from brgm_pyro.generators import LinearGenerator
from brgm_pyro.inference import LatentDistribution, Posterior
from brgm_pyro.models import BRGMModel, GaussianLatentPrior, PixelLikelihood


@dataclass
class LinearGaussianProblem:
    """y = A w + b + N(0, sigma^2), w ~ N(mu, s^2 I): the posterior is N(mean, cov) in closed form."""

    model: BRGMModel
    mean: torch.Tensor  # (L*D,)
    cov: torch.Tensor  # (L*D, L*D)
    log_evidence: float = float("nan")  # log p(y) = log N(y | A mu + b, s^2 A A^T + sigma^2 I)

    @property
    def std(self) -> torch.Tensor:
        return self.cov.diagonal().sqrt()


def linear_gaussian_problem(diagonal: bool = True, sigma: float = 0.3, prior_std: float = 1.0,
                            seed: int = 0) -> LinearGaussianProblem:
    """num_ws=2, w_dim=3, 4x4 grayscale images.  ``diagonal``: A has orthogonal columns, so the
    posterior covariance is diagonal and a mean-field Gaussian can represent it exactly."""
    g = torch.Generator().manual_seed(seed)
    L, D, n = 2, 3, 16
    if diagonal:
        q, _ = torch.linalg.qr(torch.randn(n, L * D, generator=g, dtype=torch.float64))
        A = q * torch.linspace(0.2, 1.5, L * D, dtype=torch.float64)
    else:
        A = torch.randn(n, L * D, generator=g, dtype=torch.float64) * 0.4
    b = torch.randn(n, generator=g, dtype=torch.float64) * 0.1
    G = LinearGenerator(A.float(), b.float(), L, D, 4, 1)
    mu = torch.randn(D, generator=g, dtype=torch.float64) * 0.3
    w_true = torch.randn(L * D, generator=g, dtype=torch.float64)
    y = A @ w_true + b + sigma * torch.randn(n, generator=g, dtype=torch.float64)
    prior = GaussianLatentPrior(mu.float(), prior_std, L)
    model = BRGMModel(G, Denoising(), y.float().reshape(1, 4, 4), prior, None, (PixelLikelihood(sigma),))
    mu_full = mu.repeat(L)
    precision = torch.eye(L * D, dtype=torch.float64) / prior_std**2 + A.T @ A / sigma**2
    cov = torch.linalg.inv(precision)
    mean = cov @ (mu_full / prior_std**2 + A.T @ (y - b) / sigma**2)
    marginal = torch.distributions.MultivariateNormal(
        A @ mu_full + b, prior_std**2 * A @ A.T + sigma**2 * torch.eye(n, dtype=torch.float64))
    return LinearGaussianProblem(model, mean, cov, float(marginal.log_prob(y)))


# --- calibration problems of the linear generator (tests/test_calibration.py, test_recalibration.py)


def linear_generator() -> LinearGenerator:
    return LinearGenerator.random(num_ws=2, w_dim=3, img_resolution=4, scale=0.4, seed=1)


def half_mask() -> torch.Tensor:
    mask = torch.ones(1, 4, 4)
    mask[..., :, :2] = 0  # the left half is hidden
    return mask


def exact_linear_posterior(shrink: float = 1.0):
    """The closed-form Gaussian posterior of the linear model (std multiplied by ``shrink``),
    computed here from A, b, the prior and the corruption's matrix (its response to unit images)."""
    def method(model, seed):
        G = model.generator
        A, b = G.A.double(), G.b.double()
        n_pix = A.shape[0]
        basis = torch.eye(n_pix, dtype=torch.float64).reshape(n_pix, *model.image_shape)
        F = model.corruption.double()(basis).reshape(n_pix, -1).T  # (outputs, pixels)
        model.corruption.float()
        observed = torch.ones(F.shape[0], dtype=torch.bool) if model.mask is None else model.mask.reshape(-1) > 0
        H = (F @ A)[observed]
        y = model.observation.double().reshape(-1)[observed] - (F @ b)[observed]
        sigma = model.likelihoods[0].sigma
        mu0 = model.prior.mean.double().reshape(-1)
        prec0 = model.prior.std.double().reshape(-1) ** -2
        cov = torch.linalg.inv(torch.diag(prec0) + H.T @ H / sigma**2)
        mean = cov @ (prec0 * mu0 + H.T @ y / sigma**2)
        chol = torch.linalg.cholesky(cov) * shrink
        shape = model.prior.mean.shape

        def sample_latents(n: int) -> torch.Tensor:
            eps = torch.randn(n, mean.numel(), dtype=torch.float64)
            return (mean + eps @ chol.T).float().reshape(n, *shape)

        posterior = Posterior(model, sample_latents, mean.float().reshape(shape))
        # its density, for the joint (HPD) test
        posterior.q = LatentDistribution(torch.distributions.MultivariateNormal(mean.float(), scale_tril=chol.float()),
                                         shape, mean.float().reshape(shape))
        return posterior

    return method


def load_benchmark(name: str):
    """The script benchmarks/NAME.py as the module ``benchmarks.NAME`` (benchmarks/ is a package; the
    tests run from the repository root, ``python -m pytest``)."""
    import importlib

    return importlib.import_module(f"benchmarks.{name}")
