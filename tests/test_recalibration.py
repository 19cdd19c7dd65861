"""Simulation-calibrated interval width: widening is exact for Gaussians, and the fitted scale
recovers the known answer on the linear-Gaussian problem (1 for the exact posterior, 2 for one
whose std is halved)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from brgm_pyro.app.cli import main
from brgm_pyro.corruptions import Inpainting
from brgm_pyro.inference import Posterior, fit_vi
from brgm_pyro.inference.widening import widen
from brgm_pyro.study import (
    ScaleProblem, calibrate, choose_scale, coverage_by_scale, fit_interval_scale, simulate_problems, widened,
)

from .inference_problems import (
    exact_linear_posterior, half_mask, linear_gaussian_problem, linear_generator, load_benchmark,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


@pytest.fixture(scope="module")
def linear_problems():
    torch.set_num_threads(1)
    return simulate_problems(linear_generator(), Inpainting(half_mask()), 120, sigma_pixel=0.1, seed=11)


def test_widen_a_gaussian_posterior_is_exact():
    model = linear_gaussian_problem(diagonal=False).model
    posterior = fit_vi(model, guide="fullrank", num_steps=5, seed=0, progress=False)
    wide = widen(posterior, 1.7)
    q, q_wide = posterior.q.distribution, wide.q.distribution
    assert torch.allclose(q_wide.scale_tril, 1.7 * q.scale_tril) and torch.equal(q_wide.loc, q.loc)
    # the same draws, moved away from the centre by 1.7
    centre = posterior.mean_latent
    base = posterior.sample(50, images=False, seed=3).latents
    assert torch.allclose(wide.sample(50, images=False, seed=3).latents, centre + 1.7 * (base - centre), atol=1e-5)
    # its density is N(mu, 1.7^2 Sigma), computed independently
    x = base[:5]
    reference = torch.distributions.MultivariateNormal(q.loc.double(), covariance_matrix=2.89 * q.covariance_matrix
                                                       .double()).log_prob(x.reshape(5, -1).double())
    assert torch.allclose(wide.q.log_prob(x).double(), reference, atol=1e-3)
    assert wide.diagnostics["interval_scale"] == 1.7
    assert widen(posterior, 1.0) is posterior


def test_widen_any_posterior_moves_its_draws_about_the_centre():
    model = linear_gaussian_problem().model
    centre = torch.full((2, 3), 0.5)
    posterior = Posterior(model, lambda n: centre + torch.randn(n, 2, 3), centre)
    wide = widen(posterior, 3.0)
    torch.manual_seed(0)
    base = posterior.sample_latents(1000)
    torch.manual_seed(0)
    moved = wide.sample_latents(1000)
    assert torch.allclose(moved, centre + 3 * (base - centre))
    assert abs(float(moved.std()) - 3.0) < 0.15 and torch.equal(wide.mean_latent, centre)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="positive"):
            widen(posterior, bad)
    with pytest.raises(ValueError, match="mean_latent"):
        widen(Posterior(model, lambda n: torch.randn(n, 2, 3)), 2.0)


def test_choose_scale_minimises_the_mean_calibration_error():
    levels = [0.5, 0.9]
    # problem-pooled coverage at scales 1, 1.5, 2: too narrow, right, too wide
    coverage = np.array([[[0.30, 0.60], [0.52, 0.88], [0.70, 0.99]],
                         [[0.36, 0.70], [0.48, 0.92], [0.76, 0.97]]])
    scale, error = choose_scale([1.0, 1.5, 2.0], coverage, levels)
    assert scale == 1.5
    np.testing.assert_allclose(error, [(0.17 + 0.25) / 2, (0.0 + 0.0) / 2, (0.23 + 0.08) / 2])
    with pytest.raises(ValueError, match="problems, 2 scales"):
        choose_scale([1.0, 2.0], coverage, levels)
    with pytest.raises(ValueError, match="increasing"):
        choose_scale([2.0, 1.5, 1.0], coverage, levels)


@pytest.mark.parametrize("shrink, expected", [(1.0, 1.0), (0.5, 2.0)])
def test_fitted_scale_recovers_the_known_answer_on_the_linear_gaussian_problem(linear_problems, shrink, expected):
    method = exact_linear_posterior(shrink)
    torch.manual_seed(0)
    reduced = [ScaleProblem.from_posterior(p, method(p.model, 0), num_draws=200, seed=p.index)
               for p in linear_problems]
    for target in ("pixels", "latents"):
        fit = fit_interval_scale(reduced, target=target)
        assert abs(fit.scale - expected) <= 0.1 * expected, (target, fit.scale)
        assert fit.calibration_error[fit.scales.index(fit.scale)] < 0.02
        assert len(fit.coverage) == len(fit.scales) and len(fit.coverage[0]) == 9 and fit.num_problems == 120
    # a linear generator: the pixel coverage at scale s of the shrunk posterior is that of the exact one at s * shrink
    curves = coverage_by_scale(reduced[0], [1.0, 2.0], [0.5, 0.9])
    assert set(curves) == {"pixels", "latents", "rmse_unknown"} and len(curves["pixels"]) == 2


def test_widened_method_through_the_calibration_benchmark(linear_problems):
    """A posterior whose std is halved, widened by 2, is the exact posterior: nominal coverage."""
    report = calibrate(linear_problems[:80], {"halved-x2": widened(exact_linear_posterior(0.5), 2.0),
                                              "halved": exact_linear_posterior(0.5)}, num_draws=200, seed=5)
    for level in (0.5, 0.9):
        c = report.coverage("halved-x2", "pixels", level)
        assert abs(c["mean"] - level) < 3 * c["se"] + 0.02, (level, c)
    assert report.coverage("halved", "pixels", 0.9)["mean"] < 0.75




def test_cli_fits_and_applies_an_interval_scale(tmp_path, capsys):
    out = tmp_path / "scale"
    args = ["calibrate", "--task", "inpainting", "--methods", "vi-meanfield", "--num-problems", "2", "--steps", "3",
            "--num-draws", "16", "--out", str(out), "--no-progress"]
    assert main(args + ["--fit-interval-scale"]) == 0
    text = capsys.readouterr().out
    fit = json.loads((out / "interval_scale.json").read_text())
    assert fit["method"] == "vi-meanfield" and fit["scale"] in fit["scales"] and fit["num_problems"] == 2
    assert f"fitted scale: {fit['scale']:g}" in text and "| 0.50 |" in text
    assert main(args + ["--interval-scale", "1.5"]) == 0
    report = json.loads((out / "calibration.json").read_text())
    assert "vi-meanfield-x1.5" in report["records"] and report["settings"]["interval_scale"] == 1.5
    assert main(args + ["--fit-interval-scale", "--methods", "map,vi-meanfield"]) == 2
    assert "one method at a time" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reconstruct", "x.png", "--task", "inpainting", "--interval-scale", "0"])
    assert "must be a positive number" in capsys.readouterr().err


def test_benchmark_smoke(tmp_path):
    """benchmarks/interval_scale.py --smoke (what CI runs): per-problem files and the table."""
    bench = load_benchmark("interval_scale")
    out = tmp_path / "bench"
    bench.main(["--smoke", "--tasks", "inpainting", "--seeds", "2,3", "--num-problems", "1", "--out", str(out)])
    records = bench.load(out)
    assert sorted((r["problem_seed"], r["index"]) for r in records) == [(2, 0), (3, 0)]
    r = records[0]
    assert r["scales"] == [0.9, 1.0, 1.5] and len(r["pixels"]) == 3 and len(r["pixels"][0]) == 9
    assert r["fit_seconds"] > 0 and r["map_seconds"] > 0
    text, fitted = bench.table(records, [2])
    assert fitted["inpainting"] in r["scales"] and "| inpainting | 3 | held out | 1 |" in text


def test_cli_default_interval_scale_is_the_measured_one_only_in_its_setting():
    """One meaning, one place: the flag, else the scale the generator's metadata records for the
    setting at its own pixel noise, else 1."""
    from types import MappingProxyType

    from brgm_pyro.app.settings import Settings, interval_scale_for
    from brgm_pyro.corruptions import make_corruption

    metadata = {"interval_scales": {"inpainting-mask0": 1.35, "super-resolution-x4-bicubic-antialias": 0.95}}

    def scale(task, metadata=metadata, interval_scale=None, weights=MappingProxyType({}), **operator):
        settings = Settings("reconstruct", MappingProxyType({}), interval_scale=interval_scale, weights=weights)
        return interval_scale_for(settings, metadata, make_corruption(task, 32, **operator))

    sr = dict(factor=4, kernel="bicubic-antialias")
    assert scale("inpainting", mask_id=0) == 1.35 and scale("super-resolution", **sr) == 0.95
    assert scale("inpainting", mask_id=0, interval_scale=2.0) == 2.0  # given: used as it is
    custom = torch.ones(1, 32, 32)
    custom[..., :4] = 0
    assert scale("inpainting", mask_id=3) == 1.0 and scale("inpainting", mask=custom) == 1.0
    assert scale("inpainting", mask_id=0, metadata={}) == 1.0  # a generator that records none
    assert scale("inpainting", mask_id=0, weights=MappingProxyType({"sigma_pixel": 0.05})) == 1.0  # another noise
    assert scale("super-resolution", factor=4, kernel="bicubic") == 1.0
    assert scale("super-resolution", factor=2, kernel="bicubic-antialias") == 1.0
    assert scale("denoising") == 1.0
    with pytest.raises(ValueError, match="must be a positive number"):
        scale("inpainting", mask_id=0, metadata={"interval_scales": {"inpainting-mask0": -1.0}})


def test_the_bundled_generator_calibrates_its_settings_by_real_image_factors_not_a_latent_scale():
    """For each setting the bundled generator records interval factors for, `brgm reconstruct` at its own pixel
    noise applies those factors and widens nothing in the latents (scale 1); a latent scale recorded for such a
    setting would never be read, so the file records none there (benchmarks/results/interval_scale/ measured the
    first bundled generator's; docs/calibration.md)."""
    from types import MappingProxyType

    from brgm_pyro.app.settings import Settings, interval_factors_for, interval_scale_for
    from brgm_pyro.corruptions import make_corruption
    from brgm_pyro.generators import load_generator

    metadata = load_generator("fashion-mnist-32").metadata
    settings = Settings("reconstruct", MappingProxyType({}), interval_scale=None, weights=MappingProxyType({}))
    operators = {"inpainting-mask0": make_corruption("inpainting", 32, mask_id=0),
                 "inpainting-mask1": make_corruption("inpainting", 32, mask_id=1),
                 "super-resolution-x4-bicubic-antialias": make_corruption("super-resolution", 32, factor=4,
                                                                          kernel="bicubic-antialias")}
    assert set(metadata["interval_factors"]) == set(operators)
    for name, op in operators.items():
        factors = interval_factors_for(settings, metadata, op)
        assert factors == {float(a): f for a, f in metadata["interval_factors"][name].items()} and 0.5 in factors
        assert interval_scale_for(settings, metadata, op) == 1.0
    assert not set(metadata.get("interval_scales") or {}) & set(operators)


def test_the_recommended_posterior_refuses_a_bad_scale_before_fitting():
    from brgm_pyro.inference import MethodOptions, fit_recommended_posterior

    model = linear_gaussian_problem().model
    for bad in (0.0, -2.0, math.nan):
        with pytest.raises(ValueError, match="positive"):
            fit_recommended_posterior(model, interval_scale=bad)
        with pytest.raises(ValueError, match="positive"):
            MethodOptions(interval_scale=bad)
