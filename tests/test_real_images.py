"""Real-image calibration (brgm_pyro/study/real_images.py) and its conformal scale (brgm_pyro/study/conformal.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brgm_pyro.corruptions import Inpainting
from brgm_pyro.generators import LinearGenerator
from brgm_pyro.study.conformal import conformal_scale, monotone_losses, required_mean_loss
from brgm_pyro.study.real_images import (
    RealCalibrationReport, RealImageSplit, real_image_calibration, real_problems, split_images,
)


def test_conformal_scale_is_the_smallest_scale_meeting_the_risk_bound():
    scales = [0.5, 1.0, 2.0, 4.0]
    # 19 images: the bound n/(n+1) mean + 1/(n+1) <= 0.1 needs mean <= (0.1 * 20 - 1) / 19 = 1/19
    losses = np.array([[0.5, 0.2, 0.05, 0.0]] * 19)
    fit = conformal_scale(losses, scales, alpha=0.1)
    assert fit.scale == 2.0 and fit.num_images == 19
    np.testing.assert_allclose(fit.bound, 19 / 20 * losses[0] + 1 / 20)
    assert fit.plug_in_scale == 2.0  # the smallest scale with mean loss <= 0.1
    assert conformal_scale([[0.5, 0.3, 0.2, 0.25]], scales, 0.1).plug_in_scale == 2.0  # none reaches: least loss
    assert required_mean_loss(0.1, 19) == pytest.approx(1 / 19)
    # a non-monotone loss is replaced by its running maximum from the right
    np.testing.assert_allclose(monotone_losses([[0.3, 0.1, 0.2, 0.0]]), [[0.3, 0.2, 0.2, 0.0]])
    # 9 images cannot give a 90% guarantee with any loss above 0: the mean would have to be <= 0
    assert conformal_scale(np.full((9, 4), 0.01), scales, alpha=0.1).scale is None
    assert conformal_scale(np.zeros((9, 4)), scales, alpha=0.1).scale == 0.5
    with pytest.raises(ValueError, match="strictly increasing"):
        conformal_scale(losses, [1.0, 0.5, 2.0, 4.0])
    with pytest.raises(ValueError, match="fractions"):
        conformal_scale(losses + 1, scales)


def test_conformal_scale_holds_its_guarantee_on_exchangeable_images():
    """Monte Carlo check of the finite-sample guarantee with a known loss model: image i's
    miscoverage at scale s is exp(-s * u_i) with u_i ~ 0.1 + Exp(1) (heavy image-to-image variation)."""
    rng = np.random.default_rng(0)
    scales = np.linspace(0.5, 60, 200)
    n, alpha, trials = 12, 0.2, 4000
    risks = []
    for _ in range(trials):
        u = 0.1 + rng.exponential(size=n + 1)
        losses = np.exp(-np.outer(u, scales))
        fit = conformal_scale(losses[:n], scales, alpha)
        assert fit.scale is not None
        risks.append(np.exp(-fit.scale * u[n]))
    mean, se = np.mean(risks), np.std(risks) / np.sqrt(trials)
    assert mean <= alpha + 3 * se  # E[loss of a new image] <= alpha
    assert mean > alpha / 4  # and not vacuous


def _setup():
    G = LinearGenerator.random(num_ws=2, w_dim=3, img_resolution=8, scale=0.4, seed=2)
    mask = torch.ones(1, 8, 8)
    mask[..., :, 4:] = 0
    g = torch.Generator().manual_seed(0)
    real = (torch.rand(7, 1, 8, 8, generator=g) * 1.6 - 0.8)  # "real" images: not of the generator's range
    split = RealImageSplit(real[:3], [10, 11, 12], real[3:], [20, 21, 22, 23], "test rule", "test")
    return G, Inpainting(mask), split


def test_split_images_follows_the_recorded_rule_and_excludes_ids():
    images = torch.linspace(-1, 1, 20).reshape(20, 1, 1, 1).expand(20, 1, 2, 2).clone()
    ids = list(range(100, 120))[::-1]  # any order: the rule sorts by id
    split = split_images(images, ids, 4, 5, seed=7, exclude_ids=[100, 101, 102])
    remaining = list(range(103, 120))
    perm = np.random.default_rng(7).permutation(len(remaining))  # the rule, computed independently
    assert split.calibration_ids == [remaining[j] for j in perm[:4]]
    assert split.evaluation_ids == [remaining[j] for j in perm[4:9]]
    for x, i in zip(split.calibration, split.calibration_ids):  # each image travels with its id
        assert torch.equal(x, images[ids.index(i)])
    assert "seed 7" in split.rule and "3 ids excluded" in split.rule
    with pytest.raises(ValueError, match="asked for, 17 available"):
        split_images(images, ids, 10, 8, exclude_ids=[100, 101, 102])
    with pytest.raises(ValueError, match="one distinct id per image"):
        split_images(images, [1] * 20, 2, 2)


def test_real_problems_are_seeded_per_image_and_the_split_must_be_disjoint():
    G, f, split = _setup()
    a = real_problems(f, split.calibration, split.calibration_ids, 0.1, seed=3)
    b = real_problems(f, split.calibration[1:], split.calibration_ids[1:], 0.1, seed=3)
    assert torch.equal(a[1].observation, b[0].observation)  # image 11's noise does not depend on the others
    hidden = f.mask[0] == 0
    assert torch.all(a[0].observation[0][hidden] == 0) and a[0].unknown.sum() == 32
    with pytest.raises(ValueError, match="overlap"):
        RealImageSplit(split.calibration, [1, 2, 3], split.evaluation, [3, 4, 5, 6], "r", "s")
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        RealImageSplit(split.calibration * 3, [1, 2, 3], split.evaluation, [4, 5, 6, 7], "r", "s")


def test_real_image_calibration_end_to_end_with_resume(tmp_path, one_thread):
    G, f, split = _setup()
    options = dict(num_starts=2, num_steps=30, vi_steps=5, num_particles=2)
    out = tmp_path / "real.json"
    report = real_image_calibration(G, f, split, misfit="fit", alpha=0.2, scales=(0.5, 1.0, 2.0, 4.0),
                                    num_draws=64, batch_size=2, fit_options=options, out=out, setting="test-setting",
                                    num_stats_samples=200)
    for variant in ("plain", "misfit"):
        assert len(report.records[variant]["calibration"]) == 3 and len(report.records[variant]["evaluation"]) == 4
        for r in report.records[variant]["calibration"] + report.records[variant]["evaluation"]:
            assert r["mode_log_joint"] >= r["map_log_joint"] - 1e-3  # the mode is never below MAP's
            cov = [r["by_scale"][k]["coverage"] for k in ("0.5", "1", "2", "4")]
            assert all(0 <= c <= 1 for row in cov for c in row)
            assert cov[-1][1] >= cov[0][1] - 0.1  # 4x wider intervals hold (about) more
            one = report.factors.index(1.0)  # the draws' own intervals, counted by two independent routines
            assert [r["by_factor"][f"{a:g}"][one] for a in (0.5, 0.8, 0.9)] == pytest.approx(cov[1], abs=1e-12)
            assert all(np.diff(r["by_factor"]["0.9"]) >= 0)  # nested intervals
    assert report.settings["misfit_scale"] > 1e-3  # random images are far off the linear generator's range
    summary = report.summary("misfit", "evaluation", 1.0)
    assert summary["num_images"] == 4 and [c["level"] for c in summary["coverage"]] == [0.5, 0.8, 0.9]
    fit = report.fit("plain")
    assert fit["num_images"] == 3 and fit["alpha"] == 0.2
    stored = report.interval_scales("plain")
    assert stored["interval_calibration"]["test-setting"]["num_images"] == 3
    assert ("interval_scales" in stored) == (fit["scale"] is not None)
    assert "| plain | 1: 1 |" in report.table()
    assert len(report.fit_intervals("plain")) == 3 and "| plain | 0.8 |" in report.interval_table()
    # the JSON round trip and a resumed run: nothing is fitted again
    again = RealCalibrationReport.from_json(out)
    assert again.records == report.to_dict()["records"]
    messages: list[str] = []
    resumed = real_image_calibration(G, f, split, misfit="fit", alpha=0.2, scales=(0.5, 1.0, 2.0, 4.0),
                                     num_draws=64, batch_size=2, fit_options=options, out=out,
                                     setting="test-setting", num_stats_samples=200, log=messages.append)
    assert not [m for m in messages if "images (" in m]  # no batch was fitted again
    assert resumed.settings["misfit_scale"] == report.settings["misfit_scale"]
    with pytest.raises(ValueError, match="other settings"):
        real_image_calibration(G, f, split, misfit=None, alpha=0.2, scales=(0.5, 1.0), num_draws=64,
                               fit_options=options, out=out, num_stats_samples=200)
    # more evaluation images (the old ones first) extend the run: only the new ones are fitted
    extra = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(5)) * 1.6 - 0.8
    longer = RealImageSplit(split.calibration, split.calibration_ids, torch.cat([split.evaluation, extra]),
                            split.evaluation_ids + [30, 31], "test rule", "test")
    messages.clear()
    extended = real_image_calibration(G, f, longer, misfit="fit", alpha=0.2, scales=(0.5, 1.0, 2.0, 4.0),
                                      num_draws=64, batch_size=2, fit_options=options, out=out,
                                      setting="test-setting", num_stats_samples=200, log=messages.append)
    assert [m.split(":")[0] for m in messages if "images (" in m] == ["plain evaluation", "misfit evaluation"]
    assert [r["index"] for r in extended.records["plain"]["evaluation"]] == [20, 21, 22, 23, 30, 31]
    assert extended.records["plain"]["evaluation"][:4] == report.to_dict()["records"]["plain"]["evaluation"]
    shuffled = RealImageSplit(split.calibration, split.calibration_ids, longer.evaluation.flip(0),
                              longer.evaluation_ids[::-1], "test rule", "test")
    with pytest.raises(ValueError, match="other settings"):
        real_image_calibration(G, f, shuffled, misfit="fit", alpha=0.2, scales=(0.5, 1.0, 2.0, 4.0), num_draws=64,
                               batch_size=2, fit_options=options, out=out, setting="test-setting",
                               num_stats_samples=200)



def test_a_given_config_is_the_model_calibrated_and_equals_the_misfit_variant_it_matches(tmp_path, one_thread):
    """config=...: the weights `brgm reconstruct` fits its posterior with (here sigma and a misfit scale) are the
    model measured; its records equal those of the "misfit" variant built from the plain model at the same tau,
    and MAP's RMSE is that of G(w*) + E[r | y, w*] (the misfit model's point estimate)."""
    from brgm_pyro.models import BRGMConfig, brgm_model
    from brgm_pyro.models.brgm import generate
    from brgm_pyro.models.misfit import point_images

    G, f, split = _setup()
    options = dict(num_starts=2, num_steps=30, vi_steps=5, num_particles=2)
    common = dict(alpha=0.2, scales=(1.0,), num_draws=32, batch_size=2, fit_options=options, setting="s",
                  num_stats_samples=200)
    tau = 0.3
    both = real_image_calibration(G, f, split, misfit=tau, **common)
    config = BRGMConfig(0.1, None, 0.0, "per-dimension", misfit_scale=tau)
    given = real_image_calibration(G, f, split, misfit=None, config=config, out=tmp_path / "c.json", **common)
    assert given.settings["config"]["misfit_scale"] == tau and "config" not in both.settings
    def untimed(recs):
        return {part: [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in rs]
                for part, rs in recs.items()}

    assert untimed(given.records["plain"]) == untimed(both.records["misfit"])
    assert given.label("plain") == "sigma 0.1, misfit tau 0.3" and both.label("plain") == "plain"
    assert "| sigma 0.1, misfit tau 0.3 | 1: 1 |" in given.table()
    # MAP's RMSE is the point estimate's: recompute it for the first calibration image from its MAP latent
    record = given.records["plain"]["calibration"][0]
    problem = real_problems(f, split.calibration[:1], split.calibration_ids[:1], 0.1, 0)[0]
    model = brgm_model(G, f, problem.observation, config=config, num_stats_samples=200)
    from brgm_pyro.inference.map import map_estimate
    from brgm_pyro.study.problems import derive_seed

    w = map_estimate(model, num_steps=30, seed=derive_seed(0, problem.index, 0)).latent
    image = point_images(model, generate(G, model.prior.ws_from_latent(w).unsqueeze(0)))[0]
    def rmse(x, where):
        return float(((x[where] - problem.image[0][where]) * 127.5).square().mean().sqrt())

    everywhere = torch.ones_like(problem.unknown)
    assert record["map"]["rmse_unknown"] == pytest.approx(rmse(image, problem.unknown), rel=1e-4)
    assert record["map"]["rmse_image"] == pytest.approx(rmse(image, everywhere), rel=1e-4)  # r fills the observed half
    alone = generate(G, model.prior.ws_from_latent(w).unsqueeze(0))[0]
    assert record["map"]["rmse_image"] < rmse(alone, everywhere) - 1
    with pytest.raises(ValueError, match="its own misfit scale"):
        real_image_calibration(G, f, split, misfit="fit", config=config, **common)
    for other in (BRGMConfig(0.1, 0.05, 0.0, "per-dimension"), BRGMConfig(0.1, None, 0.25, "per-dimension")):
        with pytest.raises(ValueError, match="pass calibrated_config"):
            real_image_calibration(G, f, split, misfit=None, config=other, **common)

def test_calibrate_images_cli_on_a_folder_of_real_images(tmp_path, monkeypatch, capsys, tiny_generator, one_thread):
    import json

    from PIL import Image

    from brgm_pyro import generators
    from brgm_pyro.app.cli import main

    folder = tmp_path / "images"
    folder.mkdir()
    g = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(g.integers(0, 256, (16, 16), dtype=np.uint8)).save(folder / f"img{i}.png")
    monkeypatch.setattr(generators, "load_generator", lambda *a, **k: tiny_generator)
    out = tmp_path / "out"
    assert main(["calibrate", "--task", "inpainting", "--mask-id", "0", "--images", str(folder),
                 "--num-calibration", "2", "--num-evaluation", "2", "--steps", "5", "--num-draws", "16",
                 "--misfit-scale", "0.2", "--alpha", "0.5", "--out", str(out), "--no-progress",
                 "--model", "plain"]) == 0
    printed = capsys.readouterr().out
    assert "| plain | 1: 1 |" in printed and "| misfit | 1: 1 |" in printed and "conformal scale" in printed
    assert "| plain | 0.5 | conformal:" in printed and "interval factors for inpainting-mask0:" in printed
    data = json.loads((out / "real_calibration.json").read_text())
    assert data["settings"]["misfit_scale"] == 0.2 and data["settings"]["setting"] == "inpainting-mask0"
    assert set(data["settings"]["calibration_ids"]).isdisjoint(data["settings"]["evaluation_ids"])
    stored = json.loads((out / "interval_scales.json").read_text())
    assert stored["interval_calibration"]["inpainting-mask0"]["num_images"] == 2
    assert main(["calibrate", "--task", "inpainting", "--images", str(folder), "--num-calibration", "4",
                 "--num-evaluation", "2", "--out", str(tmp_path / "o2")]) == 2
    assert "4 + 2 images asked for, 5 available" in capsys.readouterr().err
    # the default model is the posterior `brgm reconstruct` fits: the generator's recommended sigma_pixel and misfit
    # scale for the setting (its perceptual term and kappa dropped), at that noise
    tiny_generator.metadata = {"recommended_config": {"sigma_pixel": 0.3, "sigma_perceptual": 0.05, "kappa": 0.25},
                               "recommended_configs": {"inpainting-mask0": {"sigma_pixel": 0.07, "misfit_scale": 0.3}}}
    out3 = tmp_path / "o3"
    args = ["calibrate", "--task", "inpainting", "--mask-id", "0", "--images", str(folder), "--num-calibration", "2",
            "--num-evaluation", "2", "--steps", "5", "--num-draws", "16", "--alpha", "0.5", "--no-progress"]
    assert main(args + ["--out", str(out3)]) == 0
    printed = capsys.readouterr().out
    settings = json.loads((out3 / "real_calibration.json").read_text())["settings"]
    assert settings["sigma_pixel"] == 0.07 and settings["config"] == {
        "sigma_pixel": 0.07, "sigma_perceptual": None, "kappa": 0.0, "prior_std": "per-dimension", "misfit_scale": 0.3,
        "layer_correlation": 0.0}
    assert "| sigma 0.07, misfit tau 0.3 | 1: 1 |" in printed
    assert "sigma 0.07; model sigma 0.07, misfit tau 0.3" in printed
    assert json.loads((out3 / "interval_scales.json").read_text())["interval_calibration"]["inpainting-mask0"][
        "sigma_pixel"] == 0.07
    assert main(args + ["--out", str(tmp_path / "o4"), "--sigma-pixel", "0.2"]) == 0  # the flag sets model and noise
    capsys.readouterr()
    assert json.loads((tmp_path / "o4" / "real_calibration.json").read_text())["settings"]["config"][
        "sigma_pixel"] == 0.2
    assert main(args + ["--out", str(tmp_path / "o5"), "--misfit-scale", "fit"]) == 2  # the recommended has its own
    assert "its own misfit scale" in capsys.readouterr().err


def test_plausibility_counts_draws_the_classifier_cannot_place():
    from brgm_pyro.study.real_images import UNPLACEABLE_BELOW, plausibility

    class Fixed(torch.nn.Module):  # logits from the mean pixel: bright images are sure, dark ones are not
        def forward(self, x):
            m = x.mean((1, 2, 3))
            return torch.stack([4 * m, torch.zeros_like(m), torch.zeros_like(m)], -1)

    x = torch.stack([torch.full((1, 4, 4), v) for v in (-1.0, 0.0, 0.5, 1.0, 3.0)])  # 3.0 is clamped to 1
    probs = torch.softmax(Fixed()(x.clamp(-1, 1)), -1).max(-1).values.double()
    got = plausibility(Fixed(), x)
    assert got["max_softmax"] == pytest.approx(float(probs.mean()))
    assert got["unplaceable"] == pytest.approx(float((probs < UNPLACEABLE_BELOW).double().mean()))
    assert 0 < got["unplaceable"] < 1
    assert plausibility(None, x) is None


def test_the_real_image_benchmark_reports_residuals_and_modes():
    """benchmarks/real_images.py: images whose MAP residual on the observed values is within 1.25x
    the noise (issue 26), and images whose posterior mode is below MAP's log joint (issue 25)."""
    from types import SimpleNamespace

    from benchmarks.real_images import residual_and_mode_lines

    def record(sd, mode, map_):
        return {"map": {"residual_sd_observed": sd}, "mode_log_joint": mode, "map_log_joint": map_}

    report = SimpleNamespace(settings={"sigma_pixel": 0.1}, records={
        "plain": {"evaluation": [record(0.11, -5.0, -5.0), record(0.2, -6.0, -5.0), record(0.12, -4.0, -5.0)]},
        "misfit": {"calibration": [record(0.3, -1.0, -1.0)]}})
    line, = residual_and_mode_lines(report)  # misfit has no evaluation images
    assert line == ("- plain: MAP residual SD on the observed values / sigma: median 1.20, within 1.25x on 2 of 3 "
                    "images; the posterior's mode below MAP's log joint on 1 of 3 images")


def test_recommended_calibration_is_the_reconstruct_posterior_at_its_own_noise(tiny_generator):
    """One rule for `brgm calibrate --images --model recommended` and `benchmarks/real_images.py --config
    recommended`: the setting's recommended weights with kappa 0 and no perceptual term, the noise = its pixel sigma
    (replaced in both when given); no pixel sigma is an error that says so."""
    from brgm_pyro.corruptions import make_corruption
    from brgm_pyro.models.config import BRGMConfig
    from brgm_pyro.study.real_images import recommended_calibration

    tiny_generator.metadata = {"recommended_config": {"sigma_pixel": 0.3, "sigma_perceptual": 0.05, "kappa": 0.25},
                               "recommended_configs": {"inpainting-mask0": {"sigma_pixel": 0.07, "misfit_scale": 0.3,
                                                                            "kappa": 0.5}}}
    mask0 = make_corruption("inpainting", 16, mask_id=0)
    config, noise = recommended_calibration(tiny_generator, mask0)
    assert config == BRGMConfig(0.07, None, 0.0, "per-dimension", misfit_scale=0.3) and noise == 0.07
    config, noise = recommended_calibration(tiny_generator, mask0, 0.2)
    assert config.sigma_pixel == 0.2 == noise and config.misfit_scale == 0.3
    other = make_corruption("inpainting", 16, mask_id=1)  # no entry of its own: the generator's general weights
    assert recommended_calibration(tiny_generator, other) == (BRGMConfig(0.3, None, 0.0, "per-dimension"), 0.3)
    tiny_generator.metadata = {"recommended_config": {"sigma_pixel": None, "sigma_perceptual": 0.05, "kappa": 0.25}}
    with pytest.raises(ValueError, match="no pixel likelihood"):
        recommended_calibration(tiny_generator, other)
