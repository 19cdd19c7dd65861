"""NUTS, preconditioned NUTS and NeuTra against the closed-form posterior of a linear-Gaussian problem."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
import torch

from brgm_pyro.inference import (
    chain_statistics, fit_autoguide, mcmc_convergence, mcmc_summary, run_mcmc, run_neutra,
    run_preconditioned_nuts, to_inference_data,
)
from brgm_pyro.inference.neutra import gaussian_of

from .inference_problems import linear_gaussian_problem


def assert_matches_exact(result, problem, max_z: float = 4.5, max_rel_std: float = 0.25) -> None:
    """Posterior mean within ``max_z`` Monte Carlo standard errors (std / sqrt(bulk ESS)) and the
    std within ``max_rel_std`` relative error (its MC error is about 1 / sqrt(2 ESS))."""
    draws = result.latents.reshape(-1, problem.mean.numel()).double()
    ess = torch.as_tensor(chain_statistics(result.latents).ess_bulk)
    std = problem.std
    assert ((draws.mean(0) - problem.mean).abs() / (std / ess.sqrt())).max() < max_z
    assert ((draws.std(0) - std).abs() / std).max() < max_rel_std


@pytest.mark.slow
def test_nuts_matches_closed_form_mean_and_std():
    problem = linear_gaussian_problem(diagonal=False)
    result = run_mcmc(problem.model, num_samples=400, warmup_steps=200, num_chains=2, progress=False)
    assert result.latents.shape == (2, 400, 2, 3)
    draws = result.latents.reshape(-1, 6).double()
    ess = torch.tensor(az.ess(to_inference_data(result))["w"].values.flatten())
    std = problem.std
    # Monte Carlo error of the mean is std / sqrt(ESS): allow 4 of those.
    assert ((draws.mean(0) - problem.mean).abs() / (std / ess.sqrt())).max() < 4
    # The std estimate's relative error is about 1 / sqrt(2 ESS) (< 4% here): allow 15%.
    assert ((draws.std(0) - std).abs() / std).max() < 0.15
    summary = mcmc_summary(result)
    assert summary["r_hat"].max() < 1.05 and result.divergences.sum() == 0


@pytest.fixture(scope="module")
def problem():
    return linear_gaussian_problem(diagonal=False, sigma=0.1)


@pytest.fixture(scope="module")
def fullrank(problem):
    return fit_autoguide(problem.model, "fullrank", num_steps=250, lr=0.05, num_particles=8)


def test_fullrank_guide_recovers_the_gaussian_posterior(problem, fullrank):
    # The posterior is Gaussian, so the full-rank guide's optimum is the exact posterior.
    mean, cov = gaussian_of(fullrank.guide)
    assert torch.allclose(mean.double(), problem.mean, atol=0.1 * problem.std.min().item() + 0.02)
    assert ((cov.diagonal().double().sqrt() - problem.std).abs() / problem.std).max() < 0.2


def test_preconditioned_nuts_matches_closed_form(problem, fullrank):
    result = run_preconditioned_nuts(problem.model, num_chains=4, num_samples=100, warmup_steps=60,
                                     guide=fullrank.guide, seed=1)
    assert result.latents.shape == (4, 100, 2, 3)
    # Distinct starts, one per chain, and the starts are recorded.
    assert result.inits.shape == (4, 2, 3)
    assert torch.cdist(result.inits.reshape(4, -1), result.inits.reshape(4, -1)).triu(1)[0, 1:].min() > 1e-3
    assert_matches_exact(result, problem)
    # With the exact covariance as metric the posterior is a standard normal: short trees.
    assert result.tree_depths.double().mean() <= 3.5 and result.divergences.sum() == 0
    assert result.step_sizes.shape == (4,) and (result.step_sizes > 0.3).all()
    assert ((result.accept_probs > 0.5) & (result.accept_probs <= 1)).all()  # adaptation targets 0.8
    diagnostics = mcmc_convergence(result)
    assert diagnostics["max_rhat"] < 1.05 and diagnostics["min_ess_bulk"] > 100


def test_nuts_preconditioned_by_the_recommended_posterior_matches_closed_form(problem):
    result = run_preconditioned_nuts(problem.model, num_chains=4, num_samples=100, warmup_steps=60,
                                     guide="multistart-fullrank", map_steps=300, seed=2)
    assert result.info["guide"] == "multistart-fullrank"
    assert_matches_exact(result, problem)
    # the full-rank fit is the exact posterior here, so the whitened target is a standard normal
    assert result.tree_depths.double().mean() <= 3.5 and result.divergences.sum() == 0


def test_target_acceptance_reaches_the_step_size_adaptation(problem, fullrank, monkeypatch):
    runs = {t: run_preconditioned_nuts(problem.model, num_chains=2, num_samples=60, warmup_steps=60,
                                       guide=fullrank.guide, target_accept_prob=t, seed=3) for t in (0.6, 0.95)}
    assert runs[0.95].info["target_accept_prob"] == 0.95
    assert (runs[0.95].step_sizes < runs[0.6].step_sizes).all()  # a higher target: smaller steps
    assert runs[0.95].accept_probs.mean() > runs[0.6].accept_probs.mean()
    # the long reference configuration asks for 0.9 and 4 x (300 + 400)
    from brgm_pyro.study import methods

    seen = {}
    monkeypatch.setattr(methods, "run_preconditioned_nuts", lambda model, **kw: seen.update(kw) or runs[0.6])
    monkeypatch.setattr(methods, "mcmc_convergence", lambda result, seed=0: {})
    methods.METHODS["nuts-fullrank-long"](problem.model, seed=0)
    settings = [seen[k] for k in ("target_accept_prob", "num_chains", "warmup_steps", "num_samples")]
    assert settings == [0.9, 4, 300, 400]
    assert seen["guide"] == "multistart-fullrank"
    # the in-painting one: trees to depth 7, 4 x (300 + 500), target 0.8
    seen.clear()
    methods.METHODS["nuts-fullrank-depth7"](problem.model, seed=0)
    settings = [seen[k] for k in ("target_accept_prob", "num_chains", "warmup_steps", "num_samples", "max_tree_depth")]
    assert settings == [0.8, 4, 300, 500, 7] and seen["guide"] == "multistart-fullrank"
    # its shorter run for the >= 5 problems: 4 x (150 + 300), same trees and metric
    seen.clear()
    methods.METHODS["nuts-fullrank-depth7-short"](problem.model, seed=0)
    settings = [seen[k] for k in ("target_accept_prob", "num_chains", "warmup_steps", "num_samples", "max_tree_depth")]
    assert settings == [0.8, 4, 150, 300, 7] and seen["guide"] == "multistart-fullrank"


def test_dense_mass_matrix_is_used(problem):
    """The given metric is kept (no adaptation) and matters: the exact posterior covariance gives
    shorter trajectories than a metric distorted by a factor 100 in variance along two axes."""
    cov = problem.cov.float()
    inits = problem.mean.float().reshape(1, 2, 3).expand(2, 2, 3).clone()
    dense = run_mcmc(problem.model, num_samples=40, warmup_steps=40, num_chains=2, inits=inits,
                     inverse_mass_matrix=cov, progress=False)
    torch.testing.assert_close(dense.mcmc.kernel.inverse_mass_matrix[("w",)], cov)
    distort = torch.diag(torch.tensor([10.0, 1, 1, 1, 1, 0.1]))
    bad = run_mcmc(problem.model, num_samples=40, warmup_steps=40, num_chains=2, inits=inits,
                   inverse_mass_matrix=distort @ cov @ distort, max_tree_depth=5, progress=False)
    assert dense.num_steps.double().mean() * 2 < bad.num_steps.double().mean()
    with pytest.raises(ValueError, match="inverse_mass_matrix has size"):
        run_mcmc(problem.model, num_samples=5, warmup_steps=5, inverse_mass_matrix=torch.eye(5), progress=False)
    with pytest.raises(ValueError, match="inits must have shape"):
        run_mcmc(problem.model, num_samples=5, warmup_steps=5, num_chains=3, inits=inits, progress=False)


@pytest.mark.parametrize("kind", ["fullrank", pytest.param("iaf", marks=pytest.mark.slow)])
def test_neutra_matches_closed_form(problem, fullrank, kind):
    guide = fullrank.guide if kind == "fullrank" else fit_autoguide(problem.model, "iaf", num_steps=300, lr=0.01,
                                                                    num_particles=8).guide
    result = run_neutra(problem.model, guide=guide, num_chains=4, num_samples=100, warmup_steps=60, seed=2)
    assert result.latents.shape == (4, 100, 2, 3) and result.info["base_latents"].shape == (4, 100, 6)
    assert len({tuple(x.flatten().tolist()) for x in result.inits}) == 4
    assert_matches_exact(result, problem)
    assert result.divergences.sum() == 0
    # The Posterior and ArviZ see draws of the model's own site.
    assert result.posterior.sample(10, images=False).latents.shape == (10, 2, 3)
    assert to_inference_data(result).posterior["w"].shape == (4, 100, 2, 3)


def test_chain_statistics_match_arviz():
    rng = np.random.default_rng(0)
    draws = rng.standard_normal((4, 100, 3)).cumsum(axis=1) * 0.1 + rng.standard_normal((4, 100, 3))
    draws[0] += 1.0  # one chain elsewhere: R-hat well above 1
    stats = chain_statistics(torch.as_tensor(draws))
    data = az.convert_to_dataset(draws[..., None, :])
    np.testing.assert_allclose(stats.rhat, az.rhat(data, method="rank")["x"].values.ravel())
    np.testing.assert_allclose(stats.ess_bulk, az.ess(data, method="bulk")["x"].values.ravel())
    np.testing.assert_allclose(stats.ess_tail, az.ess(data, method="tail")["x"].values.ravel())
    assert stats.worst()["max_rhat"] > 1.1
    with pytest.raises(ValueError, match="draws must be"):
        chain_statistics(torch.zeros(4))


def test_convergence_groups_match_summary(problem, fullrank):
    result = run_preconditioned_nuts(problem.model, num_chains=2, num_samples=40, warmup_steps=30,
                                     guide=fullrank.guide, seed=3)
    report = mcmc_convergence(result, num_pixels=5, seed=0)
    summary = mcmc_summary(result)  # ArviZ on the InferenceData of the same draws
    assert report["groups"]["latents"]["max_rhat"] == pytest.approx(summary["r_hat"].max(), abs=0.01)
    assert report["groups"]["latents"]["min_ess_bulk"] == pytest.approx(summary["ess_bulk"].min(), abs=1)
    assert report["groups"]["pixels"]["num_quantities"] == 5
    assert report["max_rhat"] >= report["groups"]["log_likelihood"]["max_rhat"]
    assert len(report["divergences_per_chain"]) == 2 and len(report["step_sizes"]) == 2
    # Denoising has no mask: the "unknown region" is the whole image (16 pixels, 5 chosen).
    assert len(report["pixel_indices"]) == 5 and max(report["pixel_indices"]) < 16


def test_laplace_is_exact_on_a_linear_generator(problem):
    """For a linear generator the Gauss-Newton Laplace approximation at the mode is the posterior."""
    from brgm_pyro.inference.neutra import laplace_gaussian

    mode = problem.mean.float().reshape(2, 3)
    mean, cov = laplace_gaussian(problem.model, mode, chunk_size=5)  # several chunks of Jacobian rows
    torch.testing.assert_close(cov.double(), problem.cov, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(mean, mode.reshape(-1))


def test_pooled_metric_learns_the_draws_covariance_in_whitened_coordinates():
    from brgm_pyro.inference.neutra import pooled_metric

    g = torch.Generator().manual_seed(0)
    A = torch.tensor([[4.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 0.25]], dtype=torch.float64)
    B = torch.diag(torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64))  # the pilot's metric
    draws = torch.randn(4, 5000, 3, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(A).T
    draws += torch.arange(4, dtype=torch.float64).reshape(4, 1, 1) * 10  # each chain about its own mean
    learnt = pooled_metric(draws, B, shrinkage=10.0)
    assert torch.allclose(learnt, A, rtol=0.06, atol=0.03)
    # few draws: it stays near the pilot's metric (shrinkage toward it, in its whitened coordinates)
    few = pooled_metric(draws[:, :2], B, shrinkage=1000.0)
    assert torch.allclose(few, B, rtol=0.05, atol=0.05)
    with pytest.raises(ValueError, match="two draws per chain"):
        pooled_metric(draws[:, :1], B)


def test_adapted_nuts_matches_closed_form(problem):
    from brgm_pyro.inference.neutra import run_adapted_nuts

    result = run_adapted_nuts(problem.model, num_chains=4, pilot_warmup=40, pilot_samples=40, warmup_steps=40,
                              num_samples=100, map_steps=300, seed=4)
    assert result.latents.shape == (4, 100, 2, 3) and result.info["method"] == "adapted_nuts"
    assert_matches_exact(result, problem)
    pilot = result.info["pilot"]
    assert pilot["samples"] == 40 and len(pilot["step_sizes"]) == 4
    # the pilot's metric is the exact posterior here: the learnt one stays near it (whitened variances ~ 1)
    assert 0.5 < pilot["top_whitened_variances"][0] < 2.0
    assert result.divergences.sum() == 0 and result.tree_depths.double().mean() <= 3.5
