"""Batched posteriors: a fit of B observations at once equals B separate single-image fits."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from brgm_pyro.inference import GUIDES, fit_vi
from brgm_pyro.inference.warm_start import fullrank_from_laplace

from .inference_problems import linear_gaussian_problem

SEEDS = [3, 8, 5]


def batch_and_singles(num_images: int = 2):
    """One linear-Gaussian model on ``num_images`` different observations, and one model per image."""
    model = linear_gaussian_problem(diagonal=False).model
    g = torch.Generator().manual_seed(1)
    obs = model.observation + 0.3 * torch.randn(num_images, *model.observation.shape, generator=g)
    batched = dataclasses.replace(model, observation=obs)
    return batched, [dataclasses.replace(model, observation=o) for o in obs]


@pytest.mark.parametrize("guide", GUIDES)
def test_batched_fit_equals_separate_fits(guide):
    batched, singles = batch_and_singles(2)
    options = dict(guide=guide, num_steps=25, lr=0.05, num_particles=3, progress=False)
    fit = fit_vi(batched, seed=SEEDS[:2], **options)
    assert fit.mean_latent.shape == (2, 2, 3) and fit.mean_image().shape == (2, 1, 4, 4)
    draws = fit.sample(4, seed=SEEDS[:2])
    assert draws.latents.shape == (4, 2, 2, 3) and draws.images.shape == (4, 2, 1, 4, 4)
    assert fit.sample(3).ws.shape == (3, 2, 2, 3)  # one seed for all images
    losses = torch.zeros(25, dtype=torch.float64)
    for b, single in enumerate(singles):
        alone = fit_vi(single, seed=SEEDS[b], **options)
        losses += torch.tensor(alone.history.loss, dtype=torch.float64)
        torch.testing.assert_close(fit.image(b).mean_latent, alone.mean_latent, atol=1e-5, rtol=1e-5)
        # the same noise: image b's draws equal the single fit's draws with the same seed
        torch.testing.assert_close(draws.latents[:, b], alone.sample(4, seed=SEEDS[b]).latents, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fit.image(b).sample(4, seed=2).images, alone.sample(4, seed=2).images,
                                   atol=1e-5, rtol=1e-5)
    # the batched loss is the sum of the per-image losses, step by step (same noise, same updates)
    torch.testing.assert_close(torch.tensor(fit.history.loss, dtype=torch.float64), losses, atol=1e-3, rtol=1e-5)


def test_batched_fit_with_a_python_loop_over_particles_and_three_images():
    batched, singles = batch_and_singles(3)
    options = dict(num_steps=10, lr=0.05, num_particles=2, vectorize_particles=False, progress=False)
    fit = fit_vi(batched, seed=SEEDS, **options)
    for b, single in enumerate(singles):
        alone = fit_vi(single, seed=SEEDS[b], **options)
        torch.testing.assert_close(fit.loc[b], alone.loc, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fit.scale[b], alone.scale, atol=1e-5, rtol=1e-5)
    stats = fit.pixel_statistics(20, seed=SEEDS)
    assert stats.mean.shape == (3, 1, 4, 4)
    torch.testing.assert_close(stats.std[1], fit.image(1).pixel_statistics(20, seed=SEEDS[1]).std)


def test_batched_calibrated_method_equals_separate_runs():
    batched, singles = batch_and_singles(2)
    options = dict(vi_steps=15, map_steps=30, num_particles=2)
    fit = fullrank_from_laplace(batched, SEEDS[:2], **options)
    for b, single in enumerate(singles):
        alone = fullrank_from_laplace(single, SEEDS[b], **options)
        torch.testing.assert_close(fit.q.images()[b].distribution.covariance_matrix,
                                   alone.q.distribution.covariance_matrix, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(fit.loc[b], alone.loc, atol=1e-5, rtol=1e-5)


def test_batched_fit_checks_its_seeds_and_starts():
    batched, _ = batch_and_singles(2)
    with pytest.raises(ValueError, match="3 seeds for a model of 2"):
        fit_vi(batched, seed=SEEDS, num_steps=1, progress=False)
    with pytest.raises(ValueError, match="init_loc must have shape"):
        fit_vi(batched, init_loc=torch.zeros(3, 2, 3), num_steps=1, progress=False)


@pytest.mark.parametrize("name", GUIDES)
@pytest.mark.parametrize("num_images", [None, 2])
def test_every_guide_has_the_common_contract(name, num_images):
    import pyro

    from brgm_pyro.inference import LatentGuide, make_guide

    model = batch_and_singles(num_images)[0] if num_images else linear_gaussian_problem().model
    lead = (num_images,) if num_images else ()
    with pyro.get_param_store().scope():
        q = make_guide(name, model, seeds=[0] * model.num_images)
        assert isinstance(q, LatentGuide)
        trace = pyro.poutine.trace(q).get_trace()
        assert trace.nodes["w"]["value"].shape == (*lead, 2, 3)
        assert q.median()["w"].shape == (*lead, 2, 3)
        assert q.sample_latents(4).shape == (4, *lead, 2, 3)
        assert q.freeze().mean.shape == (*lead, 2, 3)


def test_the_initial_scale_is_the_priors():
    import pyro

    from brgm_pyro.inference import GaussianGuide

    model = linear_gaussian_problem(prior_std=0.7).model
    with pyro.get_param_store().scope():
        torch.testing.assert_close(GaussianGuide(model).sigma(), torch.full((2, 3), 0.7))


@pytest.mark.parametrize("guide", ["fullrank", "gaussian"])
def test_widened_batched_posterior_is_each_image_widened(guide):
    from brgm_pyro.inference.widening import widen

    batched, singles = batch_and_singles(2)
    fit = fit_vi(batched, guide=guide, num_steps=5, num_particles=2, seed=SEEDS[:2], progress=False)
    wide = widen(fit, 1.5)
    draws, wide_draws = fit.sample(6, seed=SEEDS[:2]), wide.sample(6, seed=SEEDS[:2])
    for b in range(2):
        centre = fit.image(b).mean_latent
        torch.testing.assert_close(wide_draws.latents[:, b], centre + 1.5 * (draws.latents[:, b] - centre),
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(wide.image(b).sample(4, seed=7).latents,
                                   widen(fit.image(b), 1.5).sample(4, seed=7).latents)
    if fit.scale is not None:  # the mean-field guide's per-element std
        torch.testing.assert_close(wide.scale, 1.5 * fit.scale)
