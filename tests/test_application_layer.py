"""Contracts of the application layer: one model builder (``brgm_model``) whose model keeps its
config, one task factory (``make_corruption``), the command line's weights landing in
``model.config``, and the model the recommended posterior is fitted to (``calibrated_model``)."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from torch import nn

from brgm_pyro.app.cli import main
from brgm_pyro.app.cli_args import corruption_from_settings, model_from_settings
from brgm_pyro.app.parser import build_parser
from brgm_pyro.app.settings import resolve_settings
from brgm_pyro.corruptions import SuperResolution, make_corruption
from brgm_pyro.functional import image_shape
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


def test_the_model_keeps_the_config_its_parts_were_built_from(problem):
    G, op, y, phi = problem
    model = brgm_model(G, op, y, features=phi)
    assert model.config == BRGMConfig(**RECOMMENDED)
    # the parts say what the config says
    assert [lik.sigma for lik in model.likelihoods] == [0.2, 0.05] and model.colinearity.kappa == 0.3

    # a replaced default config gives the parts it names, and a different log joint
    ws = fixed_latents(model)
    changed = brgm_model(G, op, y, features=phi,
                         config=replace(default_config(G, op, phi), sigma_pixel=0.1, kappa=0.0))
    assert changed.config == BRGMConfig(0.1, 0.05, 0.0, "per-dimension")
    assert changed.colinearity is None and [lik.sigma for lik in changed.likelihoods] == [0.1, 0.05]
    assert not torch.allclose(log_joint(changed, ws), log_joint(model, ws))

    # no feature network: the perceptual term is off, and the config says so
    assert brgm_model(G, op, y).config == BRGMConfig(0.2, None, 0.3, "per-dimension")
    # a generator without a recommendation: the authors' released balance, as before
    G.metadata = {}
    assert brgm_model(G, op, y, features=phi).config == released_config(G, op, phi)


def test_model_config_is_what_the_command_line_asked_for(problem, tmp_path):
    G, op, y, phi = problem
    image = tmp_path / "x.npy"
    np.save(image, np.zeros((8, 8), np.uint8))
    argv = ["reconstruct", str(image), "--task", "super-resolution", "--factor", "2", "--lambda-pixel", "100",
            "--lambda-colin", "0.5", "--sigma-perceptual", "0.02", "--kernel", "bicubic", "--out", str(tmp_path / "o")]

    def settings(extra=()):
        return resolve_settings(build_parser().parse_args(argv + list(extra)), argv)

    corruption = corruption_from_settings(settings(), G)
    assert corruption.describe() == op.describe()
    model = model_from_settings(settings(), G, corruption, y, phi)
    # Eq. 6: sigma = lambda^-1/2, kappa = lambda_colin / 2; the rest is the generator's recommendation
    assert model.config == BRGMConfig(100**-0.5, 0.02, 0.25, "per-dimension")
    assert [lik.sigma for lik in model.likelihoods] == [pytest.approx(0.1), 0.02]
    assert model.colinearity.kappa == 0.25
    assert weights_report(model) == asdict(model.config)

    learned = model_from_settings(settings(["--learn-noise"]), G, corruption, y, phi)
    report = weights_report(learned)
    assert report["sigma_pixel"] == "learned, latent ~ HalfNormal(scale=0.5)"
    assert {k: v for k, v in report.items() if k != "sigma_pixel"} == {
        "sigma_perceptual": 0.02, "kappa": 0.25, "prior_std": "per-dimension", "misfit_scale": None,
        "layer_correlation": 0.0}


def test_the_command_line_takes_the_weights_of_its_setting_and_flags_still_win(problem, tmp_path):
    """``recommended_configs``: --task super-resolution --factor 2 --kernel bicubic-antialias gets its own entry,
    --mask-id 0 its own, --mask-id 1 (no entry) the common recommendation; a flag overrides either."""
    G, _, y, phi = problem
    G.metadata = {"recommended_config": dict(RECOMMENDED),
                  "recommended_configs": {"super-resolution-x2-bicubic-antialias": {"sigma_pixel": 0.05,
                                                                                    "sigma_perceptual": None},
                                          "inpainting-mask0": {"kappa": 0.0}}}
    image = tmp_path / "x.npy"
    np.save(image, np.zeros((8, 8), np.uint8))

    def config(*flags: str) -> BRGMConfig:
        argv = ["reconstruct", str(image), *flags, "--out", str(tmp_path / "o")]
        settings = resolve_settings(build_parser().parse_args(argv), argv)
        corruption = corruption_from_settings(settings, G)
        obs = y if settings.task == "super-resolution" else torch.zeros(1, *image_shape(G))
        return model_from_settings(settings, G, corruption, obs, phi).config

    sr = ["--task", "super-resolution", "--factor", "2", "--kernel", "bicubic-antialias"]
    assert config(*sr) == BRGMConfig(0.05, None, 0.3, "per-dimension")
    assert config(*sr, "--sigma-pixel", "0.1") == BRGMConfig(0.1, None, 0.3, "per-dimension")
    assert config("--task", "super-resolution", "--factor", "2", "--kernel", "bicubic") == BRGMConfig(**RECOMMENDED)
    assert config("--task", "inpainting", "--mask-id", "0") == BRGMConfig(0.2, 0.05, 0.0, "per-dimension")
    assert config("--task", "inpainting", "--mask-id", "1") == BRGMConfig(**RECOMMENDED)
    # the prior's layer correlation: a flag like the weights, over the setting's recommendation
    G.metadata["recommended_configs"]["inpainting-mask0"]["layer_correlation"] = 0.6
    assert config("--task", "inpainting", "--mask-id", "0").layer_correlation == 0.6
    assert config("--task", "inpainting", "--mask-id", "0", "--layer-correlation", "0").layer_correlation == 0.0
    assert config(*sr, "--layer-correlation", "0.3") == BRGMConfig(0.05, None, 0.3, "per-dimension",
                                                                   layer_correlation=0.3)


def test_a_weight_given_twice_is_refused_before_loading(tmp_path, capsys):
    assert main(["reconstruct", str(tmp_path / "x.png"), "--task", "super-resolution", "--sigma-pixel", "0.1",
                 "--lambda-pixel", "100", "--out", str(tmp_path / "out")]) == 2
    assert "give either --sigma-pixel or --lambda-pixel, not both" in capsys.readouterr().err


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


def test_calibrated_model_keeps_the_observation_and_sigma_pixel_and_drops_the_rest():
    from brgm_pyro.bundled import load_domain_features
    from brgm_pyro.generators import load_generator
    from brgm_pyro.inference import calibrated_model

    G = load_generator("fashion-mnist-32")
    op = make_corruption("inpainting", 32, mask_id=0)  # the bundled weights: perceptual, colinearity and misfit terms
    y = op(torch.rand(2, 1, 32, 32) * 2 - 1)
    model = brgm_model(G, op, y, features=load_domain_features())
    target = calibrated_model(model)
    assert model.config.kappa > 0 and model.config.sigma_perceptual is not None and model.config.misfit_scale
    assert target.config == BRGMConfig(model.config.sigma_pixel, None, 0.0, "per-dimension",
                                       misfit_scale=model.config.misfit_scale)
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


def test_the_application_modules_import_each_other_without_a_circle():
    from .test_layers import SOURCES, within

    app = {name for name in SOURCES if within(name, "brgm_pyro.app")}
    edges = {name: {m for t in SOURCES[name] for m in app if t == m or t.startswith(m + ".")} - {name}
             for name in app}
    assert "brgm_pyro.app.report" in edges["brgm_pyro.app.dataset_run"]  # the scanner sees the app's imports

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and not seen.add(n) and reaches(n, goal, seen)) for n in edges[start])

    circles = sorted(name for name in app if reaches(name, name, set()))
    assert circles == []
    # the import that made report <-> evaluation a circle is gone: the tables live with the evaluation
    assert not any(within(t, "brgm_pyro.app.evaluation") for t in SOURCES["brgm_pyro.app.report"])
