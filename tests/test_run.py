"""One way to run a method (``inference.run``) and the recommended posterior pipeline
(``inference.recommended``): a batch of B images gives each image what a run on it alone gives."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from brgm_pyro.corruptions import Inpainting
from brgm_pyro.inference import (
    MAPResult, MCMCResult, MethodOptions, Posterior, calibrated_model, fit_recommended_posterior, run_method,
    run_methods,
)
from brgm_pyro.inference.run import METHODS
from brgm_pyro.models import BRGMConfig, StudentTLatentPrior, brgm_model

from .inference_problems import linear_gaussian_problem

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py

SEEDS = [3, 8]


def batch_and_singles():
    """The linear-Gaussian model on two observations, and one model per observation."""
    model = linear_gaussian_problem(diagonal=False).model
    g = torch.Generator().manual_seed(1)
    obs = model.observation + 0.3 * torch.randn(2, *model.observation.shape, generator=g)
    return dataclasses.replace(model, observation=obs), [dataclasses.replace(model, observation=o) for o in obs]


@pytest.mark.parametrize("method", ["map", "vi", "mcmc"])
def test_a_batch_gives_each_image_its_own_run(method):
    batched, singles = batch_and_singles()
    options = MethodOptions(steps=30, lr=0.05, samples=5, mcmc_samples=6)
    together = run_method(batched, method, options, seed=SEEDS)
    assert len(together) == 2
    for b, single in enumerate(singles):
        alone, = run_method(single, method, options, seed=SEEDS[b])
        out = together[b]
        assert out.method == method and out.image.shape == (1, 1, 4, 4) and out.seconds > 0
        torch.testing.assert_close(out.image, alone.image, atol=1e-5, rtol=1e-5)
        if method == "map":
            assert out.samples is None and out.std is None
            assert out.result is None and isinstance(alone.result, MAPResult)  # a batched MAP is not split
            continue
        assert out.samples.shape == (5, 1, 4, 4) and out.std.shape == (1, 1, 4, 4)
        torch.testing.assert_close(out.samples, alone.samples, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.std, alone.std, atol=1e-5, rtol=1e-5)
        assert bool((out.std > 0).all())
        if method == "vi":
            assert isinstance(out.result, Posterior) and not out.result.model.batched
        else:
            assert isinstance(out.result, MCMCResult)


def test_run_methods_gives_every_method_per_image_and_the_vi_image_is_g_of_mu():
    batched, _ = batch_and_singles()
    outputs = run_methods(batched, ["map", "vi"], MethodOptions(steps=10, samples=3), seed=SEEDS)
    assert [sorted(o) for o in outputs] == [["map", "vi"], ["map", "vi"]]
    vi = outputs[1]["vi"]
    # vi's image is G(mu) of image 1's posterior (the paper's reconstruction), not the mean of draws
    torch.testing.assert_close(vi.image, vi.result.mean_image())
    # a single image is a batch of one
    single = linear_gaussian_problem(diagonal=False).model
    assert len(run_methods(single, ["map"], MethodOptions(steps=2))) == 1


def test_bad_methods_and_options_are_refused_with_their_names():
    model = linear_gaussian_problem().model
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['nuts'\]; choose from map, vi, fullrank, mcmc"):
        run_method(model, "nuts")
    with pytest.raises(ValueError, match="method vi draws posterior samples: samples must be >= 1"):
        run_method(model, "vi", MethodOptions(steps=2, samples=0))
    assert run_method(model, "map", MethodOptions(steps=2, samples=0))[0].image.shape == (1, 1, 4, 4)
    for bad, match in (({"steps": 0}, "steps must be >= 1"), ({"samples": -1}, "samples must be >= 0"),
                       ({"lr": 0.0}, "lr must be > 0"), ({"interval_scale": -1.0}, "positive"),
                       ({"mcmc_samples": 0}, "mcmc_samples must be >= 1"),
                       ({"mean_draws": 1}, r"mean_draws must be >= 2 \(a mean and a std\), got 1")):
        with pytest.raises(ValueError, match=match):
            MethodOptions(**bad)
    batched, _ = batch_and_singles()
    with pytest.raises(ValueError, match="got 3 seeds for a model of 2 image"):
        run_method(batched, "map", MethodOptions(steps=2), seed=[1, 2, 3])
    assert set(METHODS) == {"map", "vi", "fullrank", "mcmc"}


def _inpainting_model(generator, observation, **kwargs):
    mask = torch.ones(1, 16, 16)
    mask[..., 8:] = 0
    return brgm_model(generator, Inpainting(mask), observation, num_stats_samples=500, **kwargs)


def test_the_recommended_posterior_is_widened_inside_the_pipeline(tiny_generator):
    torch.manual_seed(0)
    model = _inpainting_model(tiny_generator, torch.rand(1, 16, 16) * 2 - 1,
                              config=BRGMConfig(0.1, None, 0.0, "per-dimension"))
    assert calibrated_model(model) is model  # already the calibrated model: fitted as it is
    fitted = fit_recommended_posterior(model, seed=2, map_steps=5, interval_scale=1.0)
    # the fullrank method is this pipeline, with the options' steps and scale
    out, = run_method(model, "fullrank", MethodOptions(steps=5, samples=4, interval_scale=2.0), seed=2)
    wide = out.result
    assert fitted.model is model and wide.model is model
    q1, q2 = fitted.q.distribution, wide.q.distribution
    torch.testing.assert_close(q2.loc, q1.loc)
    torch.testing.assert_close(q2.scale_tril, 2 * q1.scale_tril)  # N(mu, s^2 Sigma) with s = 2
    assert wide.diagnostics["interval_scale"] == 2.0 and "best_start" in wide.diagnostics
    assert out.samples.shape == (4, 1, 16, 16) and bool((out.std > 0).all())
    # the image and std map: mean_draws draws of w (not `samples`), as pixel_statistics gives them
    stats = wide.pixel_statistics(MethodOptions().mean_draws, seed=2)
    torch.testing.assert_close(out.image, stats.mean.unsqueeze(0))
    torch.testing.assert_close(out.std, stats.std.unsqueeze(0))
    few, = run_method(model, "fullrank", MethodOptions(steps=5, samples=4, mean_draws=3, interval_scale=2.0), seed=2)
    torch.testing.assert_close(few.image, wide.pixel_statistics(3, seed=2).mean.unsqueeze(0))
    assert not torch.allclose(few.image, out.image)


def test_the_recommended_posterior_replaces_only_what_its_config_describes(tiny_generator):
    torch.manual_seed(0)
    observation = torch.rand(1, 16, 16) * 2 - 1
    config = BRGMConfig(0.1, None, 0.3, "scalar")  # colinearity on, one prior std: not the calibrated model
    model = _inpainting_model(tiny_generator, observation, config=config)
    target = calibrated_model(model)
    assert target.config == BRGMConfig(0.1, None, 0.0, "per-dimension") and target.colinearity is None
    assert not torch.equal(target.prior.init_scale(), model.prior.init_scale())  # per-dimension std now
    # a prior given by hand is not what the config describes: refused, not silently swapped
    stats = tiny_generator.latent_stats(500)
    student = StudentTLatentPrior(stats.mean, stats.std, tiny_generator.num_ws)
    custom = _inpainting_model(tiny_generator, observation, config=config, prior=student)
    with pytest.raises(ValueError, match=r"this model's prior \(StudentTLatentPrior: not Gaussian\) was given by hand"):
        calibrated_model(custom)
    with pytest.raises(ValueError, match="given by hand"):
        run_method(custom, "fullrank", MethodOptions(steps=2, samples=2))
    with pytest.raises(ValueError, match="needs a model built by brgm_model"):
        fit_recommended_posterior(linear_gaussian_problem().model)


def test_the_recommended_posterior_screens_its_starts(tiny_generator):
    """8 starts; after a tenth of the MAP steps the best 2 prior-draw starts go on beside w_avg's own
    MAP run; 100 VI steps: the same fit as ``fit_multistart_fullrank`` with those settings."""
    from brgm_pyro.inference import RECOMMENDED_KEEP, RECOMMENDED_VI_STEPS
    from brgm_pyro.inference.multistart import fit_multistart_fullrank
    from brgm_pyro.inference.recommended import screen_steps_for

    from brgm_pyro.inference.recommended import recommended_fit_options

    assert (RECOMMENDED_KEEP, RECOMMENDED_VI_STEPS, screen_steps_for(500), screen_steps_for(5)) == (3, 100, 50, 1)
    assert recommended_fit_options() == dict(num_starts=8, num_steps=500, keep=3, screen_steps=50, vi_steps=100)
    assert recommended_fit_options(num_starts=2, num_steps=5)["keep"] is None  # keep >= starts: no screening
    assert recommended_fit_options(num_steps=1)["keep"] is None
    assert recommended_fit_options(num_steps=30)["screen_steps"] == 3
    torch.manual_seed(0)
    model = _inpainting_model(tiny_generator, torch.rand(1, 16, 16) * 2 - 1,
                              config=BRGMConfig(0.1, None, 0.0, "per-dimension"))
    fitted = fit_recommended_posterior(model, seed=3, map_steps=20, vi_steps=5)
    modes, = fitted.modes
    assert len(modes.latents) == 3 and modes.start_indices[0] == 0  # w_avg's run and the best 2 of 7 others
    assert len(set(modes.start_indices.tolist())) == 3 and max(modes.start_indices.tolist()) <= 7
    same = fit_multistart_fullrank(model, num_starts=8, num_steps=20, vi_steps=5, keep=3, screen_steps=2, seed=3)
    torch.testing.assert_close(fitted.q.distribution.loc, same.q.distribution.loc)
    torch.testing.assert_close(fitted.q.distribution.scale_tril, same.q.distribution.scale_tril)
    every = fit_recommended_posterior(model, seed=3, map_steps=20, vi_steps=5, keep=None)
    assert len(every.modes[0].latents) == 8  # keep None: every start climbs to the end
    with pytest.raises(ValueError, match="keep must be >= 1"):
        fit_recommended_posterior(model, keep=0)
    with pytest.raises(ValueError, match="vi_steps must be >= 1"):
        fit_recommended_posterior(model, vi_steps=0)
