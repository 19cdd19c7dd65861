"""Pixel intervals and their widening about the midpoint (inference/intervals.py), and the
conformal interval factors fitted from them on real images (study/real_images.py, issue 25)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from brgm_pyro.inference.intervals import (
    central_interval, check_factor, coverage_by_factor, interval_coverage_by_factor, widen_interval,
)
from brgm_pyro.inference.widening import check_interval_scale
from brgm_pyro.study.measures import interval_coverage
from brgm_pyro.study.real_images import RealCalibrationReport


def _normal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def test_central_interval_and_its_widening_by_hand():
    draws = torch.arange(11, dtype=torch.float64).reshape(11, 1) * torch.tensor([[1.0, 2.0]])  # 0..10 and 0..20
    lower, upper = central_interval(draws, 0.8)  # quantiles 0.1 / 0.9 of 0..10: 1 and 9 (linear interpolation)
    assert lower.tolist() == pytest.approx([1.0, 2.0]) and upper.tolist() == pytest.approx([9.0, 18.0])
    lo2, up2 = widen_interval(lower, upper, 1.5)  # midpoints 5 / 10, half-widths 4 / 8 -> 6 / 12
    assert lo2.tolist() == pytest.approx([-1.0, -2.0]) and up2.tolist() == pytest.approx([11.0, 22.0])
    for got, want in zip(widen_interval(lower, upper, 1.0), (lower, upper)):
        torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="positive number"):
        widen_interval(lower, upper, 0.0)
    with pytest.raises(ValueError, match="upper must be >= lower"):
        widen_interval(upper, lower, 1.0)
    with pytest.raises(ValueError, match="level must be in"):
        central_interval(draws, 1.0)
    with pytest.raises(ValueError, match="at least 2 draws"):
        central_interval(draws[:1], 0.5)


def test_coverage_by_factor_at_one_is_the_draws_own_coverage_and_matches_the_normal_law():
    g = torch.Generator().manual_seed(0)
    K = 20_000
    draws = torch.randn(400, K, generator=g, dtype=torch.float64)  # every pixel's draws: N(0, 1)
    truth = 2.0 * torch.randn(K, generator=g, dtype=torch.float64)  # the truth: N(0, 2^2), twice as wide
    factors = [0.5, 1.0, 2.0, 3.0]
    got = coverage_by_factor(draws, truth, 0.9, factors)
    assert got == sorted(got)  # nested intervals: coverage never falls as the factor grows
    assert got[1] == pytest.approx(interval_coverage(draws, truth, [0.9])[0], abs=1e-12)  # factor 1: the draws' own
    z = 1.6448536269514722  # the interval is about +-z f; the truth is inside with P(|2 Z| <= z f)
    for f, c in zip(factors, got):
        assert c == pytest.approx(2 * _normal_cdf(z * f / 2) - 1, abs=0.015)
    with pytest.raises(ValueError, match=r"must be \(n, K\)"):
        coverage_by_factor(draws, truth[:10], 0.9)


def test_coverage_of_given_intervals_by_hand_and_the_positive_checks():
    lower, upper = torch.tensor([0.0, -1.0, 2.0]), torch.tensor([2.0, 1.0, 2.0])  # midpoints 1, 0, 2; half 1, 1, 0
    truth = torch.tensor([2.5, 0.5, 2.0])  # distances 1.5, 0.5, 0
    assert interval_coverage_by_factor(lower, upper, truth, [0.4, 1.0, 1.5, 2.0]) == pytest.approx(
        [1 / 3, 2 / 3, 1.0, 1.0])
    draws = torch.randn(50, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    truth = torch.linspace(-2, 2, 7, dtype=torch.float64)
    assert coverage_by_factor(draws, truth, 0.5, [0.5, 1.5]) == interval_coverage_by_factor(
        *central_interval(draws, 0.5), truth, [0.5, 1.5])
    with pytest.raises(ValueError, match="one shape"):
        interval_coverage_by_factor(lower, upper, truth[:2])
    with pytest.raises(ValueError, match="at least one factor"):
        interval_coverage_by_factor(lower, upper, torch.zeros(3), [])
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="the interval factor must be a positive number"):
            check_factor(bad)
        with pytest.raises(ValueError, match="the interval scale must be a positive number"):
            check_interval_scale(bad)
    assert check_factor(2) == 2.0 and isinstance(check_interval_scale(1), float)


def _report(cal: np.ndarray, ev: np.ndarray, factors, levels=(0.5, 0.9)) -> RealCalibrationReport:
    """A report whose records hold the given coverage (images, levels, factors) by interval factor."""
    def records(cov):
        return [{"index": i, "by_factor": {f"{a:g}": list(cov[i, j]) for j, a in enumerate(levels)},
                 "half_width": {f"{a:g}": 10.0 * (j + 1) for j, a in enumerate(levels)},
                 "by_scale": {"1": {"coverage": list(cov[i, :, 0])}}} for i in range(len(cov))]
    settings = {"levels": list(levels), "scales": [1.0], "alpha": 0.1, "interval_factors": list(factors),
                "setting": "test", "sigma_pixel": 0.1}
    return RealCalibrationReport(settings, {"plain": {"calibration": records(cal), "evaluation": records(ev)}})


def test_interval_factors_meet_the_risk_bound_per_level_and_are_reported():
    factors = [0.5, 1.0, 1.5, 2.0]
    n = 29  # the bound n/(n+1) mean + 1/(n+1) <= alpha needs mean loss <= (alpha (n + 1) - 1) / n
    cov = np.tile(np.array([[0.30, 0.50, 0.60, 0.70], [0.80, 0.90, 0.955, 0.99]]), (n, 1, 1))
    report = _report(cov, cov[:5], factors)
    fits = report.fit_intervals("plain")
    # 50%: needs mean loss <= (0.5 * 30 - 1) / 29 = 0.483, i.e. coverage >= 0.517: factor 1.5 (0.60)
    # 90%: needs mean loss <= (0.1 * 30 - 1) / 29 = 0.069, i.e. coverage >= 0.931: factor 1.5 (0.955)
    assert fits["0.5"]["scale"] == 1.5 and fits["0.9"]["scale"] == 1.5
    assert fits["0.5"]["plug_in_scale"] == 1.0 and fits["0.9"]["plug_in_scale"] == 1.0  # no finite-sample margin
    rows = report.interval_summary("plain", "evaluation")
    assert [r["factor"] for r in rows] == [1.5, 1.5]
    assert rows[1]["coverage"]["mean"] == pytest.approx(0.955) and rows[1]["num_images"] == 5
    assert rows[1]["width"]["mean"] == pytest.approx(2 * 1.5 * 20.0)  # twice the half-width times the factor
    assert "| plain | 0.9 | conformal: 1.5 (n = 29) | 5 | 0.955 ± 0.000 | 60.0 ± 0.0 |" in report.interval_table()
    stored = report.interval_scales("plain")
    assert stored["interval_factors"] == {"test": {"0.5": 1.5, "0.9": 1.5}}
    assert stored["interval_calibration"]["test"]["interval_factors"]["0.9"]["factor"] == 1.5
    # another report's factors, read on these images (e.g. real-image factors on model-drawn images)
    at = report.coverage_at("plain", "evaluation", {0.9: 2.0, 0.5: 0.5})
    assert [(e["level"], e["coverage"]["mean"]) for e in at] == [(0.9, pytest.approx(0.99)), (0.5, pytest.approx(0.3))]
    with pytest.raises(ValueError, match="not on this report's grid"):
        report.coverage_at("plain", "evaluation", {0.9: 1.7})
    # too few images for a 90% guarantee: no factor, none stored
    small = _report(cov[:9], cov[:2], factors)
    assert small.fit_intervals("plain")["0.9"]["scale"] is None
    assert "interval_factors" not in small.interval_scales("plain")
    assert "none on the grid meets the bound (n = 9)" in small.interval_table()
    with pytest.raises(ValueError, match="no coverage by interval factor"):
        old = RealCalibrationReport({"levels": [0.9], "scales": [1.0]}, {"plain": {"calibration": [{}]}})
        old.fit_intervals("plain")


def test_interval_factors_hold_their_guarantee_on_exchangeable_images():
    """Monte Carlo: images whose pixel errors are heavier-tailed than their draws (a per-image error
    scale, log-normal across images); the factor fitted on 30 images, checked on a new one."""
    rng = np.random.default_rng(1)
    factors = [round(0.1 * k, 1) for k in range(1, 81)]
    n, trials, K = 30, 300, 200
    draws = torch.tensor(rng.standard_normal((64, K)))  # every image's draws: the same N(0, 1) per pixel

    def image_coverage():
        truth = torch.tensor(rng.standard_normal(K) * np.exp(0.6 * rng.standard_normal() + 0.3))
        return [coverage_by_factor(draws, truth, a, factors) for a in (0.5, 0.9)]

    new = {0.5: [], 0.9: []}
    for _ in range(trials):
        cal = np.array([image_coverage() for _ in range(n)])
        report = _report(cal, cal[:1], factors)
        fits = report.fit_intervals("plain")
        test = image_coverage()
        for j, a in enumerate((0.5, 0.9)):
            new[a].append(test[j][factors.index(fits[f"{a:g}"]["scale"])])
    for a in (0.5, 0.9):
        mean, se = np.mean(new[a]), np.std(new[a]) / np.sqrt(trials)
        assert mean >= a - 3 * se  # E[coverage of a new image] >= level
        assert mean <= a + 0.1  # and not vacuous


def test_interval_factors_resolve_from_the_metadata_only_in_their_setting():
    from types import MappingProxyType

    from brgm_pyro.app.settings import Settings, interval_factors_for, interval_scale_for
    from brgm_pyro.corruptions import Inpainting, SuperResolution, standard_mask

    metadata = {"interval_scales": {"inpainting-mask0": 1.35, "super-resolution-x4-bicubic-antialias": 0.95},
                "interval_factors": {"inpainting-mask0": {"0.9": 1.7, "0.5": 1.2}}}

    def both(corruption, metadata=metadata, **kw):
        settings = Settings("reconstruct", MappingProxyType({}), **kw)
        return interval_factors_for(settings, metadata, corruption), interval_scale_for(settings, metadata, corruption)

    mask0 = Inpainting(standard_mask(0, 32))
    custom = standard_mask(0, 32).clone()
    custom[0, 0, 0] = 1 - custom[0, 0, 0]
    assert both(mask0) == ({0.5: 1.2, 0.9: 1.7}, 1.0)  # factors were fitted on the unwidened posterior
    assert both(SuperResolution(4, kernel="bicubic-antialias")) == (None, 0.95)  # no factors: the latent scale
    assert both(mask0, interval_scale=2.0) == (None, 2.0)  # the flag: the user widens w instead
    assert both(mask0, weights=MappingProxyType({"sigma_pixel": 0.05})) == (None, 1.0)  # another noise
    assert both(Inpainting(standard_mask(1, 32))) == (None, 1.0) and both(Inpainting(custom)) == (None, 1.0)
    for bad in ({"inpainting-mask0": {"1.5": 1.0}}, {"inpainting-mask0": {"0.9": -1.0}},
                {"inpainting-mask0": [1.0]}):
        with pytest.raises(ValueError, match="interval_factors"):
            both(mask0, metadata={"interval_factors": bad})


def test_checkpoint_metadata_checks_interval_factors(tmp_path, tiny_generator):
    from brgm_pyro.generators import CheckpointError, load_generator
    from brgm_pyro.generators.native_format import save_generator

    good = {"interval_factors": {"inpainting-mask0": {"0.5": 1.2, "0.9": 1.7}}}
    save_generator(tiny_generator, tmp_path / "g.pt", metadata=good)
    assert load_generator(str(tmp_path / "g.pt")).metadata["interval_factors"] == good["interval_factors"]
    for bad, match in (({"m": {"0.9": 0.0}}, r"is not a finite number in \(0, 100\]"),
                       ({"m": {"1.2": 1.0}}, r"key must be a level in \(0, 1\)"),
                       ({"m": {"high": 1.0}}, r"key must be a level in \(0, 1\)"),
                       ({"m": 1.0}, "interval_factors")):
        save_generator(tiny_generator, tmp_path / "bad.pt", metadata={"interval_factors": bad})
        with pytest.raises(CheckpointError, match=match):
            load_generator(str(tmp_path / "bad.pt"))


@pytest.mark.usefixtures("one_thread")
def test_reconstruct_writes_the_calibrated_intervals_the_metadata_records(tmp_path):
    """Through the CLI: a generator whose metadata records interval factors for in-painting mask 0
    gets its fullrank intervals widened per level and written; their coverage in metrics.json equals
    one counted here from the written arrays; --interval-scale turns them off."""
    import json

    from brgm_pyro.app.cli import main
    from brgm_pyro.bundled import load_test_images
    from brgm_pyro.corruptions import make_corruption
    from brgm_pyro.generators import load_generator
    from brgm_pyro.generators.native_format import save_generator
    from brgm_pyro.io import save_image

    bundled = load_generator("fashion-mnist-32")
    metadata = {**bundled.metadata, "interval_factors": {"inpainting-mask0": {"0.5": 1.3, "0.9": 1.6}}}
    save_generator(bundled, tmp_path / "g.pt", metadata=metadata)
    truth = load_test_images()[0][3:5]
    for i in range(2):
        save_image(truth[i:i + 1], tmp_path / "images" / f"img{i}.png")
    common = ["--task", "inpainting", "--mask-id", "0", "--generator", str(tmp_path / "g.pt"), "--steps", "4",
              "--samples", "4", "--no-progress"]
    out = tmp_path / "one"
    assert main(["reconstruct", str(tmp_path / "images" / "img0.png"), *common, "--out", str(out)]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["fullrank_interval_scale"] == 1.0 and report["fullrank_interval_factors"] == {"0.5": 1.3, "0.9": 1.6}
    unknown = make_corruption("inpainting", 32, mask_id=0).observation_mask((1, 32, 32)) == 0
    written = torch.from_numpy(np.asarray(Image.open(out / "truth.png"), dtype=np.float64)) / 127.5 - 1
    widths = {}
    for pct in ("50", "90"):
        lower, upper = torch.from_numpy(np.load(out / f"fullrank_interval{pct}.npy")).double()
        assert (lower <= upper).all() and (out / f"fullrank_interval{pct}_lower.png").is_file()
        inside = (written >= lower[0]) & (written <= upper[0])
        m = report["metrics"]["fullrank"]
        assert m[f"interval{pct}_coverage_unknown"] == pytest.approx(float(inside[unknown[0]].double().mean()),
                                                                     abs=0.01)  # truth.png is 8-bit
        widths[pct] = m[f"interval{pct}_mean_width"]
        assert widths[pct] == pytest.approx(float((upper - lower).mean() * 127.5), rel=1e-5)
    assert widths["90"] > widths["50"] > 0
    # a data set run writes them per image; --interval-scale turns the factors off
    out = tmp_path / "many"
    assert main(["reconstruct", str(tmp_path / "images"), *common, "--out", str(out)]) == 0
    for i in range(2):
        m = json.loads((out / f"img{i}" / "metrics.json").read_text())["metrics"]["fullrank"]
        assert m["interval90_factor"] == 1.6 and (out / f"img{i}" / "fullrank_interval90.npy").is_file()
    out = tmp_path / "scaled"
    assert main(["reconstruct", str(tmp_path / "images" / "img0.png"), *common, "--interval-scale", "1.35",
                 "--out", str(out)]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["fullrank_interval_scale"] == 1.35 and "fullrank_interval_factors" not in report
    assert not list(out.glob("fullrank_interval*"))


def test_prior_draw_images_are_seeded_model_draws_in_range():
    from brgm_pyro.generators import LinearGenerator
    from brgm_pyro.models.brgm import brgm_model, generate
    from brgm_pyro.models.config import BRGMConfig
    from brgm_pyro.study.real_images import prior_draw_images

    G = LinearGenerator.random(num_ws=2, w_dim=3, img_resolution=8, scale=2.0, seed=2)
    from brgm_pyro.corruptions.simple import Denoising

    model = brgm_model(G, Denoising(), torch.zeros(1, 8, 8), config=BRGMConfig(0.1, None, 0.0, "per-dimension"),
                       num_stats_samples=200)
    a, b = prior_draw_images(model, 5, seed=4), prior_draw_images(model, 5, seed=4)
    assert a.shape == (5, 1, 8, 8) and torch.equal(a, b) and a.min() >= -1 and a.max() <= 1
    g = torch.Generator().manual_seed(4)  # the same draws, computed here: G(w) for w ~ N(loc, scale^2), clamped
    loc, scale = model.prior.init_loc(), model.prior.init_scale()
    w = loc + scale * torch.randn((5, *loc.shape), generator=g).to(loc)
    torch.testing.assert_close(a, generate(G, model.prior.ws_from_latent(w)).clamp(-1, 1))
    assert not torch.equal(a, prior_draw_images(model, 5, seed=5))


def test_bundled_generator_records_the_real_image_fits():
    """The bundled generator's interval_factors (metadata and its JSON copy) are the conformal factors
    that benchmarks/real_images.py fitted on the committed real calibration images, for the posterior
    `brgm reconstruct` fits in each setting (its recommended sigma_pixel and misfit scale, at that noise)."""
    import json
    from pathlib import Path

    from brgm_pyro.corruptions import make_corruption, setting_name
    from brgm_pyro.generators import load_generator
    from brgm_pyro.inference import calibrated_config
    from brgm_pyro.models import BRGMConfig, default_config

    root = Path(__file__).resolve().parents[1]
    fitted = {}
    bundled = load_generator("fashion-mnist-32")
    for path in sorted((root / "benchmarks" / "results" / "real_images_intervals_v3").glob("*.json")):
        report = RealCalibrationReport.from_json(path)
        fitted.update(report.interval_scales("plain").get("interval_factors", {}))
        name = report.settings["setting"]
        op = (make_corruption("inpainting", 32, mask_id=int(name.removeprefix("inpainting-mask")))
              if name.startswith("inpainting") else
              make_corruption("super-resolution", 32, factor=4, kernel="bicubic-antialias"))
        assert setting_name(op) == name
        assert BRGMConfig(**report.settings["config"]) == calibrated_config(default_config(bundled, op))
        assert report.settings["sigma_pixel"] == report.settings["config"]["sigma_pixel"]
    assert set(fitted) == {"inpainting-mask0", "inpainting-mask1", "super-resolution-x4-bicubic-antialias"}
    assert bundled.metadata["interval_factors"] == fitted
    card = json.loads((root / "brgm_pyro" / "pretrained" / "fashion-mnist-32.json").read_text())
    assert card["interval_factors"] == fitted
