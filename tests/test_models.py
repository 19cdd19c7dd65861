"""The Pyro model against an independent computation of Eq. 6, and its parts."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from torch import nn

from brgm_pyro.corruptions import Inpainting, SuperResolution, standard_mask
from brgm_pyro.models import (
    BRGMConfig, BRGMModel, ColinearityPrior, GaussianLatentPrior, PerceptualLikelihood, PixelLikelihood,
    SharedLatentPrior, StudentTLatentPrior, brgm_model, pairwise_cosines, released_lambda_colin,
)
from brgm_pyro.functional import image_shape
from brgm_pyro.perceptual import FeatureNetwork



def site_terms(model: BRGMModel, ws: torch.Tensor) -> dict[str, float]:
    """Negative log density of each site at ws (conditioned), from a Pyro trace."""
    conditioned = pyro.poutine.condition(model.model, data={"w": ws})
    trace = pyro.poutine.trace(conditioned).get_trace()
    trace.compute_log_prob()
    return {name: -float(site["log_prob_sum"].detach())
            for name, site in trace.nodes.items() if site["type"] == "sample"}


def small_feature_net() -> FeatureNetwork:
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, 2, 3, stride=2))
    return FeatureNetwork(net, ["1", "2"])


@pytest.fixture
def inpainting_model(tiny_generator):
    torch.manual_seed(1)
    truth = tiny_generator.synthesis(tiny_generator.mapping(torch.randn(1, tiny_generator.z_dim))).detach()
    op = Inpainting(standard_mask(0, 16))
    config = BRGMConfig(sigma_pixel=0.2, sigma_perceptual=0.05, kappa=0.3)
    return brgm_model(tiny_generator, op, op(truth), config=config, features=small_feature_net(),
                      num_stats_samples=2000)


def test_negative_log_joint_equals_eq6_term_by_term(inpainting_model):
    m = inpainting_model
    torch.manual_seed(2)
    ws = m.prior.mean + torch.randn(m.generator.num_ws, m.generator.w_dim) * 0.5
    terms = site_terms(m, ws)
    # Independent computation with plain torch (Eq. 6 / 2 plus the normalising constants).
    mu, s = m.prior.mean, m.prior.std
    prior = (((ws - mu) / s) ** 2).sum() / 2 + torch.log(s * math.sqrt(2 * math.pi)).sum()
    u = ws / ws.norm(dim=1, keepdim=True)
    colin = -0.3 * (u @ u.T).sum()
    x = m.generator.synthesis(ws[None])
    mask = standard_mask(0, 16).bool().expand(1, 16, 16)
    resid = (m.observation - x[0] * mask)[mask]
    pixel = (resid**2).sum() / (2 * 0.2**2) + resid.numel() * math.log(0.2 * math.sqrt(2 * math.pi))
    phi = m.likelihoods[1].features
    f_diff = phi(m.observation[None]) - phi(x * mask)
    percept = (f_diff**2).sum() / (2 * 0.05**2) + f_diff.numel() * math.log(0.05 * math.sqrt(2 * math.pi))
    assert terms["w"] == pytest.approx(prior.item(), rel=1e-5)
    assert terms["colinearity"] == pytest.approx(colin.item(), rel=1e-5)
    assert terms["obs_pixel"] == pytest.approx(pixel.item(), rel=1e-5)
    assert terms["obs_perceptual"] == pytest.approx(percept.item(), rel=1e-4)
    assert mask.sum() < mask.numel()  # holes exist and were left out


def test_released_lambdas_reproduce_the_released_loss_up_to_scale(tiny_generator):
    torch.manual_seed(3)
    G = tiny_generator
    truth = G.synthesis(G.mapping(torch.randn(1, G.z_dim))).detach()
    op = SuperResolution(2)
    phi = small_feature_net()
    L, D = G.num_ws, G.w_dim
    n_out = 1 * 8 * 8
    n_feat = phi(torch.zeros(1, 1, 8, 8)).shape[1]
    config = BRGMConfig.from_released(L, D, n_out, n_feat, lambda_colin=0.1)
    m = brgm_model(G, op, op(truth), config=config, features=phi, num_stats_samples=2000)
    w_avg, s = m.prior.mean, m.prior.std[0, 0]

    def released_loss(ws: torch.Tensor) -> float:  # the authors' formula, written independently
        y = op(G.synthesis(ws[None]))
        pix = ((op(truth) - y) * 127.5).square().mean()
        perc = (phi(op(truth)) - phi(y)).square().mean()
        prior = ((ws - w_avg) / s).square().mean()
        u = ws / ws.norm(dim=1, keepdim=True)
        colin = (1 - u @ u.T).sum()
        return float((0.001 * pix + 1e7 * perc + 100 * prior + 0.1 * colin).detach())

    w1 = w_avg + 0.3 * torch.randn(L, D)
    w2 = w_avg + 0.3 * torch.randn(L, D)
    nlj = lambda ws: sum(site_terms(m, ws).values())  # noqa: E731
    c = 2 * 100 / (L * D)
    assert nlj(w1) - nlj(w2) == pytest.approx((released_loss(w1) - released_loss(w2)) / c, rel=1e-4)
    assert released_lambda_colin("super-resolution", 32) == 1.0 and released_lambda_colin("inpainting") == 0.1


def test_paper_lambdas_convert_to_sigmas():
    config = BRGMConfig.from_lambdas(lambda_pixel=1e-5, lambda_percept=0.01, lambda_colin=0.03)
    assert config.sigma_pixel == pytest.approx(1e-5**-0.5)
    assert config.sigma_perceptual == pytest.approx(10.0)
    assert config.kappa == pytest.approx(0.015)
    assert config.lambdas()["lambda_pixel"] == pytest.approx(1e-5)
    assert BRGMConfig.from_lambdas(None).sigma_pixel is None
    with pytest.raises(ValueError, match="non-negative"):
        BRGMConfig.from_lambdas(-1.0)
    with pytest.raises(ValueError, match="positive"):
        BRGMConfig(sigma_pixel=0.0)


def test_colinearity_is_finite_at_identical_layers_and_per_particle():
    ws = torch.ones(3, 4, 5, requires_grad=True)  # three particles, every layer identical
    value = ColinearityPrior(2.0).log_factor(ws)
    assert value.shape == (3,)
    torch.testing.assert_close(value, torch.full((3,), 2.0 * 16), atol=1e-5, rtol=0)
    value.sum().backward()
    assert torch.isfinite(ws.grad).all()
    zeros = torch.zeros(2, 3, requires_grad=True)
    pairwise_cosines(zeros).sum().backward()
    assert torch.isfinite(zeros.grad).all()
    with pytest.raises(ValueError, match="non-negative"):
        ColinearityPrior(-1.0)


def test_observation_shape_is_checked(tiny_generator):
    with pytest.raises(ValueError, match=r"observation has shape \(1, 8, 8\), but super-resolution x4"):
        brgm_model(tiny_generator, SuperResolution(4), torch.zeros(1, 8, 8), num_stats_samples=100)
    m = brgm_model(tiny_generator, SuperResolution(4), torch.zeros(1, 1, 4, 4), num_stats_samples=100)
    assert m.observation.shape == (1, 4, 4)


def test_alternative_priors_and_parts_switched_off(tiny_generator):
    G = tiny_generator
    mean = torch.zeros(G.w_dim)
    shared = SharedLatentPrior(mean, 1.0, G.num_ws)
    ws = shared.ws_from_latent(torch.randn(5, G.w_dim))
    assert ws.shape == (5, G.num_ws, G.w_dim) and torch.equal(ws[:, 0], ws[:, -1])
    m = BRGMModel(G, SuperResolution(4), torch.zeros(1, 4, 4), shared, None, (PixelLikelihood(0.1),))
    trace = pyro.poutine.trace(m.model).get_trace()
    assert trace.nodes["w"]["value"].shape == (G.w_dim,) and "colinearity" not in trace.nodes
    t = StudentTLatentPrior(mean, 1.0, G.num_ws, df=3.0)
    value = torch.full((G.num_ws, G.w_dim), 4.0)
    assert t.distribution().log_prob(value) > GaussianLatentPrior(mean, 1.0, G.num_ws).distribution().log_prob(value)
    with pytest.raises(ValueError, match="std must be a scalar"):
        GaussianLatentPrior(mean, torch.ones(7), G.num_ws)
    with pytest.raises(ValueError, match="sigma must be positive"):
        PerceptualLikelihood(nn.Identity(), 0.0)


def test_default_config_is_the_released_balance(tiny_generator):
    from brgm_pyro.models import released_config

    op = SuperResolution(2)
    m = brgm_model(tiny_generator, op, torch.zeros(1, 8, 8), num_stats_samples=200)
    expected = BRGMConfig.from_released(tiny_generator.num_ws, tiny_generator.w_dim, 64)
    assert m.likelihoods[0].sigma == pytest.approx(expected.sigma_pixel)
    assert m.colinearity.kappa == pytest.approx(expected.kappa)
    big = released_config(tiny_generator, SuperResolution(16), None)
    assert big.kappa == pytest.approx(0.1 / (2 * 100 / (tiny_generator.num_ws * tiny_generator.w_dim)))
    phi = small_feature_net()
    with_features = released_config(tiny_generator, op, phi)
    assert with_features.sigma_perceptual == pytest.approx(
        (100 * phi(torch.zeros(1, 1, 8, 8)).shape[1] / (tiny_generator.num_ws * tiny_generator.w_dim * 1e7)) ** 0.5)


def test_default_config_takes_the_weights_of_the_corruptions_setting(tiny_generator):
    """metadata["recommended_configs"][setting_name(f)] lies over metadata["recommended_config"]; a
    corruption without an entry (or without a setting name) keeps the common recommendation."""
    import copy

    from brgm_pyro.corruptions import setting_name
    from brgm_pyro.models import default_config

    G = copy.deepcopy(tiny_generator)
    G.metadata = {"recommended_config": {"sigma_pixel": 0.1, "sigma_perceptual": 0.05, "kappa": 0.25,
                                         "prior_std": "per-dimension"},
                  "recommended_configs": {"super-resolution-x4-bicubic-antialias": {"sigma_pixel": 0.05,
                                                                                    "sigma_perceptual": None},
                                          "inpainting-mask1": {"sigma_pixel": 0.2, "kappa": 0.0}}}
    sr = SuperResolution(4, kernel="bicubic-antialias")
    assert setting_name(sr) == "super-resolution-x4-bicubic-antialias"
    assert default_config(G, sr) == BRGMConfig(sigma_pixel=0.05, sigma_perceptual=None, kappa=0.25,
                                               prior_std="per-dimension")
    size = image_shape(G)[-1]
    mask1 = Inpainting(standard_mask(1, size))
    assert setting_name(mask1) == "inpainting-mask1"
    phi = small_feature_net()
    assert default_config(G, mask1, phi) == BRGMConfig(sigma_pixel=0.2, sigma_perceptual=0.05, kappa=0.0,
                                                       prior_std="per-dimension")
    assert default_config(G, mask1).sigma_perceptual is None  # no feature network: no perceptual term
    for other in (Inpainting(standard_mask(0, size)), SuperResolution(4, kernel="bicubic"),
                  SuperResolution(2, kernel="bicubic-antialias")):
        assert default_config(G, other, phi) == BRGMConfig(sigma_pixel=0.1, sigma_perceptual=0.05, kappa=0.25,
                                                           prior_std="per-dimension"), setting_name(other)
    custom = standard_mask(1, size).clone()
    custom[0, 0, 0] = 1 - custom[0, 0, 0]  # one pixel off the standard mask: no measured setting
    assert setting_name(Inpainting(custom)) is None
    assert default_config(G, Inpainting(custom)).sigma_pixel == 0.1
    G.metadata = {"recommended_configs": {"inpainting-mask1": {"sigma_pixel": 0.2}}}  # over the released balance
    released = default_config(copy.deepcopy(tiny_generator), mask1)
    assert default_config(G, mask1) == BRGMConfig(**{**released.__dict__, "sigma_pixel": 0.2})
    G.metadata["recommended_configs"]["inpainting-mask1"]["misfit_scale"] = 0.15  # a misfit-aware setting
    misfit = brgm_model(G, mask1, torch.zeros(1, size, size), features=phi)
    assert misfit.config.misfit_scale == 0.15 and type(misfit.likelihoods[0]).__name__ == "MisfitPixelLikelihood"
    assert misfit.likelihoods[0].tau == 0.15 and misfit.likelihoods[0].sigma == 0.2
    assert default_config(G, sr).misfit_scale is None  # the other settings keep the paper's model
    G.metadata = {"recommended_configs": {"inpainting-mask1": {"sigma_pixle": 0.2}}}
    with pytest.raises(ValueError, match=r"\['recommended_configs'\]\['inpainting-mask1'\] has unknown keys "
                                         r"\['sigma_pixle'\]"):
        default_config(G, mask1)
    G.metadata = {"recommended_configs": {"inpainting-mask1": {"sigma_pixel": -1.0}}}
    with pytest.raises(ValueError, match="recommended weights for inpainting-mask1 are not a valid BRGMConfig"):
        default_config(G, mask1)


def test_setting_names_of_the_command_lines_corruptions():
    """The metadata keys (recommended weights, interval scales and factors) of what ``brgm`` builds; a mask given
    as a file or tensor that equals a standard mask is that mask's setting, a custom kernel or mask has none."""
    from brgm_pyro.corruptions import make_corruption, setting_name

    for kernel in ("bicubic", "bicubic-antialias", "box"):
        for factor in (2, 4, 8):
            op = make_corruption("super-resolution", 32, factor=factor, kernel=kernel)
            assert setting_name(op) == f"super-resolution-x{factor}-{kernel}"
    for mask_id in range(7):
        assert setting_name(make_corruption("inpainting", 32, mask_id=mask_id)) == f"inpainting-mask{mask_id}"
        assert setting_name(make_corruption("inpainting", 32, mask=standard_mask(mask_id, 32).clone())) == \
            f"inpainting-mask{mask_id}"
    custom = standard_mask(2, 32).clone()
    custom[0, 5, 5] = 1 - custom[0, 5, 5]
    assert setting_name(make_corruption("inpainting", 32, mask=custom)) is None
    assert setting_name(make_corruption("super-resolution", 32, factor=4, kernel=torch.ones(5, 5) / 25)) is None
    assert setting_name(make_corruption("denoising", 32)) is None


def test_observation_dtypes_are_converted_or_refused_before_pyro(tiny_generator):
    op = SuperResolution(4)
    truth = tiny_generator.synthesis(tiny_generator.mapping(torch.randn(1, tiny_generator.z_dim))).detach()
    obs = op(truth)
    config = BRGMConfig(sigma_pixel=0.2, kappa=0.0)
    m64 = brgm_model(tiny_generator, op, obs.double(), config=config, num_stats_samples=200)
    assert m64.observation.dtype == torch.float32  # the generator's dtype
    torch.testing.assert_close(m64.observation, obs[0])
    trace = pyro.poutine.trace(m64.model).get_trace()  # runs in Pyro without a dtype clash
    assert math.isfinite(float(trace.log_prob_sum().detach()))
    with pytest.raises(TypeError, match=r"observation must be a float tensor in \[-1, 1\], got dtype torch.uint8; "
                                        r"convert uint8 images with x / 127.5 - 1"):
        brgm_model(tiny_generator, op, ((obs + 1) * 127.5).to(torch.uint8), config=config, num_stats_samples=200)
    bad = obs.clone()
    bad[0, 0, 0, 0] = float("nan")
    bad[0, 0, 1, 1] = float("inf")
    with pytest.raises(ValueError, match=r"observation has 2 non-finite values \(NaN or inf\) of 16"):
        brgm_model(tiny_generator, op, bad, config=config, num_stats_samples=200)


def test_non_finite_weights_and_config_values_are_clear_errors(tiny_generator):
    import copy

    op = SuperResolution(4)
    obs = torch.zeros(1, 1, 4, 4)
    for bad in (dict(kappa=float("inf")), dict(kappa=float("nan")), dict(sigma_pixel=float("inf")),
                dict(sigma_perceptual=float("nan"))):
        with pytest.raises(ValueError, match="finite number"):
            BRGMConfig(**bad)
    broken = copy.deepcopy(tiny_generator)
    with torch.no_grad():
        next(broken.synthesis.parameters()).fill_(float("nan"))
    with pytest.raises(ValueError, match=r"G\(mu\), is not finite"):
        brgm_model(broken, op, obs, config=BRGMConfig(sigma_pixel=0.2), num_stats_samples=200)
    broken = copy.deepcopy(tiny_generator)
    with torch.no_grad():
        next(broken.mapping.parameters()).fill_(float("inf"))
    with pytest.raises(ValueError, match="mapping network gives non-finite w"):
        brgm_model(broken, op, obs, config=BRGMConfig(sigma_pixel=0.2), num_stats_samples=200)
