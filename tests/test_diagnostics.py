"""ArviZ conversion, PSIS k-hat, coverage and the comparison table."""

from __future__ import annotations

import pytest
import torch

from brgm_pyro.corruptions import Denoising
from brgm_pyro.generators import LinearGenerator
from brgm_pyro.inference import (
    Posterior, compare, credible_interval_coverage, fit_vi, format_table, map_estimate, psis_khat, run_mcmc,
    to_inference_data,
)
from brgm_pyro.models import BRGMModel, GaussianLatentPrior, PixelLikelihood

from .inference_problems import linear_gaussian_problem


@pytest.fixture(scope="module")
def fits():
    problem = linear_gaussian_problem(diagonal=True)
    m = problem.model
    return problem, {
        "MAP": map_estimate(m, num_steps=300, lr=0.05, progress=False),
        "VI": fit_vi(m, num_steps=600, lr=0.05, sigma_prior=None, init_scale=0.5, progress=False),
        "NUTS": run_mcmc(m, num_samples=100, warmup_steps=100, num_chains=2, progress=False),
    }


def test_inference_data_groups_and_dims(fits):
    problem, results = fits
    truth = problem.model.generator.synthesis(problem.mean.float().reshape(1, 2, 3))
    idata = to_inference_data(results["VI"], num_draws=70, truth=truth)
    assert idata.posterior["w"].dims == ("chain", "draw", "layer", "w_dim")
    assert idata.posterior["w"].shape == (1, 70, 2, 3)
    assert idata.posterior_predictive["image"].shape == (1, 70, 1, 4, 4)
    # Each predicted image is G of the same draw's latent.
    w = torch.tensor(idata.posterior["w"].values[0])
    img = problem.model.generator.synthesis(w).detach().numpy()
    assert abs(img - idata.posterior_predictive["image"].values[0]).max() < 1e-5
    assert "optimization" in idata.groups() and idata.optimization["loss"].shape == (600,)
    assert idata.observed_data["observation"].shape == (1, 4, 4) and "constant_data" in idata.groups()
    mcmc = to_inference_data(results["NUTS"])
    assert mcmc.posterior["w"].shape == (2, 100, 2, 3) and mcmc.sample_stats["diverging"].shape == (2, 100)
    with pytest.raises(ValueError, match="pass the model"):
        to_inference_data(results["MAP"])
    assert to_inference_data(results["MAP"], problem.model).posterior["w"].shape == (1, 1, 2, 3)


def test_khat_is_small_when_q_is_the_exact_family(fits):
    _, results = fits
    # The mean-field Gaussian contains this posterior: importance weights are nearly constant.
    assert psis_khat(results["VI"], num_particles=500) < 0.5


def test_coverage_of_a_known_gaussian():
    # Identity generator: images are the latents; draws from N(0, 1) per pixel.
    G = LinearGenerator(torch.eye(16), torch.zeros(16), 2, 8, 4, 1)
    model = BRGMModel(G, Denoising(), torch.zeros(1, 4, 4), GaussianLatentPrior(torch.zeros(8), 1.0, 2), None,
                      (PixelLikelihood(1.0),))
    posterior = Posterior(model, lambda n: torch.randn(n, 2, 8))
    inside = credible_interval_coverage(posterior, torch.zeros(1, 4, 4), level=0.9, num_samples=2000)
    assert inside.fraction == 1.0
    outside = credible_interval_coverage(posterior, torch.full((1, 4, 4), 3.0), level=0.9, num_samples=2000)
    assert outside.fraction == 0.0
    edge = torch.tensor([1.0, 2.0]).repeat(8).reshape(1, 4, 4)  # 1.0 inside the 90% interval, 2.0 outside
    assert credible_interval_coverage(posterior, edge, level=0.9, num_samples=4000).fraction == 0.5
    with pytest.raises(ValueError, match="level"):
        credible_interval_coverage(posterior, edge, level=1.5)


def test_compare_table(fits):
    problem, results = fits
    truth = problem.model.generator.synthesis(problem.mean.float().reshape(1, 2, 3)).detach()
    rows = compare(results, problem.model, truth=truth, num_samples=200, khat_particles=200)
    by_name = {r["method"]: r for r in rows}
    assert by_name["MAP"]["posterior_std"] == 0 and by_name["VI"]["posterior_std"] > 0
    assert by_name["VI"]["k_hat"] is not None and by_name["NUTS"]["k_hat"] is None
    # NUTS and VI estimate the same Gaussian posterior: similar spread.
    assert by_name["VI"]["posterior_std"] == pytest.approx(by_name["NUTS"]["posterior_std"], rel=0.3)
    table = format_table(rows)
    assert table.splitlines()[0].startswith("| method | data_fit_rmse") and len(table.splitlines()) == 5
