"""The ``LatentPrior`` contract: a prior that subclasses nothing works with ``BRGMModel``."""

from __future__ import annotations

from dataclasses import replace

import pyro
import pyro.distributions as dist
import pytest
import torch

from brgm_pyro.inference import map_estimate
from brgm_pyro.models import (
    GaussianLatentPrior, LatentPrior, SharedLatentPrior, StudentTLatentPrior,
)

from .inference_problems import linear_gaussian_problem


class WhitenedPrior:
    """z ~ N(0, I) on a flat site "z" of L*D elements; ws = mean + std * reshape(z, (L, D)).

    The same prior on ws as ``GaussianLatentPrior(mean, std, L)``, parameterised differently:
    written against the protocol only (no base class).
    """

    site = "z"

    def __init__(self, mean: torch.Tensor, std: float, num_ws: int) -> None:
        self.mean, self.std, self.num_ws = mean, std, num_ws
        self.dim = num_ws * mean.shape[-1]

    def __call__(self) -> torch.Tensor:
        z = pyro.sample(self.site, dist.Normal(torch.zeros(self.dim), 1.0).to_event(1))
        return self.ws_from_latent(z)

    def init_loc(self) -> torch.Tensor:
        return torch.zeros(self.dim)

    def init_scale(self) -> torch.Tensor:
        return torch.ones(self.dim)

    def ws_from_latent(self, value: torch.Tensor) -> torch.Tensor:
        return self.mean + self.std * value.reshape(*value.shape[:-1], self.num_ws, -1)


def test_a_prior_that_subclasses_nothing_gives_the_closed_form_map():
    problem = linear_gaussian_problem(diagonal=False)
    gaussian = problem.model.prior
    prior = WhitenedPrior(gaussian.mean[0], float(gaussian.std[0, 0]), gaussian.num_ws)
    assert isinstance(prior, LatentPrior)
    model = replace(problem.model, prior=prior)
    result = map_estimate(model, num_steps=1500, lr=0.02, progress=False)
    assert result.latent.shape == (6,) and result.ws.shape == (2, 3)
    assert set(result.terms) == {"z", "obs_pixel"}
    # Same posterior on ws as the Gaussian prior's closed form, reached through the custom site.
    torch.testing.assert_close(result.ws.flatten().double(), problem.mean, atol=2e-3, rtol=0)
    # Step 0 starts at z = 0: the prior term is -log N(0; 0, I) = (n / 2) log(2 pi).
    assert result.terms["z"][0] == pytest.approx(3 * torch.log(torch.tensor(2 * torch.pi)).item(), rel=1e-5)


def test_an_incomplete_prior_is_refused_naming_what_it_lacks():
    problem = linear_gaussian_problem()

    class NoScale:
        site = "w"

        def __call__(self) -> torch.Tensor:
            return torch.zeros(2, 3)

        def init_loc(self) -> torch.Tensor:
            return torch.zeros(2, 3)

        def ws_from_latent(self, value: torch.Tensor) -> torch.Tensor:
            return value

    with pytest.raises(TypeError, match="LatentPrior.*init_scale"):
        replace(problem.model, prior=NoScale())


def test_the_shipped_priors_meet_the_contract_without_a_gaussian_base():
    mean = torch.randn(3)
    student = StudentTLatentPrior(mean, 0.5, 4, df=3.0)
    assert not isinstance(student, GaussianLatentPrior)
    for prior in (GaussianLatentPrior(mean, 0.5, 4), SharedLatentPrior(mean, 0.5, 4), student):
        assert isinstance(prior, LatentPrior)
    # Student-t keeps its behaviour: element-wise log density of StudentT(3, mean, 0.5) over (4, 3).
    x = torch.randn(4, 3)
    expected = torch.distributions.StudentT(3.0, mean, 0.5).log_prob(x).sum()
    torch.testing.assert_close(student.distribution().log_prob(x), expected)
    torch.testing.assert_close(student.init_scale(), torch.full((4, 3), 0.5))


def _correlated_closed_form(problem, rho: float, std: float):
    """Posterior mean and covariance of ws under N(mu, std^2 ((1 - rho) I + rho 1 1^T)) across the layers (per
    dimension), computed here from the linear generator: (L D,), (L D, L D)."""
    G, model = problem.model.generator, problem.model
    A, b = G.A.double(), G.b.double()
    L, D = G.num_ws, G.w_dim
    sigma = model.likelihoods[0].sigma
    y = model.observation.double().reshape(-1)
    layers = (1 - rho) * torch.eye(L, dtype=torch.float64) + rho * torch.ones(L, L, dtype=torch.float64)
    prior_cov = std**2 * torch.kron(layers, torch.eye(D, dtype=torch.float64))  # index l * D + d
    mu = model.prior.mean.double().reshape(-1)
    prior_precision = torch.linalg.inv(prior_cov)
    cov = torch.linalg.inv(prior_precision + A.T @ A / sigma**2)
    return cov @ (prior_precision @ mu + A.T @ (y - b) / sigma**2), cov, prior_cov


def test_layer_correlated_prior_is_the_correlated_gaussian_on_w_plus():
    """w_i = w_0 + d_i: every layer N(mu, std^2), layers correlated rho; MAP on its (w_0, d) site is MAP of
    the correlated Gaussian on W+, and the Laplace approximation there is the exact posterior of ws."""
    from brgm_pyro.inference.laplace import fit_laplace
    from brgm_pyro.models import LayerCorrelatedPrior

    problem = linear_gaussian_problem(diagonal=False)
    L, D = problem.model.prior.num_ws, problem.model.prior.w_dim
    rho, std = 0.7, 0.8
    prior = LayerCorrelatedPrior(problem.model.prior.mean[0], std, L, rho)
    assert isinstance(prior, LatentPrior)
    mean, cov, prior_cov = _correlated_closed_form(problem, rho, std)
    # the prior's own covariance of ws: J diag(scale^2) J^T, J the (linear) map from the site to ws
    basis = torch.eye((L + 1) * D).reshape(-1, L + 1, D)
    J = (prior.ws_from_latent(basis) - prior.ws_from_latent(torch.zeros(L + 1, D))).reshape(-1, L * D).T.double()
    scale = prior.init_scale().double().reshape(-1)
    torch.testing.assert_close(J @ torch.diag(scale**2) @ J.T, prior_cov, atol=1e-6, rtol=0)
    torch.testing.assert_close(prior.ws_from_latent(prior.init_loc()), prior.mean)
    model = replace(problem.model, prior=prior)
    result = map_estimate(model, num_steps=2000, lr=0.02, progress=False)
    assert result.latent.shape == (L + 1, D) and result.ws.shape == (L, D)
    torch.testing.assert_close(result.ws.flatten().double(), mean, atol=2e-3, rtol=0)
    laplace = fit_laplace(model, num_steps=2000, lr=0.02)
    q = laplace.q.distribution
    site_cov = (q.scale_tril @ q.scale_tril.T).double()
    torch.testing.assert_close(J @ site_cov @ J.T, cov, atol=2e-4, rtol=1e-3)


def test_layer_correlation_is_a_config_weight_checked_everywhere(tiny_generator):
    from brgm_pyro.generators.checkpoints import CheckpointError
    from brgm_pyro.generators.metadata import validate_metadata
    from brgm_pyro.inference import calibrated_config
    from brgm_pyro.models import BRGMConfig, LayerCorrelatedPrior, brgm_model
    from brgm_pyro.corruptions import SuperResolution

    config = BRGMConfig(0.1, None, 0.25, "per-dimension", misfit_scale=0.2, layer_correlation=0.6)
    model = brgm_model(tiny_generator, SuperResolution(4), torch.zeros(1, 4, 4), config=config,
                       num_stats_samples=200)
    assert isinstance(model.prior, LayerCorrelatedPrior) and model.prior.correlation == 0.6
    assert pyro.poutine.trace(model.model).get_trace().nodes["w"]["value"].shape == (tiny_generator.num_ws + 1,
                                                                                     tiny_generator.w_dim)
    assert type(brgm_model(tiny_generator, SuperResolution(4), torch.zeros(1, 4, 4), config=replace(
        config, layer_correlation=0.0), num_stats_samples=200).prior) is GaussianLatentPrior
    assert calibrated_config(config).layer_correlation == 0.6  # the recommended posterior keeps the prior
    for bad in (1.0, -0.1, True, "0.5"):
        with pytest.raises(ValueError, match="layer_correlation"):
            BRGMConfig(layer_correlation=bad)
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="correlation must lie in"):
            LayerCorrelatedPrior(torch.zeros(3), 1.0, 2, bad)
    with pytest.raises(ValueError, match="same mean and std for every layer"):
        LayerCorrelatedPrior(torch.zeros(3), torch.tensor([[1.0, 1, 1], [2, 2, 2]]), 2, 0.5)
    assert validate_metadata({"recommended_config": {"layer_correlation": 0.8}})["recommended_config"] == {
        "layer_correlation": 0.8}
    with pytest.raises(CheckpointError, match="layer_correlation"):
        validate_metadata({"recommended_config": {"layer_correlation": 1.5}})
