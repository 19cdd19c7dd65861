"""VI: exact recovery of a diagonal Gaussian posterior, the sigma_v penalty, and sampling."""

from __future__ import annotations

import pytest
import torch

from brgm_pyro.corruptions import SuperResolution
from brgm_pyro.inference import GUIDES, InverseGammaPenalty, fit_vi
from brgm_pyro.models import BRGMConfig, brgm_model, corrupt

from .inference_problems import linear_gaussian_problem


@pytest.mark.slow
def test_gaussian_guide_recovers_a_diagonal_posterior():
    problem = linear_gaussian_problem(diagonal=True)
    q = fit_vi(problem.model, num_steps=3000, lr=0.05, lr_decay=0.999, num_particles=16, sigma_prior=None,
               init_scale=0.5, progress=False)
    # The mean-field family contains the exact posterior, so the optimum is exact; what remains is
    # stochastic-gradient noise, which the decayed learning rate (0.05 -> 0.0025) keeps below
    # ~10% of a posterior standard deviation.
    std = problem.std
    assert ((q.loc.flatten().double() - problem.mean).abs() / std).max() < 0.15
    assert ((q.scale.flatten().double() - std).abs() / std).max() < 0.15


def test_inverse_gamma_penalty_widens_the_posterior():
    problem = linear_gaussian_problem(diagonal=True)
    plain = fit_vi(problem.model, num_steps=400, lr=0.05, sigma_prior=None, init_scale=0.5, progress=False)
    wide = fit_vi(problem.model, num_steps=400, lr=0.05, sigma_prior=InverseGammaPenalty(0.1, 0.95),
                  init_scale=0.5, progress=False)
    assert (wide.scale > plain.scale).float().mean() > 0.8
    assert "sigma_v_prior" in wide.history.terms and "sigma_v_prior" not in plain.history.terms
    sigma = torch.tensor([0.5, 1.0])
    expected = -torch.distributions.InverseGamma(0.1, 0.95).log_prob(sigma * 0.5).sum()
    assert InverseGammaPenalty(scale=0.5)(sigma).item() == pytest.approx(expected.item())


def test_vi_samples_differ_and_fit_the_observation(tiny_generator):
    G = tiny_generator
    torch.manual_seed(6)
    truth = G.synthesis(G.mapping(torch.randn(1, G.z_dim))).detach()
    op = SuperResolution(4)
    model = brgm_model(G, op, op(truth), config=BRGMConfig(sigma_pixel=0.05), num_stats_samples=2000)
    q = fit_vi(model, num_steps=150, lr=0.05, init_scale=0.2, progress=False)
    samples = q.sample(40, chunk_size=16, seed=0)
    assert samples.ws.shape == (40, G.num_ws, G.w_dim) and samples.images.shape == (40, 1, 16, 16)
    assert samples.images.std(0).mean() > 1e-3  # the reconstructions differ
    fit = (corrupt(op, samples.images) - model.observation).square().mean()
    prior_images = G.synthesis(G.mapping(torch.randn(40, G.z_dim))).detach()
    prior_fit = (corrupt(op, prior_images) - model.observation).square().mean()
    assert fit < 0.5 * prior_fit  # yet they still explain the observation
    stats = q.pixel_statistics(400, chunk_size=100, seed=1)
    many = q.sample(400, seed=1).images
    torch.testing.assert_close(stats.mean, many.mean(0), atol=1e-4, rtol=0)
    torch.testing.assert_close(stats.std, many.std(0), atol=1e-4, rtol=0)
    assert q.mean_image().shape == (1, 1, 16, 16)


@pytest.mark.parametrize("guide", [g for g in GUIDES if g != "gaussian"])
def test_other_guides_fit_and_sample(guide):
    problem = linear_gaussian_problem(diagonal=False)
    q = fit_vi(problem.model, guide=guide, num_steps=300, lr=0.05, progress=False)
    assert q.history.loss[-1] < q.history.loss[0]
    assert q.sample(5).ws.shape == (5, 2, 3)


def test_unknown_guide_is_an_error():
    problem = linear_gaussian_problem()
    with pytest.raises(ValueError, match="unknown guide 'spline'"):
        fit_vi(problem.model, guide="spline", num_steps=1)
