"""The generator's misfit x = G(w) + r integrated out of the pixel likelihood (models/misfit.py):
exact against dense closed forms (linear-Gaussian), the default model unchanged, clear errors."""

from __future__ import annotations

import dataclasses
import math

import pyro
import pytest
import torch
from pyro import poutine

from brgm_pyro.corruptions import Inpainting, Intensity, LatentParameter, SuperResolution
from brgm_pyro.generators import LinearGenerator
from brgm_pyro.models import (BRGMConfig, MisfitPixelLikelihood, brgm_model, operator_matrix, point_images,
                              predictive_images)
from brgm_pyro.models.misfit import MISFIT_SITE


def _dense_operator(corruption, shape):
    """A by autograd (independent of operator_matrix's unit-image responses)."""
    op = corruption.double()
    jac = torch.autograd.functional.jacobian(lambda x: op(x.reshape(1, *shape)).reshape(-1),
                                             torch.zeros(math.prod(shape), dtype=torch.float64))
    corruption.float()
    return jac


def _observed_operator(corruption, shape):
    """A's rows of the observed outputs (by autograd) and the observed flags."""
    A = _dense_operator(corruption, shape)
    mask = corruption.observation_mask(shape)
    observed = torch.ones(A.shape[0], dtype=torch.bool) if mask is None else mask.reshape(-1) > 0
    return A[observed], observed


def _half_mask(size=8):
    mask = torch.ones(1, size, size)
    mask[..., :, size // 2:] = 0
    return mask


@pytest.mark.parametrize("corruption", [SuperResolution(2, kernel="bicubic-antialias"), Inpainting(_half_mask())],
                         ids=["sr", "mask"])
def test_likelihood_is_the_marginal_normal_with_sigma2_plus_tau2_AAT(corruption):
    shape = (1, 8, 8)
    sigma, tau = 0.1, 0.3
    lik = MisfitPixelLikelihood.from_corruption(corruption, shape, sigma, tau)
    assert lik.diagonal == isinstance(corruption, Inpainting)  # masks: A A^T = I on the observed pixels
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, *shape, generator=g) * 2 - 1  # three G(w) at once (particle dimension)
    y = corruption(torch.rand(1, *shape, generator=g) * 2 - 1)[0]
    mask = corruption.observation_mask(shape)
    trace = poutine.trace(lambda: lik(corruption(x), y, mask)).get_trace()
    got = trace.nodes["obs_pixel"]["fn"].log_prob(trace.nodes["obs_pixel"]["value"]).double()
    A_obs, observed = _observed_operator(corruption, shape)
    cov = sigma ** 2 * torch.eye(A_obs.shape[0], dtype=torch.float64) + tau ** 2 * A_obs @ A_obs.T
    expected = torch.distributions.MultivariateNormal(x.double().reshape(3, -1) @ A_obs.T, cov).log_prob(
        y.double().reshape(-1)[observed])
    torch.testing.assert_close(got, expected, atol=2e-3, rtol=1e-5)
    if isinstance(corruption, Inpainting):  # the diagonal case in words: variance sigma^2 + tau^2 per pixel
        assert torch.allclose(lik.variances(sigma, tau), torch.full((32,), sigma ** 2 + tau ** 2, dtype=torch.float64))


@pytest.mark.parametrize("corruption", [SuperResolution(2, kernel="bicubic-antialias"), Inpainting(_half_mask())],
                         ids=["sr", "mask"])
def test_conditional_residual_draws_match_the_gaussian_conditional(corruption):
    shape = (1, 8, 8)
    sigma, tau = 0.2, 0.3
    lik = MisfitPixelLikelihood.from_corruption(corruption, shape, sigma, tau)
    g = torch.Generator().manual_seed(1)
    generated = torch.rand(1, *shape, generator=g) * 2 - 1
    y = corruption(torch.rand(1, *shape, generator=g) * 2 - 1)[0]
    n = 40_000
    r = lik.conditional_residual(generated.expand(n, *shape), y, torch.Generator().manual_seed(2))
    r = r.reshape(n, -1).double()
    A_obs, observed = _observed_operator(corruption, shape)
    S = sigma ** 2 * torch.eye(A_obs.shape[0], dtype=torch.float64) + tau ** 2 * A_obs @ A_obs.T
    e = y.double().reshape(-1)[observed] - A_obs @ generated.double().reshape(-1)
    mean = tau ** 2 * A_obs.T @ torch.linalg.solve(S, e)
    cov = tau ** 2 * torch.eye(64, dtype=torch.float64) - tau ** 4 * A_obs.T @ torch.linalg.solve(S, A_obs)
    sd = cov.diagonal().sqrt()
    assert ((r.mean(0) - mean).abs() / (sd / math.sqrt(n))).max() < 5  # 5 standard errors
    torch.testing.assert_close(lik.conditional_residual_variance(), cov.diagonal(), atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(torch.cov(r.T), cov, atol=4 * tau ** 2 * math.sqrt(2 / n) * 2, rtol=0)
    if isinstance(corruption, Inpainting):  # hidden pixels keep the prior N(0, tau^2)
        hidden = (_half_mask() == 0).reshape(-1)
        assert torch.allclose(cov.diagonal()[hidden], torch.full((32,), tau ** 2, dtype=torch.float64))


@pytest.mark.parametrize("corruption", [SuperResolution(2, kernel="bicubic-antialias"), Inpainting(_half_mask())],
                         ids=["sr", "mask"])
def test_conditional_mean_residual_is_the_joint_mode_of_r(corruption):
    """E[r | y, w] against the minimiser of |y - A(x + r)|^2 / sigma^2 + |r|^2 / tau^2 in information form
    ((A^T A / sigma^2 + I / tau^2) r = A^T (y - A x) / sigma^2; Woodbury-equivalent, computed independently)."""
    shape = (1, 8, 8)
    sigma, tau = 0.1, 0.25
    lik = MisfitPixelLikelihood.from_corruption(corruption, shape, sigma, tau)
    g = torch.Generator().manual_seed(5)
    generated = torch.rand(3, *shape, generator=g) * 2 - 1
    y = corruption(torch.rand(1, *shape, generator=g) * 2 - 1)[0]
    A_obs, observed = _observed_operator(corruption, shape)
    precision = A_obs.T @ A_obs / sigma ** 2 + torch.eye(64, dtype=torch.float64) / tau ** 2
    e = y.double().reshape(-1)[observed] - generated.double().reshape(3, -1) @ A_obs.T
    expected = torch.linalg.solve(precision, (e @ A_obs).T / sigma ** 2).T
    got = lik.conditional_mean_residual(generated, y)
    assert got.shape == generated.shape and got.dtype == generated.dtype
    torch.testing.assert_close(got.double().reshape(3, -1), expected, atol=1e-5, rtol=1e-4)
    # the same values passed explicitly, one per image, give the same; other values give the other mode
    torch.testing.assert_close(lik.conditional_mean_residual(generated, y, torch.full((3,), sigma),
                                                             torch.full((3,), tau)), got)
    wider = lik.conditional_mean_residual(generated, y, sigma, torch.tensor([0.25, 0.5, 0.25]))
    torch.testing.assert_close(wider[[0, 2]], got[[0, 2]])
    assert not torch.allclose(wider[1], got[1])
    if isinstance(corruption, Inpainting):  # hidden pixels keep r's prior mean 0; observed ones shrink
        hidden = (_half_mask() == 0).expand(3, *shape)
        assert got[hidden].abs().max() == 0
        x = (generated + got)[~hidden].double()
        shrink = sigma ** 2 / (sigma ** 2 + tau ** 2)
        torch.testing.assert_close(x - y.expand(3, *shape)[~hidden], shrink * (generated[~hidden] - y.expand(
            3, *shape)[~hidden]).double(), atol=1e-6, rtol=1e-5)


def test_map_reconstruction_adds_the_residual_mode_and_fits_what_is_observed():
    from brgm_pyro.inference import MethodOptions, map_estimate, run_method

    corruption = Inpainting(_half_mask())
    _, plain = _linear_problem(corruption, None)
    _, model = _linear_problem(corruption, 0.3)
    res = map_estimate(model, num_steps=100, progress=False)
    torch.testing.assert_close(res.reconstruction, point_images(model, res.image))
    lik = model.likelihoods[0]
    residual = lik.conditional_mean_residual(res.image, model.observation)
    torch.testing.assert_close(res.reconstruction - res.image, residual)
    observed = _half_mask().bool().expand_as(res.image)
    misfit_fit = (res.reconstruction - model.observation)[observed].square().mean()
    generator_fit = (res.image - model.observation)[observed].square().mean()
    assert misfit_fit < 0.5 * generator_fit  # shrunk by sigma^2 / (sigma^2 + tau^2) = 0.31
    out = run_method(model, "map", MethodOptions(steps=100, samples=0))[0]
    torch.testing.assert_close(out.image, res.reconstruction.cpu())
    torch.testing.assert_close(out.generated, res.image.cpu())
    plain_out = map_estimate(plain, num_steps=20, progress=False)
    assert plain_out.reconstruction is plain_out.image  # the paper's model: the MAP image is G(w*)


def test_map_reconstruction_with_learnt_scales_uses_their_estimates_per_image():
    from brgm_pyro.inference import map_estimate

    G = LinearGenerator.random(num_ws=2, w_dim=3, img_resolution=8, scale=0.4, seed=3)
    corruption = SuperResolution(2, kernel="bicubic-antialias")
    y = corruption(torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(6)) * 2 - 1)
    model = brgm_model(G, corruption, y, config=BRGMConfig(0.1, None, 0.0, "per-dimension", misfit_scale="learn"),
                       num_stats_samples=200)
    both = MisfitPixelLikelihood.from_corruption(corruption, (1, 8, 8), "learn", "learn")  # sigma learnt too
    model = dataclasses.replace(model, likelihoods=(both,))
    res = map_estimate(model, num_steps=50, progress=False)
    sigma, tau = res.parameters["sigma_pixel"], res.parameters[MISFIT_SITE]
    assert sigma.shape == tau.shape == (2,)
    lik = model.likelihoods[0]
    for b in range(2):
        expected = lik.conditional_mean_residual(res.image[b:b + 1], y[b], float(sigma[b]), float(tau[b]))
        torch.testing.assert_close(res.reconstruction[b:b + 1] - res.image[b:b + 1], expected, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="values of sigma_pixel and the misfit scale"):
        lik.conditional_mean_residual(res.image, y)


def _linear_problem(corruption, misfit):
    G = LinearGenerator.random(num_ws=2, w_dim=3, img_resolution=8, scale=0.4, seed=3)
    y = corruption(torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(4)) * 2 - 1)[0]
    config = BRGMConfig(0.2, None, 0.0, "per-dimension", misfit_scale=misfit)
    return G, brgm_model(G, corruption, y, config=config, num_stats_samples=200)


def test_model_log_joint_is_the_closed_form_and_the_default_is_unchanged():
    corruption = SuperResolution(2, kernel="bicubic-antialias")
    G, plain = _linear_problem(corruption, None)
    _, with_misfit = _linear_problem(corruption, 0.25)
    pyro.set_rng_seed(0)
    trace_plain = poutine.trace(plain.model).get_trace()
    trace_misfit = poutine.trace(with_misfit.model).get_trace()
    sites = [n for n, s in trace_plain.nodes.items() if s["type"] == "sample"]
    assert sites == [n for n, s in trace_misfit.nodes.items() if s["type"] == "sample"] == ["w", "obs_pixel"]
    # the default (misfit_scale None) is the paper's plain pixel likelihood, log joint unchanged
    assert type(plain.likelihoods[0]).__name__ == "PixelLikelihood"
    w = trace_plain.nodes["w"]["value"]
    conditioned = poutine.trace(poutine.condition(plain.model, data={"w": w})).get_trace()
    x = G.synthesis(plain.prior.ws_from_latent(w)[None]).double().reshape(-1)
    A = _dense_operator(corruption, (1, 8, 8))
    y = plain.observation.double().reshape(-1)
    prior_lp = conditioned.nodes["w"]["fn"].log_prob(w).double()
    plain_lp = torch.distributions.Normal(A @ x, 0.2).log_prob(y).sum()
    torch.testing.assert_close(conditioned.log_prob_sum().double(), prior_lp + plain_lp, atol=1e-3, rtol=1e-6)
    misfit_trace = poutine.trace(poutine.condition(with_misfit.model, data={"w": w})).get_trace()
    cov = 0.04 * torch.eye(16, dtype=torch.float64) + 0.0625 * A @ A.T
    misfit_lp = torch.distributions.MultivariateNormal(A @ x, cov).log_prob(y)
    torch.testing.assert_close(misfit_trace.log_prob_sum().double(), prior_lp + misfit_lp, atol=1e-3, rtol=1e-6)


def test_laplace_with_misfit_is_the_exact_linear_gaussian_posterior():
    from brgm_pyro.inference.laplace import laplace_approximation

    corruption = Inpainting(_half_mask())
    G, model = _linear_problem(corruption, 0.3)
    q = laplace_approximation(model, model.prior.init_loc())  # linear model: exact at any point
    F = _dense_operator(corruption, (1, 8, 8))[(_half_mask().reshape(-1) > 0)]
    H = F @ G.A.double()
    S = 0.04 * torch.eye(32, dtype=torch.float64) + 0.09 * F @ F.T
    prior_var = model.prior.init_scale().reshape(-1).double() ** 2
    precision = torch.diag(1 / prior_var) + H.T @ torch.linalg.solve(S, H)
    torch.testing.assert_close(q.distribution.covariance_matrix.double(), torch.linalg.inv(precision),
                               atol=1e-5, rtol=1e-4)


def test_posterior_draws_of_the_clean_image_carry_the_residual():
    from brgm_pyro.inference import Posterior

    corruption = Inpainting(_half_mask())
    _, model = _linear_problem(corruption, 0.3)
    loc = model.prior.init_loc()
    posterior = Posterior(model, lambda k: loc.expand(k, *loc.shape).clone())  # w fixed: spread is r alone
    images = posterior.sample(4000, seed=0).images.reshape(4000, -1)
    hidden = (_half_mask() == 0).reshape(-1)
    assert abs(float(images[:, hidden].std(0).mean()) - 0.3) < 0.01  # tau on the hidden half
    shrunk = 0.3 * math.sqrt(0.04 / (0.04 + 0.09))  # observed: sd tau sigma / sqrt(sigma^2 + tau^2)
    assert abs(float(images[:, ~hidden].std(0).mean()) - shrunk) < 0.01
    stats = posterior.pixel_statistics(4000, seed=1)
    assert abs(float(stats.std.reshape(-1)[hidden].mean()) - 0.3) < 0.01
    x = predictive_images(model, torch.zeros(2, 1, 8, 8))
    assert x.shape == (2, 1, 8, 8)


def test_pixel_statistics_integrate_the_misfit_out_exactly():
    """Posterior.pixel_statistics of the clean image G(w) + r under a Gaussian q(w) (x4 SR: a dense conditional)
    against the closed form for a linear generator: x = M G(w) + tau^2 A^T S^-1 y + noise with M = I - tau^2
    A^T S^-1 A, so mean M G(m) + ..., covariance M J C J^T M^T + Cov[r | y, w]; and closer to it than the moments
    of as many predictive draws (r integrated, not drawn)."""
    from brgm_pyro.inference import Posterior
    from brgm_pyro.models.brgm import generate

    corruption = SuperResolution(2, kernel="bicubic-antialias")
    sigma, tau = 0.2, 0.3
    G, model = _linear_problem(corruption, tau)
    loc = model.prior.init_loc().detach()
    d = loc.numel()
    C_half = 0.1 * torch.randn(d, d, generator=torch.Generator().manual_seed(7), dtype=torch.float64) / math.sqrt(d)

    def draws(k):
        z = loc.reshape(-1).double() + torch.randn(k, d, dtype=torch.float64) @ C_half.T
        return z.reshape(k, *loc.shape).float()

    def image_of(z):
        return generate(G, model.prior.ws_from_latent(z.reshape(1, *loc.shape).float())).reshape(-1).double()

    J = torch.autograd.functional.jacobian(image_of, loc.reshape(-1).double())  # G is linear: exact
    A_obs, observed = _observed_operator(corruption, (1, 8, 8))
    S = sigma ** 2 * torch.eye(A_obs.shape[0], dtype=torch.float64) + tau ** 2 * A_obs @ A_obs.T
    K = tau ** 2 * A_obs.T @ torch.linalg.inv(S)
    M = torch.eye(64, dtype=torch.float64) - K @ A_obs
    y = model.observation.double().reshape(-1)[observed]
    mean = M @ image_of(loc.reshape(-1)) + K @ y
    cov = M @ J @ C_half @ C_half.T @ J.T @ M.T + tau ** 2 * torch.eye(64, dtype=torch.float64) - K @ A_obs * tau ** 2
    sd = cov.diagonal().sqrt()
    n = 4000
    stats = Posterior(model, draws).pixel_statistics(n, seed=0)
    z = (stats.mean.reshape(-1).double() - mean) / (sd / math.sqrt(n))
    assert z.abs().max() < 5  # within 5 standard errors of the exact mean (of the predictive draws' mean)
    torch.testing.assert_close(stats.std.reshape(-1).double(), sd, atol=0, rtol=0.06)
    drawn = Posterior(model, draws).sample(n, seed=0).images.reshape(n, -1).double()
    assert (stats.mean.reshape(-1).double() - mean).square().sum() < 0.5 * (drawn.mean(0) - mean).square().sum()


def test_a_recommended_misfit_scale_is_dropped_where_it_cannot_apply(tiny_generator):
    """default_config keeps a recommended misfit scale for linear operators with fixed parameters only."""
    import copy

    from brgm_pyro.models import default_config
    from brgm_pyro.models.misfit import misfit_applies

    G = copy.deepcopy(tiny_generator)
    G.metadata = {"recommended_config": {"sigma_pixel": 0.05, "misfit_scale": 0.2}}
    linear = SuperResolution(2, kernel="bicubic-antialias")
    offset = Intensity(offset=0.3)  # f(x) = x + 0.3: not linear
    blind = SuperResolution(2, kernel="gaussian", sigma=LatentParameter(pyro.distributions.LogNormal(0.0, 0.3)))
    assert misfit_applies(linear, (1, 16, 16)) and not misfit_applies(offset, (1, 16, 16))
    assert not misfit_applies(blind, (1, 16, 16))
    assert default_config(G, linear).misfit_scale == 0.2
    assert default_config(G, offset).misfit_scale is None and default_config(G, blind).misfit_scale is None
    assert default_config(G, offset).sigma_pixel == 0.05  # the rest of the recommendation stays


def test_misfit_errors_and_learnt_scale():
    with pytest.raises(ValueError, match="not linear"):
        operator_matrix(Intensity(offset=0.3), (1, 8, 8))
    blind = SuperResolution(2, kernel="gaussian", sigma=LatentParameter(pyro.distributions.LogNormal(0.0, 0.3)))
    with pytest.raises(ValueError, match="latent parameters"):
        operator_matrix(blind, (1, 8, 8))
    with pytest.raises(ValueError, match="misfit_scale must be a positive finite number"):
        BRGMConfig(misfit_scale=-1.0)
    with pytest.raises(ValueError, match="misfit_scale needs the pixel likelihood"):
        BRGMConfig(sigma_pixel=None, misfit_scale=0.1)
    with pytest.raises(ValueError, match="tau"):
        MisfitPixelLikelihood.from_corruption(Inpainting(_half_mask()), (1, 8, 8), 0.1, "guess")
    _, model = _linear_problem(Inpainting(_half_mask()), "learn")
    assert MISFIT_SITE in model.latent_parameters()
    trace = poutine.trace(model.model).get_trace()
    assert MISFIT_SITE in trace.nodes and trace.nodes[MISFIT_SITE]["value"] > 0
    with pytest.raises(ValueError, match="fixed sigma_pixel and misfit scale"):
        predictive_images(model, torch.zeros(1, 1, 8, 8))


def test_the_command_line_plumbs_misfit_scale_into_the_model(tiny_generator, tmp_path):
    from brgm_pyro.app.cli_args import model_from_settings
    from brgm_pyro.app.parser import build_parser
    from brgm_pyro.app.settings import resolve_settings
    from brgm_pyro.io import save_image

    mask = torch.ones(1, 16, 16)
    mask[..., 8:] = 0
    corruption = Inpainting(mask)
    observation = torch.zeros(1, 16, 16)
    image = tmp_path / "x.png"
    save_image(torch.zeros(1, 1, 16, 16), image)
    parser = build_parser()

    def settings(*flags):
        argv = ["reconstruct", str(image), "--task", "inpainting", "--mask-id", "0", "--features", "none",
                "--out", str(tmp_path / "out"), *flags]
        return resolve_settings(parser.parse_args(argv), argv)

    model = model_from_settings(settings("--misfit-scale", "0.15"), tiny_generator, corruption, observation, None)
    assert model.config.misfit_scale == 0.15
    assert isinstance(model.likelihoods[0], MisfitPixelLikelihood) and model.likelihoods[0].tau == 0.15
    plain = model_from_settings(settings(), tiny_generator, corruption, observation, None)
    assert plain.config.misfit_scale is None and type(plain.likelihoods[0]).__name__ == "PixelLikelihood"
    # a generator that recommends a misfit scale for standard mask 0: used by default, 'none' turns it off
    import copy

    from brgm_pyro.corruptions import make_corruption

    G = copy.deepcopy(tiny_generator)
    G.metadata = {"recommended_configs": {"inpainting-mask0": {"sigma_pixel": 0.05, "misfit_scale": 0.2}}}
    mask0 = make_corruption("inpainting", 16, mask_id=0)
    recommended = model_from_settings(settings(), G, mask0, observation, None)
    assert recommended.config.misfit_scale == 0.2 and recommended.likelihoods[0].tau == 0.2
    assert model_from_settings(settings("--misfit-scale", "none"), G, mask0, observation, None).config.misfit_scale \
        is None
    assert model_from_settings(settings("--misfit-scale", "0.3"), G, mask0, observation, None).likelihoods[0].tau == 0.3
    learnt = model_from_settings(settings("--learn-noise"), G, mask0, observation, None)  # sigma learnt, tau kept
    assert isinstance(learnt.likelihoods[0], MisfitPixelLikelihood) and learnt.likelihoods[0].tau == 0.2
    assert learnt.likelihoods[0].sigma is None and "sigma_pixel" in learnt.latent_parameters()
    # not where the operator is unknown: the recommendation is left out, the flag is refused
    sr = make_corruption("super-resolution", 16, factor=4, kernel="gaussian")
    G.metadata = {"recommended_config": {"sigma_pixel": 0.05, "misfit_scale": 0.2}}

    def sr_settings(*flags):
        argv = ["reconstruct", str(image), "--task", "super-resolution", "--kernel", "gaussian", "--features", "none",
                "--out", str(tmp_path / "out"), *flags]
        return resolve_settings(parser.parse_args(argv), argv)

    low = torch.zeros(1, 4, 4)
    assert model_from_settings(sr_settings(), G, sr, low, None).config.misfit_scale == 0.2
    blind = model_from_settings(sr_settings("--blind", "kernel"), G, sr, low, None)
    assert blind.config.misfit_scale is None and type(blind.likelihoods[0]).__name__ == "PixelLikelihood"
    with pytest.raises(ValueError, match="--misfit-scale needs a fixed operator, but --blind kernel"):
        model_from_settings(sr_settings("--blind", "kernel", "--misfit-scale", "0.2"), G, sr, low, None)
    learn = parser.parse_args(["reconstruct", "x.png", "--task", "inpainting", "--mask-id", "0",
                               "--misfit-scale", "learn"])
    assert learn.misfit_scale == "learn"
    with pytest.raises(SystemExit):
        parser.parse_args(["reconstruct", "x.png", "--task", "inpainting", "--misfit-scale", "-1"])
