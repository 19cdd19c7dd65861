"""Multi-start MAP (inference/multistart.py): K starts in one batch equal K separate MAP runs,
the best mode is the highest log joint, and the method built on it is exact on the linear-Gaussian
problem."""

from __future__ import annotations

import pytest
import torch

from brgm_pyro.corruptions import Inpainting
from brgm_pyro.inference import log_joint, map_estimate
from brgm_pyro.inference.multistart import fit_multistart_fullrank, multistart_map, prior_starts
from brgm_pyro.models import brgm_model
from brgm_pyro.models.config import BRGMConfig

from .inference_problems import linear_gaussian_problem


def test_batched_starts_equal_separate_map_runs(tiny_generator, one_thread):
    torch.manual_seed(0)
    mask = torch.ones(1, 16, 16)
    mask[..., 8:] = 0
    observation = torch.rand(1, 16, 16) * 2 - 1
    config = BRGMConfig(0.1, None, 0.0, "per-dimension")
    model = brgm_model(tiny_generator, Inpainting(mask), observation, config=config, num_stats_samples=500)
    starts = prior_starts(model, 3, seed=4)
    assert torch.equal(starts[0], model.prior.init_loc())  # w_avg first, then prior draws
    assert not torch.allclose(starts[1], starts[2])
    together = multistart_map(model, starts, num_steps=25, lr=0.1)
    for k in range(3):
        alone = map_estimate(model, num_steps=25, lr=0.1, init=starts[k], progress=False).latent
        torch.testing.assert_close(together.latents[k], alone, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(together.log_joints, log_joint(model, together.latents))
    assert together.best == int(together.log_joints.argmax())


def test_multistart_fullrank_is_exact_on_the_linear_gaussian_problem(one_thread):
    problem = linear_gaussian_problem(diagonal=False)
    post = fit_multistart_fullrank(problem.model, num_starts=3, num_steps=400, vi_steps=50, seed=0)
    # one mode: every start reaches it, the Laplace approximation is the exact posterior, and the
    # full-rank fit started there stays there
    log_joints = torch.tensor(post.diagnostics["mode_log_joints"])
    assert (log_joints - log_joints.max()).abs().max() < 1e-2
    draws = post.sample(4000, seed=0).latents.reshape(4000, 6).double()
    assert ((draws.mean(0) - problem.mean) / problem.std).abs().max() < 0.2
    assert (draws.std(0) / problem.std - 1).abs().max() < 0.1


def test_multistart_rejects_bad_starts():
    problem = linear_gaussian_problem()
    with pytest.raises(ValueError, match="starts must have shape"):
        multistart_map(problem.model, torch.zeros(2, 6))
    with pytest.raises(ValueError, match="num_starts"):
        prior_starts(problem.model, 0)
    with pytest.raises(ValueError, match="num_steps must be >= 1, got 0"):
        multistart_map(problem.model, torch.zeros(2, 2, 3), num_steps=0)


def test_batched_multistart_fullrank_equals_separate_fits(tiny_generator, one_thread):
    torch.manual_seed(1)
    mask = torch.ones(1, 16, 16)
    mask[..., :, 10:] = 0
    observations = torch.rand(2, 1, 16, 16) * 2 - 1
    config = BRGMConfig(0.1, None, 0.0, "per-dimension")
    options = dict(num_starts=3, num_steps=20, vi_steps=5, num_particles=2)
    batched = fit_multistart_fullrank(
        brgm_model(tiny_generator, Inpainting(mask), observations, config=config, num_stats_samples=500),
        seed=[3, 4], **options)
    draws = batched.sample(6, seed=[0, 1]).latents  # (draws, images, ...)
    for b in range(2):
        single_model = brgm_model(tiny_generator, Inpainting(mask), observations[b], config=config,
                                  num_stats_samples=500)
        alone = fit_multistart_fullrank(single_model, seed=3 + b, **options)
        assert batched.diagnostics["best_start"][b] == alone.diagnostics["best_start"]
        torch.testing.assert_close(batched.mean_latent[b], alone.mean_latent, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(draws[:, b], alone.sample(6, seed=b).latents, atol=1e-4, rtol=1e-4)


def test_batched_multistart_map_equals_each_image_alone(tiny_generator, one_thread):
    from brgm_pyro.inference.multistart import batched_multistart_map
    from brgm_pyro.inference.posterior import single_image_model

    torch.manual_seed(2)
    mask = torch.ones(1, 16, 16)
    mask[..., 4:12, 4:12] = 0
    config = BRGMConfig(0.1, None, 0.0, "per-dimension")
    model = brgm_model(tiny_generator, Inpainting(mask), torch.rand(3, 1, 16, 16) * 2 - 1, config=config,
                       num_stats_samples=500)
    starts = torch.stack([prior_starts(single_image_model(model, b), 2, seed=b) for b in range(3)], 1)
    together = batched_multistart_map(model, starts, num_steps=15)
    for b in range(3):
        alone = multistart_map(single_image_model(model, b), starts[:, b], num_steps=15)
        torch.testing.assert_close(together[b].latents, alone.latents, atol=2e-4, rtol=1e-4)
        torch.testing.assert_close(together[b].log_joints, alone.log_joints, atol=1e-3, rtol=1e-6)
    with pytest.raises(ValueError, match=r"starts must have shape \(K, \*\(3, "):
        batched_multistart_map(model, starts[:, :2], num_steps=1)
    with pytest.raises(ValueError, match="needs a batched model"):
        batched_multistart_map(single_image_model(model, 0), starts, num_steps=1)


def test_laplace_evidence_is_the_exact_log_marginal_on_the_linear_gaussian_problem(one_thread):
    from brgm_pyro.inference.laplace import laplace_approximation
    from brgm_pyro.inference.multistart import laplace_log_evidence

    problem = linear_gaussian_problem(diagonal=False)
    mode = problem.mean.float().reshape(2, 3)
    q = laplace_approximation(problem.model, mode)
    evidence = laplace_log_evidence(float(log_joint(problem.model, mode[None])[0]), q)
    assert abs(evidence - problem.log_evidence) < 1e-3  # independent: log N(y | A mu + b, s^2 AA^T + sigma^2 I)
    post = fit_multistart_fullrank(problem.model, num_starts=3, num_steps=300, vi_steps=5, seed=0, select="evidence")
    evidences = torch.tensor(post.diagnostics["mode_log_evidences"])
    assert post.diagnostics["best_start"] == int(evidences.argmax())
    assert (evidences - problem.log_evidence).abs().max() < 1e-2  # every start reaches the one mode
    with pytest.raises(ValueError, match="select must be one of"):
        fit_multistart_fullrank(problem.model, num_starts=2, num_steps=1, select="mass")


def _masked_model(tiny_generator, observation):
    mask = torch.ones(1, 16, 16)
    mask[..., 8:] = 0
    config = BRGMConfig(0.1, None, 0.0, "per-dimension")
    return brgm_model(tiny_generator, Inpainting(mask), observation, config=config, num_stats_samples=500)


def test_successive_halving_keeps_the_best_screened_starts_and_ends_where_they_would_alone(tiny_generator,
                                                                                           one_thread):
    torch.manual_seed(3)
    model = _masked_model(tiny_generator, torch.rand(1, 16, 16) * 2 - 1)
    starts = prior_starts(model, 6, seed=1)
    halved = multistart_map(model, starts, num_steps=20, keep=2, screen_steps=5)
    screened = multistart_map(model, starts, num_steps=5)  # every start after the screening steps
    expected = torch.topk(screened.log_joints, 2).indices
    assert halved.start_indices.tolist() == expected.tolist()
    assert torch.equal(halved.starts, starts[expected])
    # the kept starts carry on with their Adam state: the same as running only them from the start
    alone = multistart_map(model, starts[expected], num_steps=20)
    torch.testing.assert_close(halved.latents, alone.latents, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(halved.log_joints, alone.log_joints, atol=1e-3, rtol=1e-6)
    for bad in ({"keep": 7, "screen_steps": 5}, {"keep": 0, "screen_steps": 5}, {"keep": 2, "screen_steps": 20}):
        with pytest.raises(ValueError, match="keep must be in 1..6"):
            multistart_map(model, starts, num_steps=20, **bad)


def test_batched_successive_halving_equals_each_image_alone(tiny_generator, one_thread):
    from brgm_pyro.inference.multistart import batched_multistart_map
    from brgm_pyro.inference.posterior import single_image_model

    torch.manual_seed(4)
    model = _masked_model(tiny_generator, torch.rand(2, 1, 16, 16) * 2 - 1)
    starts = torch.stack([prior_starts(single_image_model(model, b), 5, seed=b) for b in range(2)], 1)
    together = batched_multistart_map(model, starts, num_steps=12, keep=2, screen_steps=4)
    for b in range(2):
        alone = multistart_map(single_image_model(model, b), starts[:, b], num_steps=12, keep=2, screen_steps=4)
        assert together[b].start_indices.tolist() == alone.start_indices.tolist()
        torch.testing.assert_close(together[b].latents, alone.latents, atol=2e-4, rtol=1e-4)
    post = fit_multistart_fullrank(model, num_starts=5, num_steps=12, vi_steps=2, keep=2, screen_steps=4, seed=0)
    assert len(post.diagnostics["best_start"]) == 2 and all(0 <= s < 5 for s in post.diagnostics["best_start"])


def test_the_multistart_contains_the_single_map_run_on_a_batch_of_images(tiny_generator, one_thread):
    """Issue 25: the w_avg start is map_estimate's own path, so on every image of a batch the chosen
    mode's log joint is at least MAP's, and start 0's final latent is MAP's latent."""
    from brgm_pyro.inference.multistart import fit_multistart_laplace, multistart_containing_map
    from brgm_pyro.inference.posterior import single_image_model

    torch.manual_seed(5)
    images = torch.stack([tiny_generator.synthesis(tiny_generator.mapping(torch.randn(1, 16)))[0].detach()
                          for _ in range(2)] + [torch.rand(1, 16, 16) * 2 - 1])  # 2 model images, 1 noise image
    model = _masked_model(tiny_generator, images)
    steps = 30
    single_map = map_estimate(model, num_steps=steps, lr=0.1, progress=False)
    map_log_joints = torch.stack([log_joint(single_image_model(model, b), single_map.latent[b][None])[0]
                                  for b in range(3)])
    laplace, modes = fit_multistart_laplace(model, num_starts=4, num_steps=steps, seed=[0, 1, 2])
    for b, m in enumerate(modes):
        assert m.start_indices[0] == 0
        torch.testing.assert_close(m.latents[0], single_map.latent[b], atol=1e-6, rtol=1e-6)
        assert m.log_joints[m.chosen] == m.log_joints.max()
        chosen = log_joint(single_image_model(model, b), m.latents[m.chosen][None])[0]
        assert chosen >= map_log_joints[b] - 1e-3  # float32 generator: batched and single evaluations differ ~1e-4
    # each image alone: the same MAP path (map_estimate of one image) and so the same guarantee
    for b in range(3):
        alone = multistart_containing_map(single_image_model(model, b), torch.stack(
            [model.prior.init_loc(), *prior_starts(single_image_model(model, b), 3, seed=b)[1:]]), num_steps=steps)[0]
        map_alone = map_estimate(single_image_model(model, b), num_steps=steps, lr=0.1, progress=False)
        torch.testing.assert_close(alone.latents[0], map_alone.latent, atol=1e-6, rtol=1e-6)
        map_lj = float(log_joint(single_image_model(model, b), map_alone.latent[None])[0])
        assert alone.log_joints.max() >= map_lj - 1e-3
    # successive halving keeps start 0 and the best keep - 1 others; keep 1 is MAP alone
    halved = multistart_containing_map(model, torch.stack([prior_starts(single_image_model(model, b), 5, seed=b)
                                                           for b in range(3)], 1), num_steps=steps, keep=2,
                                       screen_steps=5)
    assert all(h.latents.shape[0] == 2 and h.start_indices[0] == 0 and h.start_indices[1] >= 1 for h in halved)
    only = multistart_containing_map(model, torch.stack([prior_starts(single_image_model(model, b), 3, seed=b)
                                                         for b in range(3)], 1), num_steps=steps, keep=1)
    assert all(o.latents.shape[0] == 1 for o in only)
    with pytest.raises(ValueError, match="keep must be in 1..3"):
        multistart_containing_map(model, torch.zeros(3, 3, *model.prior.init_loc().shape), num_steps=2, keep=4)
