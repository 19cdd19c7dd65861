"""NUTS against the closed-form posterior of a linear-Gaussian problem."""

from __future__ import annotations

import arviz as az
import pytest
import torch

from brgm_pyro.inference import mcmc_summary, run_mcmc, to_inference_data

from .inference_problems import linear_gaussian_problem


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
