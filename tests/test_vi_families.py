"""Full-rank / low-rank / flow guides, the ELBO-weighted ensemble, PSIS importance resampling and
the sigma_v penalty's weighting, checked against the exact posterior of the linear-Gaussian problem."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from brgm_pyro.inference import (
    InverseGammaPenalty, LatentDistribution, fit_ensemble, fit_laplace, fit_vi, importance_resample,
    laplace_approximation, log_joint, psis_khat, psis_smooth,
)
from brgm_pyro.inference.posterior import single_image_model
from brgm_pyro.models.brgm import BRGMModel

from .inference_problems import linear_gaussian_problem


def exact_q(problem, std_factor: float = 1.0) -> LatentDistribution:
    """The exact posterior (its std multiplied by ``std_factor``) as a q over the latent site."""
    mean, cov = problem.mean.float(), problem.cov.float() * std_factor**2
    d = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
    return LatentDistribution(d, problem.model.prior.init_loc().shape, mean.reshape(2, 3))


@pytest.mark.slow
def test_fullrank_guide_recovers_a_correlated_posterior_that_meanfield_cannot():
    problem = linear_gaussian_problem(diagonal=False)
    options = dict(num_steps=1500, lr=0.02, lr_decay=0.998, num_particles=16, progress=False)
    full = fit_vi(problem.model, guide="fullrank", init_scale=0.5, **options)
    mean_field = fit_vi(problem.model, guide="gaussian", sigma_prior=None, init_scale=0.5, **options)
    cov = problem.cov.float()
    offdiag = cov - torch.diag(cov.diagonal())
    std = problem.std.float()
    q_cov = full.q.distribution.covariance_matrix
    # mean within 0.15 posterior std; covariance within 15% of the largest variance
    assert ((full.mean_latent.flatten() - problem.mean.float()).abs() / std).max() < 0.15
    assert (q_cov - cov).abs().max() < 0.15 * cov.diagonal().max()
    torch.testing.assert_close(full.mean_latent, full.loc if full.loc is not None else full.q.mean)
    # the mean-field family has no correlations: its covariance error is at least the largest one
    mf_cov = torch.diag(mean_field.scale.flatten().square())
    assert (mf_cov - cov).abs().max() >= offdiag.abs().max() > 0.3 * cov.diagonal().max()
    assert (q_cov - cov).abs().max() < 0.5 * offdiag.abs().max()


def test_lowrank_and_flow_guides_fit_sample_and_score_their_draws():
    problem = linear_gaussian_problem(diagonal=False)
    for guide, extra in (("lowrank", {"rank": 2}), ("flow", {"num_flows": 1})):
        q = fit_vi(problem.model, guide=guide, num_steps=200, lr=0.02, num_particles=4, progress=False, **extra)
        assert q.history.loss[-1] < q.history.loss[0]
        latents, log_q = q.q.sample_with_log_prob(7)
        assert latents.shape == (7, 2, 3) and log_q.shape == (7,) and torch.isfinite(log_q).all()
        if q.q.has_log_prob:
            torch.testing.assert_close(q.q.log_prob(latents), log_q)
        else:  # the flow: check the forward log-det against torch's inverse-based log_prob
            torch.testing.assert_close(q.q.distribution.log_prob(latents.reshape(7, 6)), log_q, atol=1e-4, rtol=1e-4)
        assert q.mean_latent.shape == (2, 3)


def test_multivariate_guide_rejects_bad_options():
    problem = linear_gaussian_problem()
    with pytest.raises(ValueError, match="rank must be between 1 and the latent dimension 6"):
        fit_vi(problem.model, guide="lowrank", rank=7, num_steps=1, progress=False)
    with pytest.raises(ValueError, match="init_loc must have the latent site's shape"):
        fit_vi(problem.model, guide="fullrank", init_loc=torch.zeros(6), num_steps=1, progress=False)


def test_ensemble_reduces_to_the_single_gaussian_on_a_unimodal_posterior():
    problem = linear_gaussian_problem(diagonal=False)
    mix = fit_ensemble(problem.model, num_components=3, guide="laplace", map_steps=400, seed=1)
    # every start climbs to the one mode: the components agree with the exact posterior and hence
    # with each other, and their ELBOs (all = log p(I) for the exact posterior) give equal weights
    exact = torch.distributions.MultivariateNormal(problem.mean.float(), problem.cov.float())
    for fit in mix.fits:
        assert ((fit.q.mean.flatten() - problem.mean.float()).abs() / problem.std.float()).max() < 0.25
    assert (mix.weights - 1 / 3).abs().max() < 0.1
    points = exact.sample((200,))
    gap = mix.q.log_prob(points.reshape(200, 2, 3)) - exact.log_prob(points)
    assert gap.abs().median() < 0.2
    draws = mix.sample(4000, seed=0).latents.reshape(4000, 6).double()
    assert ((draws.mean(0) - problem.mean) / problem.std).abs().max() < 0.25
    assert mix.diagnostics["weights"] == pytest.approx(mix.weights.tolist())


def test_log_joint_matches_the_closed_form():
    problem = linear_gaussian_problem(diagonal=False)
    model = problem.model
    latents = torch.randn(5, 2, 3)
    A, b = model.generator.A.double(), model.generator.b.double()
    y = model.observation.reshape(-1).double()
    flat = latents.reshape(5, 6).double()
    prior = torch.distributions.Normal(model.prior.mean.reshape(-1).double(), model.prior.std.reshape(-1).double())
    lik = torch.distributions.Normal(flat @ A.T + b, 0.3)
    expected = prior.log_prob(flat).sum(-1) + lik.log_prob(y).sum(-1)
    torch.testing.assert_close(log_joint(model, latents), expected, atol=1e-3, rtol=1e-5)


def test_log_joint_refuses_a_batched_model_and_scores_each_image_through_single_image_model():
    problem = linear_gaussian_problem(diagonal=False)
    single = problem.model
    y = torch.stack([single.observation, -single.observation])  # two images (2, 1, 4, 4)
    batched = BRGMModel(single.generator, single.corruption, y, single.prior, None, single.likelihoods)
    latents = torch.randn(2, 2, 3)  # n == B: a plate would silently pair draw k with image k
    with pytest.raises(ValueError, match="holds 2 images.*single_image_model"):
        log_joint(batched, latents)
    A, b = single.generator.A.double(), single.generator.b.double()
    flat = latents.reshape(2, 6).double()
    prior = torch.distributions.Normal(single.prior.mean.reshape(-1).double(), single.prior.std.reshape(-1).double())
    for image in range(2):
        lik = torch.distributions.Normal(flat @ A.T + b, 0.3)
        expected = prior.log_prob(flat).sum(-1) + lik.log_prob(y[image].reshape(-1).double()).sum(-1)
        torch.testing.assert_close(log_joint(single_image_model(batched, image), latents), expected,
                                   atol=1e-3, rtol=1e-5)
    with pytest.raises(ValueError, match=r"holds 2 images \(use posterior.image\(b\)\)"):
        importance_resample(SimpleNamespace(model=batched, q=exact_q(problem)))


def test_psis_khat_is_high_for_a_too_narrow_proposal_and_low_for_the_exact_posterior():
    problem = linear_gaussian_problem(diagonal=False)
    narrow = importance_resample(SimpleNamespace(model=problem.model, q=exact_q(problem, 0.3)), num_proposals=2000)
    exact = importance_resample(SimpleNamespace(model=problem.model, q=exact_q(problem, 1.0)), num_proposals=2000)
    assert narrow.diagnostics["khat"] > 0.7  # theory: k = 1 - 0.3^2 = 0.91
    assert exact.diagnostics["khat"] < 0.5
    assert exact.diagnostics["ess"] > 1900 and narrow.diagnostics["ess"] < 500
    draws = exact.sample(2000, seed=0).latents.reshape(2000, 6).double()
    assert ((draws.mean(0) - problem.mean) / problem.std).abs().max() < 0.15


def test_importance_resampling_corrects_a_meanfield_fit_and_agrees_with_psis_khat():
    problem = linear_gaussian_problem(diagonal=False)
    q = fit_vi(problem.model, num_steps=400, lr=0.05, sigma_prior=None, init_scale=0.5, progress=False)
    resampled = importance_resample(q, num_proposals=2000, seed=3)
    khat = resampled.diagnostics["khat"]
    assert 0 < resampled.diagnostics["ess"] <= 2000
    assert abs(khat - psis_khat(q, num_particles=2000)) < 0.3  # Pyro's own k-hat, independent draws
    # the resampled draws have the posterior's correlations, which q lacks
    draws = resampled.sample(4000, seed=0).latents.reshape(4000, 6).double()
    cov = problem.cov
    corr = torch.corrcoef(draws.T)
    exact_corr = cov / torch.outer(cov.diagonal().sqrt(), cov.diagonal().sqrt())
    i, j = divmod(int((exact_corr - torch.eye(6, dtype=exact_corr.dtype)).abs().argmax()), 6)
    assert (corr[i, j] - exact_corr[i, j]).abs() < 0.5 * exact_corr[i, j].abs()


def test_psis_smooth_bounds_the_tail_and_keeps_the_order():
    torch.manual_seed(0)
    light = torch.distributions.Pareto(1.0, 5.0).sample((4000,)).log()  # Pareto weights with k = 0.2
    lw = torch.distributions.Pareto(1.0, 1.0).sample((4000,)).log()  # k = 1 (infinite mean)
    _, k_light = psis_smooth(light)
    smoothed, k = psis_smooth(lw)
    assert k_light < 0.4 < 0.6 < k  # the estimate's sd is ~0.1 with a tail of 190 weights
    assert smoothed.max() <= 1e-12  # relative to the largest raw weight, never above it
    assert (smoothed - (lw - lw.max())).abs().max() > 0  # the tail was replaced
    assert (torch.argsort(torch.argsort(smoothed)) == torch.argsort(torch.argsort(lw))).float().mean() > 0.99
    with pytest.raises(ValueError, match="at least 10"):
        psis_smooth(torch.zeros(5))
    with pytest.raises(ValueError, match="finite"):
        psis_smooth(torch.tensor([0.0] * 20 + [math.inf]))


def test_importance_resample_needs_a_q():
    problem = linear_gaussian_problem()
    with pytest.raises(ValueError, match="sample_with_log_prob"):
        importance_resample(SimpleNamespace(model=problem.model, q=None))


def test_eq8_penalty_weighting_is_one_over_n_of_the_released_one():
    problem = linear_gaussian_problem(diagonal=True)
    n = 6
    terms = {}
    for weighting in ("eq8", "released"):
        q = fit_vi(problem.model, num_steps=1, num_particles=n, init_scale=0.5, progress=False,
                   sigma_prior=InverseGammaPenalty(weighting=weighting))
        terms[weighting] = q.history.terms["sigma_v_prior"][0]
    sigma = torch.full((2, 3), 0.5)
    released = -torch.distributions.InverseGamma(0.1, 0.95).log_prob(sigma).sum().item()
    assert terms["released"] == pytest.approx(released, rel=1e-5)
    assert terms["eq8"] == pytest.approx(released / n, rel=1e-5)
    assert InverseGammaPenalty(weighting="eq8").weight(n) == pytest.approx(1 / n)
    assert InverseGammaPenalty(weighting="released").weight(n) == 1.0
    assert InverseGammaPenalty().weighting == "released"  # the default, chosen on the benchmark
    with pytest.raises(ValueError, match="weighting must be one of"):
        InverseGammaPenalty(weighting="sum")


def test_penalty_pulls_sigma_toward_the_inverse_gamma_mode_from_both_sides():
    penalty = InverseGammaPenalty()
    mode = 0.95 / 1.1
    s = torch.tensor([0.3, mode, 3.0], requires_grad=True)
    grad, = torch.autograd.grad(penalty(s), s)
    assert grad[0] < 0 and grad[2] > 0 and abs(grad[1]) < 1e-5  # gradient descent moves both ends toward the mode


def test_laplace_is_exact_on_the_linear_gaussian_problem():
    problem = linear_gaussian_problem(diagonal=False)
    lap = fit_laplace(problem.model, num_steps=400, lr=0.05)
    # G is linear, so the Gauss-Newton precision is the exact posterior precision at any point
    torch.testing.assert_close(lap.q.distribution.covariance_matrix.double(), problem.cov, atol=1e-5, rtol=1e-4)
    assert ((lap.mean_latent.flatten().double() - problem.mean).abs() / problem.std).max() < 0.05
    latents = lap.sample(3, images=False).latents
    exact = torch.distributions.MultivariateNormal(problem.mean, problem.cov)
    expected = exact.log_prob(latents.reshape(3, 6).double())
    shift = lap.q.log_prob(latents).double() - expected  # same covariance: differs only by the mean's error
    assert shift.abs().max() < 0.05


def test_laplace_needs_the_pixel_likelihood_and_no_colinearity():
    from dataclasses import replace

    from brgm_pyro.models import ColinearityPrior

    problem = linear_gaussian_problem()
    latent = problem.model.prior.init_loc()
    with pytest.raises(ValueError, match="colinearity"):
        laplace_approximation(replace(problem.model, colinearity=ColinearityPrior(0.1)), latent)
    with pytest.raises(ValueError, match="Gaussian pixel noise.*gaussian_pixel_noise"):
        laplace_approximation(replace(problem.model, likelihoods=()), latent)


def test_fullrank_guide_started_at_the_laplace_approximation_stays_at_the_exact_posterior():
    problem = linear_gaussian_problem(diagonal=False)
    lap = fit_laplace(problem.model, num_steps=400, lr=0.05)
    tril = lap.q.distribution.scale_tril
    q = fit_vi(problem.model, guide="fullrank", init_loc=lap.mean_latent, init_scale_tril=tril, num_steps=1,
               lr=1e-9, progress=False)
    torch.testing.assert_close(q.q.distribution.covariance_matrix, lap.q.distribution.covariance_matrix)
    q = fit_vi(problem.model, guide="fullrank", init_loc=lap.mean_latent, init_scale_tril=tril, num_steps=300,
               lr=0.003, num_particles=8, progress=False)
    cov = problem.cov.float()
    assert (q.q.distribution.covariance_matrix - cov).abs().max() < 0.1 * cov.diagonal().max()
    assert ((q.mean_latent.flatten().double() - problem.mean).abs() / problem.std).max() < 0.15
    with pytest.raises(ValueError, match="init_scale_tril applies to the 'fullrank' and 'flow' guides only"):
        fit_vi(problem.model, guide="lowrank", init_scale_tril=tril, num_steps=1, progress=False)


def test_flow_on_a_fitted_gaussian_starts_at_that_gaussian_and_stays_exact():
    from brgm_pyro.inference.guides import make_guide
    from brgm_pyro.inference.multistart import fit_multistart_flow

    problem = linear_gaussian_problem(diagonal=False)
    model = problem.model
    exact_tril = torch.linalg.cholesky(problem.cov).float()
    loc = problem.mean.float().reshape(2, 3)
    q = make_guide("flow", model, init_loc=loc, init_scale_tril=exact_tril)
    points = problem.mean.float() + torch.randn(5, 6) @ exact_tril.T
    reference = torch.distributions.MultivariateNormal(problem.mean.float(), scale_tril=exact_tril)
    # identity flows, unit d: the guide is N(loc, C C^T) exactly
    torch.testing.assert_close(q.distribution().log_prob(points), reference.log_prob(points), atol=1e-4, rtol=1e-5)
    with pytest.raises(ValueError, match="not both"):
        make_guide("flow", model, init_scale=0.5, init_scale_tril=exact_tril)
    with pytest.raises(ValueError, match="'fullrank' and 'flow' guides only"):
        make_guide("lowrank", model, init_scale_tril=exact_tril)
    # fitted from the multi-start full-rank Gaussian, the flow keeps the exact posterior
    post = fit_multistart_flow(model, num_starts=3, num_steps=400, vi_steps=50, flow_steps=100, seed=0)
    draws = post.sample(4000, seed=0).latents.reshape(4000, 6).double()
    assert ((draws.mean(0) - problem.mean) / problem.std).abs().max() < 0.2
    assert (draws.std(0) / problem.std - 1).abs().max() < 0.1
    assert post.diagnostics["flow_steps"] == 100 and len(post.diagnostics["mode_log_joints"]) == 3


@pytest.mark.parametrize("task", ["super-resolution", "inpainting"])
def test_output_jacobian_matches_autograd_and_its_fallback(tiny_generator, monkeypatch, task):
    """The vmapped vector-Jacobian products (one forward pass) give autograd's full Jacobian of
    f(G(w)), observed rows only; so does the batched-forward fallback used when vmap cannot batch."""
    from brgm_pyro.corruptions import Inpainting, SuperResolution
    from brgm_pyro.inference import laplace
    from brgm_pyro.models import BRGMConfig, brgm_model
    from brgm_pyro.models.brgm import corrupt, generate

    G = tiny_generator
    if task == "inpainting":
        mask = torch.zeros(1, 16, 16)
        mask[:, :, :7] = 1
        op = Inpainting(mask)
    else:
        op = SuperResolution(4)
    shape = op.output_shape((1, 16, 16))
    model = brgm_model(G, op, torch.zeros(shape), config=BRGMConfig(sigma_pixel=0.1, kappa=0.0),
                       num_stats_samples=200)
    latent = model.prior.init_loc() + 0.5 * model.prior.init_scale()
    full = torch.autograd.functional.jacobian(
        lambda w: corrupt(op, generate(G, model.prior.ws_from_latent(w)[None]))[0].reshape(-1), latent)
    full = full.reshape(full.shape[0], -1)
    if task == "inpainting":
        full = full[mask.expand(shape).reshape(-1).bool()]
    rows = torch.arange(full.shape[0]) if task != "inpainting" else torch.nonzero(mask.expand(shape).reshape(-1))[:, 0]
    # the vmapped path itself (not a silent fallback), and what output_jacobian returns
    torch.testing.assert_close(laplace._vmapped_jacobian(model, latent, rows, 7), full, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(laplace.output_jacobian(model, latent, chunk_size=7), full, atol=1e-5, rtol=1e-4)

    def no_batching_rule(*args, **kwargs):
        raise RuntimeError("vmap: no batching rule")

    monkeypatch.setattr(laplace, "_vmapped_jacobian", no_batching_rule)
    torch.testing.assert_close(laplace.output_jacobian(model, latent, chunk_size=7), full, atol=1e-5, rtol=1e-4)
