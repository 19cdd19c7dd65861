"""Contracts of the application layer: one model builder (``brgm_model``) whose model keeps its
config, one task factory (``make_corruption``), the command line's weights landing in
``model.config``, and the deprecated entry points still giving the same objects (with a warning)."""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest
import torch
from torch import nn

from brgm_pyro.app.cli import build_parser, main
from brgm_pyro.app.cli_args import corruption_from_args, model_from_args
from brgm_pyro.corruptions import SuperResolution, make_corruption
from brgm_pyro.inference import log_joint
from brgm_pyro.models import BRGMConfig, brgm_model, default_config, released_config
from brgm_pyro.perceptual import FeatureNetwork
from brgm_pyro.app.report import weights_report

RECOMMENDED = {"sigma_pixel": 0.2, "sigma_perceptual": 0.05, "kappa": 0.3, "prior_std": "per-dimension"}


def feature_net() -> FeatureNetwork:
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, 2, 3, stride=2))
    return FeatureNetwork(net, ["1", "2"])


@pytest.fixture
def problem(tiny_generator):
    """A generator that recommends its weights (as the bundled one does), x2 SR of one of its images."""
    G = tiny_generator
    G.metadata = {"recommended_config": dict(RECOMMENDED)}
    torch.manual_seed(1)
    truth = G.synthesis(G.mapping(torch.randn(1, G.z_dim))).detach()
    op = SuperResolution(2)
    return G, op, op(truth), feature_net()


def fixed_latents(model, n: int = 3) -> torch.Tensor:
    torch.manual_seed(7)
    return model.prior.mean + 0.5 * torch.randn(n, *model.prior.mean.shape[-2:])


def test_one_builder_gives_the_model_of_the_old_entry_point(problem):
    from brgm_pyro.app.reconstruction import build_problem

    G, op, y, phi = problem
    model = brgm_model(G, op, y, features=phi)
    with pytest.warns(DeprecationWarning, match="build_problem is deprecated"):
        old = build_problem(G, op, y, phi)
    assert model.config == old.config == BRGMConfig(**RECOMMENDED)
    ws = fixed_latents(model)
    assert torch.allclose(log_joint(model, ws), log_joint(old, ws), rtol=1e-10, atol=0)
    # the parts say what the config says
    assert [lik.sigma for lik in model.likelihoods] == [0.2, 0.05] and model.colinearity.kappa == 0.3

    # build_problem's overrides == brgm_model with the replaced default config
    with pytest.warns(DeprecationWarning):
        old = build_problem(G, op, y, phi, sigma_pixel=0.1, kappa=0.0)
    model = brgm_model(G, op, y, features=phi, config=replace(default_config(G, op, phi), sigma_pixel=0.1, kappa=0.0))
    assert model.config == old.config == BRGMConfig(0.1, 0.05, 0.0, "per-dimension")
    assert model.colinearity is None and torch.allclose(log_joint(model, ws), log_joint(old, ws), rtol=1e-10, atol=0)
    assert not torch.allclose(log_joint(model, ws), log_joint(brgm_model(G, op, y, features=phi), ws))

    # no feature network: the perceptual term is off, and the config says so
    assert brgm_model(G, op, y).config == BRGMConfig(0.2, None, 0.3, "per-dimension")
    # a generator without a recommendation: the authors' released balance, as before
    G.metadata = {}
    assert brgm_model(G, op, y, features=phi).config == released_config(G, op, phi)


def test_model_config_is_what_the_command_line_asked_for(problem):
    G, op, y, phi = problem
    argv = ["reconstruct", "x.png", "--task", "super-resolution", "--factor", "2", "--lambda-pixel", "100",
            "--lambda-colin", "0.5", "--sigma-perceptual", "0.02"]
    args = build_parser().parse_args(argv)
    corruption = corruption_from_args(args, G.img_resolution)
    assert corruption.describe() == op.describe()
    model = model_from_args(args, G, corruption, y, phi)
    # Eq. 6: sigma = lambda^-1/2, kappa = lambda_colin / 2; the rest is the generator's recommendation
    assert model.config == BRGMConfig(100**-0.5, 0.02, 0.25, "per-dimension")
    assert [lik.sigma for lik in model.likelihoods] == [pytest.approx(0.1), 0.02]
    assert model.colinearity.kappa == 0.25
    assert weights_report(model) == asdict(model.config)

    learned = model_from_args(build_parser().parse_args(argv + ["--learn-noise"]), G, corruption, y, phi)
    report = weights_report(learned)
    assert report["sigma_pixel"] == "learned, latent ~ HalfNormal(scale=0.5)"
    assert {k: v for k, v in report.items() if k != "sigma_pixel"} == {
        "sigma_perceptual": 0.02, "kappa": 0.25, "prior_std": "per-dimension", "misfit_scale": None}


def test_a_weight_given_twice_is_refused_before_loading(tmp_path, capsys):
    assert main(["reconstruct", str(tmp_path / "x.png"), "--task", "super-resolution", "--sigma-pixel", "0.1",
                 "--lambda-pixel", "100", "--out", str(tmp_path / "out")]) == 2
    assert "give either --sigma-pixel or --lambda-pixel, not both" in capsys.readouterr().err


def test_make_task_is_a_deprecated_alias_of_make_corruption():
    from brgm_pyro.app.reconstruction import make_task

    with pytest.warns(DeprecationWarning, match="make_task is deprecated"):
        old = make_task("inpainting", 16, mask_id=3, factor=None, kernel="bicubic")  # other tasks' arguments ignored
    assert torch.equal(old.mask, make_corruption("inpainting", 16, mask_id=3).mask)
    for task, kwargs in (("super-resolution", {"factor": 2, "kernel": "bicubic-antialias"}),
                         ("compressed-sensing", {"seed": 1}), ("blur", {}), ("denoising", {})):
        with pytest.warns(DeprecationWarning):
            old = make_task(task, 16, **({"measurements": None} if task == "compressed-sensing" else {}), **kwargs)
        new = make_corruption(task, 16, **kwargs)
        assert old.describe() == new.describe()
        x = torch.rand(1, 1, 16, 16) * 2 - 1
        assert torch.equal(old(x), new(x))


def test_make_corruption_checks_against_the_resolution():
    assert make_corruption("compressed-sensing", 16)(torch.zeros(1, 1, 16, 16)).shape[-1] == 64  # 16^2 / 4
    with pytest.raises(ValueError, match="factor 3 must be >= 2 and divide the resolution 16"):
        make_corruption("super-resolution", 16, factor=3)
    with pytest.raises(ValueError, match="mask is 8x8 but the generator makes 16x16"):
        make_corruption("inpainting", 16, mask=torch.ones(8, 8))
    with pytest.raises(TypeError, match="task 'inpainting' takes mask, mask_id; got kernel"):
        make_corruption("inpainting", 16, mask_id=0, kernel="bicubic")
    with pytest.raises(ValueError, match="needs the resolution"):
        make_corruption("inpainting", mask_id=0)


def test_moved_names_keep_their_old_import_paths():
    from brgm_pyro.app import evaluation, reconstruction, report

    for name in ("summary_figure", "observation_display", "json_safe", "write_json", "parameter_report",
                 "format_parameter_report"):
        assert getattr(reconstruction, name) is getattr(report, name)
    assert evaluation.write_tables is report.write_tables
    assert reconstruction.default_config is default_config


def test_calibrated_model_keeps_the_observation_and_sigma_pixel_and_drops_the_rest():
    from brgm_pyro.bundled import load_domain_features
    from brgm_pyro.generators import load_generator
    from brgm_pyro.app.reconstruction import calibrated_model

    G = load_generator("fashion-mnist-32")
    op = make_corruption("super-resolution", 32, factor=4, kernel="bicubic-antialias")
    y = op(torch.rand(2, 1, 32, 32) * 2 - 1)
    model = brgm_model(G, op, y, features=load_domain_features())
    target = calibrated_model(model)
    assert model.config.kappa > 0 and model.config.sigma_perceptual is not None
    assert target.config == BRGMConfig(model.config.sigma_pixel, None, 0.0, "per-dimension")
    assert target.colinearity is None and len(target.likelihoods) == 1
    assert torch.equal(target.observation, model.observation) and target.batched and target.num_images == 2
    assert calibrated_model(target) is target
    # one image: the same log joint as building the pixel-likelihood model directly
    single = calibrated_model(brgm_model(G, op, y[0], features=load_domain_features()))
    direct = brgm_model(G, op, y[0], config=target.config)
    latents = direct.prior.init_loc() + torch.randn(3, *direct.prior.init_loc().shape)
    torch.testing.assert_close(log_joint(single, latents), log_joint(direct, latents))
    assert not torch.allclose(log_joint(model if not model.batched else brgm_model(
        G, op, y[0], features=load_domain_features()), latents), log_joint(direct, latents))
