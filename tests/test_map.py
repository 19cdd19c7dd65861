"""MAP: the closed-form posterior mode of a linear-Gaussian problem, and a small StyleGAN2."""

from __future__ import annotations

import contextlib

import pyro
import pytest
import torch

from brgm_pyro.corruptions import SuperResolution
from brgm_pyro.inference import map_estimate
from brgm_pyro.models import BRGMConfig, brgm_model

from .inference_problems import linear_gaussian_problem


def test_map_matches_closed_form_posterior_mean():
    problem = linear_gaussian_problem(diagonal=False)
    result = map_estimate(problem.model, num_steps=1500, lr=0.02, progress=False)
    # The posterior is Gaussian, so its mode is its mean; Adam converges to within ~1e-3 here.
    torch.testing.assert_close(result.latent.flatten().double(), problem.mean, atol=2e-3, rtol=0)
    assert result.ws.shape == (2, 3) and result.image.shape == (1, 1, 4, 4)
    assert len(result.loss) == 1500 and set(result.terms) == {"w", "obs_pixel"}
    # Each recorded term adds up to the loss.
    assert result.loss[-1] == pytest.approx(result.terms["w"][-1] + result.terms["obs_pixel"][-1], rel=1e-5)


def test_map_on_small_stylegan_improves_every_data_term(tiny_generator):
    G = tiny_generator
    torch.manual_seed(4)
    truth = G.synthesis(G.mapping(torch.randn(1, G.z_dim))).detach()
    op = SuperResolution(2)
    model = brgm_model(G, op, op(truth), config=BRGMConfig(sigma_pixel=0.05, kappa=0.1), num_stats_samples=2000)
    calls = []
    result = map_estimate(model, num_steps=150, lr=0.05, progress=False, callback=lambda i, loss, t: calls.append(i))
    assert calls == list(range(150))
    assert result.terms["obs_pixel"][-1] < 0.1 * result.terms["obs_pixel"][0]
    init_image = G.synthesis(model.prior.mean[None])
    assert (result.image - truth).square().mean() < 0.5 * (init_image - truth).square().mean()
    assert all(p.requires_grad for p in G.parameters())  # the runner restored the flags it froze


def test_runs_are_seeded_and_do_not_leak_params(tiny_generator):
    pyro.clear_param_store()
    pyro.param("user_param", torch.ones(2))
    op = SuperResolution(4)
    model = brgm_model(tiny_generator, op, torch.zeros(1, 4, 4), num_stats_samples=500)
    a = map_estimate(model, num_steps=5, progress=False, seed=1)
    b = map_estimate(model, num_steps=5, progress=False, seed=1)
    assert a.loss == b.loss
    assert list(pyro.get_param_store().keys()) == ["user_param"]
    with pytest.raises(ValueError, match="num_steps"):
        map_estimate(model, num_steps=0)


def test_batched_map_equals_separate_runs(tiny_generator):
    """B observations in one model: Adam is coordinate-wise, so this is B independent MAP runs."""
    G = tiny_generator
    torch.manual_seed(7)
    truth = G.synthesis(G.mapping(torch.randn(3, G.z_dim))).detach()
    op = SuperResolution(2)
    features = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.Flatten()).requires_grad_(False)
    config = BRGMConfig(sigma_pixel=0.05, sigma_perceptual=0.5, kappa=0.1)
    batched = brgm_model(G, op, op(truth), config=config, features=features, num_stats_samples=500)
    assert batched.num_images == 3
    together = map_estimate(batched, num_steps=30, lr=0.05, progress=False)
    assert together.latent.shape == (3, G.num_ws, G.w_dim) and together.image.shape == truth.shape
    losses = 0.0
    for i in range(3):
        single = brgm_model(G, op, op(truth[i:i + 1]), config=config, features=features, num_stats_samples=500)
        alone = map_estimate(single, num_steps=30, lr=0.05, progress=False)
        torch.testing.assert_close(together.latent[i], alone.latent, atol=1e-4, rtol=1e-4)
        losses += alone.loss[-1]
    assert together.loss[-1] == pytest.approx(losses, rel=1e-4)


def test_mcmc_refuses_batched_models_and_vi_fits_them(tiny_generator):
    from brgm_pyro.inference import fit_vi, run_mcmc

    op = SuperResolution(4)
    model = brgm_model(tiny_generator, op, torch.zeros(2, 1, 4, 4), num_stats_samples=500)
    q = fit_vi(model, num_steps=2, num_particles=2, progress=False)  # batched VI (tests/test_batched_vi.py)
    assert q.sample(3).images.shape == (3, 2, 1, 16, 16) and q.mean_image().shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="one observation at a time"):
        run_mcmc(model, num_samples=1, warmup_steps=1, progress=False)
    with pytest.raises(ValueError, match=r"observation has shape \(2, 1, 5, 5\)"):
        brgm_model(tiny_generator, op, torch.zeros(2, 1, 5, 5), num_stats_samples=500)


def test_validation_only_on_the_first_step_changes_no_number(tiny_generator, monkeypatch):
    """run_steps checks distributions on step 0 only; with validation on every step (as before) MAP
    and VI give the same losses on a fixed seed."""
    from brgm_pyro.inference import fit_vi

    torch.manual_seed(3)
    truth = tiny_generator.synthesis(tiny_generator.mapping(torch.randn(1, tiny_generator.z_dim))).detach()
    op = SuperResolution(2)
    model = brgm_model(tiny_generator, op, op(truth), config=BRGMConfig(sigma_pixel=0.05, kappa=0.1),
                       num_stats_samples=500)
    fast_map = map_estimate(model, num_steps=20, progress=False, seed=2).loss
    fast_vi = fit_vi(model, num_steps=10, progress=False, seed=2).history.loss
    seen = []
    monkeypatch.setattr(pyro, "validation_enabled", lambda flag: seen.append(flag) or contextlib.nullcontext())
    slow_map = map_estimate(model, num_steps=20, progress=False, seed=2).loss
    slow_vi = fit_vi(model, num_steps=10, progress=False, seed=2).history.loss
    assert seen and not any(seen)  # the patched switch was asked to turn validation off, and did not
    assert slow_map == pytest.approx(fast_map, rel=1e-6, abs=1e-6)
    assert slow_vi == pytest.approx(fast_vi, rel=1e-6, abs=1e-6)


def test_a_nan_loss_stops_the_run():
    from brgm_pyro.inference._runner import run_steps

    losses = iter([1.0, 0.5, float("nan"), 0.1])
    with pytest.raises(ValueError, match="MAP step 2: the loss is NaN"):
        run_steps(lambda: next(losses), 4, None, False, None, "MAP")
