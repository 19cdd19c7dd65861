"""The benchmarks that compare priors (issue #26): BRGM against the stored baselines on their exact
problems (benchmarks/prior_vs_baselines.py), the weight tuning (tune_weights.py) and the prior's cost
(prior_cost.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import harness, prior_cost, prior_vs_baselines, tune_weights
from brgm_pyro.baselines import baselines_available
from brgm_pyro.corruptions import Inpainting, SuperResolution, standard_mask
from brgm_pyro.training.data import FASHION_MNIST_DIR

needs_data = pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")


def test_baseline_settings_are_read_from_the_committed_header():
    header = json.loads(prior_vs_baselines.DEFAULT_BASELINES.read_text())["header"]
    assert prior_vs_baselines.baseline_settings(header) == {
        "noise": 0.05, "tune_images": 10, "eval_start": 5000, "num_eval": 100}
    with pytest.raises(ValueError, match="cannot read the noise"):
        prior_vs_baselines.baseline_settings("# some other header")


def test_observed_residual_counts_only_observed_values_in_noise_units():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 32, 32, generator=g) * 2 - 1
    mask = standard_mask(0, 32)
    op = Inpainting(mask)
    y = op(x) + 0.05 * torch.randn(x.shape, generator=g)
    y = y * mask  # holes carry no data
    got = prior_vs_baselines.observed_residual(op, x, y, 0.05)
    keep = mask.expand_as(x).bool()
    want = torch.stack([((op(x)[i] - y[i])[keep[i]]).double().square().mean().sqrt() / 0.05 for i in range(3)])
    torch.testing.assert_close(got, want)
    assert got.tolist() == pytest.approx([1.0] * 3, abs=0.1)  # the noise itself: about 1 sigma
    sr = SuperResolution(4, kernel="bicubic-antialias")
    low = sr(x)
    torch.testing.assert_close(prior_vs_baselines.observed_residual(sr, x, low + 0.1, 0.05),
                               torch.full((3,), 2.0, dtype=torch.float64))


@needs_data
@pytest.mark.skipif(not baselines_available(wavelets=True), reason="needs the [baselines] extra")
def test_prior_vs_baselines_runs_on_the_stored_problems_and_refuses_other_ones(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--out", str(out), "--limit", "2", "--batch-size", "2", "--steps", "3", "--samples", "2",
            "--tasks", "super-resolution"]
    assert prior_vs_baselines.main(args) == 0
    saved = json.loads((out / "brgm_records.json").read_text())
    assert sorted(saved["records"]) == ["super-resolution|x4 bicubic-antialias|5000",
                                        "super-resolution|x4 bicubic-antialias|5001"]
    record = saved["records"]["super-resolution|x4 bicubic-antialias|5000"]
    assert set(record) == {"map", "fullrank"} and set(record["map"]) >= {"psnr", "ssim", "rmse", "observed_residual"}
    table = (out / "prior_vs_baselines.md").read_text()
    assert "TV, DeepInverse PGD (λ = 0.005)" in table and "2 held-out test images" in table
    # the paired difference is the mean of the per-image differences to the stored per-problem values
    stored = json.loads(prior_vs_baselines.DEFAULT_BASELINES.read_text())
    tv = stored["tasks"]["super-resolution"]["per_problem"]["x4 bicubic-antialias"]["tv"]["psnr"][:2]
    ours = [saved["records"][f"super-resolution|x4 bicubic-antialias|{i}"]["map"]["psnr"] for i in (5000, 5001)]
    assert f"{sum(a - b for a, b in zip(ours, tv)) / 2:+.2f}" in table.split("Paired")[1].split("\n")[4]
    # summary.md: the best baseline of the two images and MAP's paired difference to it
    summary = (out / "summary.md").read_text()
    psnr = {m: v["psnr"][:2] for m, v in stored["tasks"]["super-resolution"]["per_problem"]["x4 bicubic-antialias"]
            .items()}
    best = max(psnr, key=lambda m: sum(psnr[m]))
    assert f"{prior_vs_baselines.BASELINE_NAMES[best]}: {sum(psnr[best]) / 2:.2f}" in summary
    d = [a - b for a, b in zip(ours, psnr[best])]
    assert f"({sum(d) / 2:+.2f} ± {harness.mean_se(d)[1]:.2f}; {sum(x > 0 for x in d)}/2)" in summary
    # a rerun with the same settings skips the done images; other settings are refused
    capsys.readouterr()
    assert prior_vs_baselines.main(args) == 0
    assert " done (" not in capsys.readouterr().out  # nothing fitted again
    # a note on records copied in from another run is kept when the run goes on, and shown in both tables
    saved["carried"] = "mask 0 records copied from another run"
    (out / "brgm_records.json").write_text(json.dumps(saved))
    assert prior_vs_baselines.main([*args[:2], "--limit", "3", *args[4:]]) == 0
    again = json.loads((out / "brgm_records.json").read_text())
    assert len(again["records"]) == 3 and again["carried"] == saved["carried"]
    for name in ("summary.md", "prior_vs_baselines.md"):
        assert "Carried records: mask 0 records copied from another run" in (out / name).read_text()
    with pytest.raises(SystemExit, match="other settings"):
        prior_vs_baselines.main(args[:-2] + ["--steps", "4", "--tasks", "super-resolution"])
    # baselines.json of other problems (the bicubic scores changed) is refused before any fit
    tampered = json.loads(prior_vs_baselines.DEFAULT_BASELINES.read_text())
    values = tampered["tasks"]["super-resolution"]["per_problem"]["x4 bicubic-antialias"]["bicubic"]["psnr"]
    values[0] += 0.5
    other = tmp_path / "baselines.json"
    other.write_text(json.dumps(tampered))
    with pytest.raises(SystemExit, match="not the same problems"):
        prior_vs_baselines.main(["--out", str(tmp_path / "other"), "--baselines", str(other)] + args[2:])


def test_versus_pairs_two_runs_image_by_image_on_the_images_both_hold():
    def rec(psnr_map, psnr_pm):
        return {"map": {"psnr": psnr_map}, "fullrank": {"psnr": psnr_pm}}

    this = {"super-resolution|x4 bicubic-antialias|5001": rec(20.0, 21.0),
            "super-resolution|x4 bicubic-antialias|5000": rec(18.0, 19.5),
            "super-resolution|x4 bicubic-antialias|5002": rec(30.0, 30.0),  # not in the other run: left out
            "inpainting|mask 0|5000": {"map": {"rmse_hidden": 50.0}, "fullrank": {"rmse_hidden": 40.0}}}
    other = {"super-resolution|x4 bicubic-antialias|5000": rec(17.0, 19.0),
             "super-resolution|x4 bicubic-antialias|5001": rec(20.5, 20.0),
             "inpainting|mask 0|5000": {"map": {"rmse_hidden": 52.0}, "fullrank": {"rmse_hidden": 39.0}}}
    lines = prior_vs_baselines.versus_lines(["super-resolution", "inpainting"], this, other, "v2")
    sr = next(line for line in lines if line.startswith("| x4 bicubic-antialias | psnr |"))
    # MAP: differences +1.0 and -0.5 -> mean +0.25, SE 0.75 / sqrt(2) * sqrt(2) = 0.75; better on 1 of 2
    assert "+0.25 ± 0.75 (1/2)" in sr and "+0.75 ± 0.25 (2/2)" in sr
    mask = next(line for line in lines if line.startswith("| mask 0 | rmse_hidden |"))
    assert "-2.00 ± nan (1/1)" in mask and "+1.00 ± nan (0/1)" in mask  # lower RMSE is better


def test_tune_weights_chooses_per_setting_among_the_candidates_that_fit():
    def cand(sr: float, m0: float, fit_sr: int, fit_m0: int) -> dict:
        """Two settings, five images; fit_*: how many have observed residual <= 1.25."""
        return {"x4 bicubic-antialias": {"rmse": [sr] * 5, "observed_residual": [1.0] * fit_sr + [2.0] * (5 - fit_sr)},
                "mask 0": {"rmse_hidden": [m0] * 5, "observed_residual": [1.0] * fit_m0 + [2.0] * (5 - fit_m0)}}

    found = {"tight": cand(28.0, 58.0, 5, 5), "loose": cand(33.0, 52.0, 5, 3), "looser": cand(35.0, 50.0, 2, 2),
             "mid": cand(30.0, 57.0, 4, 4)}
    assert tune_weights.fits(found["mid"]["mask 0"]) == (4, True)  # 4/5 = 80%: fits
    assert tune_weights.fits(found["loose"]["mask 0"]) == (3, False)
    assert tune_weights.choose(found, "x4 bicubic-antialias") == ("tight", True)
    assert tune_weights.choose(found, "mask 0") == ("mid", True)  # "loose" / "looser" are better but misfit
    assert tune_weights.choose_common(found, ["x4 bicubic-antialias", "mask 0"]) == ("tight", True)  # 43 < 43.5 (mid)
    nothing_fits = {"a": cand(30.0, 50.0, 0, 0), "b": cand(28.0, 60.0, 1, 1)}
    assert tune_weights.choose(nothing_fits, "mask 0") == ("a", False)  # lowest RMSE, flagged
    assert tune_weights.choose_common(nothing_fits, ["x4 bicubic-antialias", "mask 0"]) == ("a", False)
    name = tune_weights.candidate_name(0.05, None, 0.25)
    assert tune_weights.candidate_config(name) == {"sigma_pixel": 0.05, "sigma_perceptual": None, "kappa": 0.25,
                                                   "misfit_scale": None, "layer_correlation": 0.0}
    misfit = tune_weights.candidate_name(0.05, 0.05, 0.25, 0.2)
    assert misfit == "sigma_pixel=0.05, sigma_perceptual=0.05, kappa=0.25, misfit_scale=0.2"
    assert tune_weights.candidate_config(misfit) == {"sigma_pixel": 0.05, "sigma_perceptual": 0.05, "kappa": 0.25,
                                                     "misfit_scale": 0.2, "layer_correlation": 0.0}
    layers = tune_weights.candidate_name(0.05, None, 0.25, 0.2, 0.65)
    assert layers == "sigma_pixel=0.05, sigma_perceptual=none, kappa=0.25, misfit_scale=0.2, layer_correlation=0.65"
    assert tune_weights.candidate_config(layers) == {"sigma_pixel": 0.05, "sigma_perceptual": None, "kappa": 0.25,
                                                     "misfit_scale": 0.2, "layer_correlation": 0.65}
    # coordinate-wise from an incumbent: one weight at a time while the score falls, never a jump across the grid
    name = tune_weights.candidate_name
    incumbent, rho, rho_perc, far = (name(0.05, None, 0.25, 0.2), name(0.05, None, 0.25, 0.2, 0.6),
                                     name(0.05, 0.05, 0.25, 0.2, 0.6), name(0.2, 0.05, 0.0, 0.3, 0.7))
    assert tune_weights.neighbours(incumbent, rho) and tune_weights.neighbours(rho, rho_perc)
    assert not tune_weights.neighbours(incumbent, rho_perc) and not tune_weights.neighbours(incumbent, incumbent)
    score = {incumbent: 28.0, rho: 26.3, rho_perc: 25.7, far: 20.0}.__getitem__
    grid = [incumbent, rho, rho_perc, far]
    assert tune_weights.descend(dict.fromkeys(grid), incumbent, score, set(grid).__contains__) == [incumbent, rho,
                                                                                                   rho_perc]
    fitting = {incumbent, rho_perc, far}.__contains__
    assert tune_weights.descend(dict.fromkeys(grid), incumbent, score, fitting) == [incumbent]
    asked = []  # fit and score are asked about the walk's neighbours only (--common-masks measures on demand)
    tune_weights.descend(dict.fromkeys(grid), incumbent, lambda n: asked.append(n) or score(n), set(grid).__contains__)
    assert far not in asked and set(asked) == {incumbent, rho, rho_perc}
    with pytest.raises(SystemExit, match="was not measured here"):
        tune_weights.descend({rho: None}, incumbent, score, {rho}.__contains__)
    # a misfit term: the MAP image fits, G(w*) alone does not; both counts are shown, the first decides
    values = {"rmse_hidden": [50.0] * 5, "observed_residual": [0.6] * 5, "generator_residual": [0.6] + [2.0] * 4}
    assert tune_weights.fits(values) == (5, True) and tune_weights.fits(values, "generator_residual") == (1, False)
    assert tune_weights.fit_cell(values) == "5/5 (G(w*) alone 1/5)"
    assert tune_weights.fit_cell(found["mid"]["mask 0"]) == "4/5"  # no misfit term: one count
    maps = [{"observed_residual": r, "generator_residual": g} for r, g in [(0.5, 1.0), (0.7, 1.5), (1.3, 3.0)]]
    assert prior_vs_baselines.fit_cell(maps) == "2/3 (mean 0.83); G(w*) alone 1/3 (mean 1.83)"
    assert prior_vs_baselines.fit_cell([{"observed_residual": 1.0}, {"observed_residual": 2.0}]) == "1/2 (mean 1.50)"


@needs_data
@pytest.mark.skipif(not baselines_available(wavelets=True), reason="needs the [baselines] extra")
def test_tune_weights_writes_per_setting_metadata_and_pairs_with_the_stored_baselines(tmp_path):
    from brgm_pyro.models import BRGMConfig

    out = tmp_path / "tune"
    stored_path = Path(tune_weights.__file__).parent / "results/tune_weights/baselines-on-tuning-images/baselines.json"
    args = ["--out", str(out), "--steps", "2", "--sigma-pixel", "0.05", "0.2", "--sigma-perceptual", "none",
            "--kappa", "0", "--misfit-scale", "none", "0.2", "--baselines", str(stored_path)]
    assert tune_weights.main(args) == 0
    found = json.loads((out / "tune_weights.json").read_text())["candidates"]
    assert sorted(found) == ["sigma_pixel=0.05, sigma_perceptual=none, kappa=0",
                             "sigma_pixel=0.05, sigma_perceptual=none, kappa=0, misfit_scale=0.2",
                             "sigma_pixel=0.2, sigma_perceptual=none, kappa=0",
                             "sigma_pixel=0.2, sigma_perceptual=none, kappa=0, misfit_scale=0.2"]
    misfit = found["sigma_pixel=0.05, sigma_perceptual=none, kappa=0, misfit_scale=0.2"]["mask 0"]
    plain = found["sigma_pixel=0.05, sigma_perceptual=none, kappa=0"]["mask 0"]
    # the misfit MAP image reproduces the observed half better than its own G(w*); the paper's model has one image
    assert all(a < b for a, b in zip(misfit["observed_residual"], misfit["generator_residual"]))
    assert plain["observed_residual"] == plain["generator_residual"]
    recommended = json.loads((out / "recommended.json").read_text())
    assert set(recommended["recommended_configs"]) == {"super-resolution-x4-bicubic-antialias", "inpainting-mask0",
                                                       "inpainting-mask1"}
    BRGMConfig(**recommended["recommended_config"])  # a valid config
    for label, key in {"x4 bicubic-antialias": "super-resolution-x4-bicubic-antialias", "mask 0": "inpainting-mask0",
                       "mask 1": "inpainting-mask1"}.items():
        name, _ = tune_weights.choose(found, label)
        assert recommended["recommended_configs"][key] == tune_weights.candidate_config(name)
    md = (out / "tune_weights.md").read_text()
    # the paired PSNR difference to TV on super-resolution, recomputed from the two files image by image
    stored = json.loads(stored_path.read_text())
    chosen_sr = tune_weights.choose(found, "x4 bicubic-antialias")[0]
    ours = found[chosen_sr]["x4 bicubic-antialias"]["psnr"]
    tv = stored["tasks"]["super-resolution"]["per_problem"]["x4 bicubic-antialias"]["tv"]["psnr"]
    diff = harness.mean_se([a - b for a, b in zip(ours, tv)])
    row = next(line for line in md.splitlines() if line.startswith("| x4 bicubic-antialias | psnr |"))
    assert f"{diff[0]:+.2f} ± {diff[1]:.2f} ({sum(a > b for a, b in zip(ours, tv))}/20)" in row
    # --common-masks: the balance for every other setting chosen on masks without an entry (here mask 2), measured
    # for every candidate without --start; the choice recomputed from the stored per-image values
    common_out = tmp_path / "common"
    shutil.copytree(out, common_out)
    assert tune_weights.main(["--out", str(common_out), *args[2:], "--common-masks", "2"]) == 0
    again = json.loads((common_out / "tune_weights.json").read_text())["candidates"]
    assert all(again[n][lab] == found[n][lab] for n in found for lab in found[n])  # the tuned settings reused
    assert all("mask 2" in again[n] for n in again)

    def fit_and_rmse(n: str) -> tuple[bool, float]:
        values = again[n]["mask 2"]
        return (sum(v <= 1.25 for v in values["observed_residual"]) >= 16, float(np.mean(values["rmse_hidden"])))

    fitting = [n for n in again if fit_and_rmse(n)[0]] or list(again)
    expected = min(fitting, key=lambda n: fit_and_rmse(n)[1])
    common = json.loads((common_out / "recommended.json").read_text())
    assert common["recommended_config"] == {**tune_weights.candidate_config(expected), "prior_std": "per-dimension"}
    assert common["tuning"]["common_balance_on"] == ["mask 2"]
    assert common["recommended_configs"] == recommended["recommended_configs"]  # the per-setting entries unchanged
    assert "| mask 1: fits | mask 2: RMSE unknown | mask 2: fits |" in (common_out / "tune_weights.md").read_text()
    with pytest.raises(SystemExit):
        tune_weights.main(["--common-masks", "0"])  # mask 0 has its own entry
    with pytest.raises(SystemExit):
        tune_weights.main(["--tune-start", "5099", "--num-tune", "2"])  # overlaps the evaluation images
    with pytest.raises(SystemExit, match="not the same problems"):  # the stored baselines hold 20 images, not 2
        tune_weights.main(["--num-tune", "2", "--steps", "2", "--baselines", str(stored_path)])


def test_prior_cost_refuses_too_few_draws(capsys):
    with pytest.raises(SystemExit):
        prior_cost.main(["--generator", "fashion-mnist-32", "--draws", "3"])
    assert "--draws must be >= 4" in capsys.readouterr().err


def test_a_training_checkpoint_is_measured_with_the_bundled_weights(tmp_path):
    from brgm_pyro.training.trainer import TrainingConfig, train_generator

    run = tmp_path / "run"
    train_generator(TrainingConfig(out_dir=str(run), resolution=16, channels=1, z_dim=8, w_dim=8, channel_base=64,
                                   channel_max=8, d_channel_base=64, d_channel_max=8, batch_size=4, iterations=1,
                                   snapshot_every=1), images=torch.rand(8, 1, 16, 16) * 2 - 1, progress=False)
    generator = harness.load_prior(str(run / "checkpoint.pt"))
    from brgm_pyro.generators import load_generator

    bundled = load_generator("fashion-mnist-32").metadata
    for key in harness.CARRIED_METADATA:  # those the bundled file has (no recommended_configs yet)
        assert generator.metadata.get(key) == bundled.get(key)
    assert generator.metadata["recommended_config"] == bundled["recommended_config"]
    assert generator.metadata["iterations"] == 1
    import brgm_pyro

    bundled_file = Path(brgm_pyro.__file__).parent / "pretrained" / "fashion-mnist-32.pt"
    assert harness.load_prior(str(bundled_file)).metadata == bundled  # a generator file, not a checkpoint
    shutil.rmtree(run)


def test_model_card_exports_a_checkpoint_with_per_setting_weights(tmp_path, monkeypatch, capsys):
    from brgm_pyro.corruptions import make_corruption
    from brgm_pyro.generators import load_generator
    from brgm_pyro.models import BRGMConfig, default_config
    from brgm_pyro.training import model_card
    from brgm_pyro.training.trainer import TrainingConfig, train_generator

    run = tmp_path / "run"
    train_generator(TrainingConfig(out_dir=str(run), resolution=16, channels=1, z_dim=8, w_dim=8, channel_base=64,
                                   channel_max=8, d_channel_base=64, d_channel_max=8, batch_size=4, iterations=1,
                                   snapshot_every=1, ema_kimg=500.0), images=torch.rand(8, 1, 16, 16) * 2 - 1,
                    progress=False)
    weights = {"recommended_config": {"sigma_pixel": 0.2, "sigma_perceptual": 0.05, "kappa": 0.0,
                                      "prior_std": "per-dimension"},
               "recommended_configs": {"super-resolution-x4-bicubic-antialias": {"sigma_pixel": 0.05,
                                                                                 "sigma_perceptual": None,
                                                                                 "kappa": 0.0}},
               "tuning": {"images": "Fashion-MNIST test 6000-6019", "num_images": 20, "noise": 0.05,
                          "map_steps": 500, "candidates": 18}}
    (tmp_path / "recommended.json").write_text(json.dumps(weights))
    out = tmp_path / "card"
    model_card.main(["--checkpoint", str(run / "checkpoint.pt"), "--out", str(out), "--weights",
                     str(tmp_path / "recommended.json"), "--export-only"])
    G = load_generator(out / "fashion-mnist-32.pt")
    assert G.metadata["recommended_configs"] == weights["recommended_configs"]
    sr = make_corruption("super-resolution", 16, factor=4, kernel="bicubic-antialias")
    assert default_config(G, sr) == BRGMConfig(sigma_pixel=0.05, sigma_perceptual=None, kappa=0.0,
                                               prior_std="per-dimension")
    assert default_config(G, make_corruption("inpainting", 16, mask_id=0)).sigma_pixel == 0.2
    assert model_card.training_options(G.metadata["training_config"]) == "--batch-size 4 --ema-kimg 500"
    table = model_card.weights_table(weights["recommended_config"], weights["recommended_configs"])
    assert "| super-resolution-x4-bicubic-antialias | sigma_pixel 0.05, sigma_perceptual none, kappa 0 |" in table
    assert "| every other setting (`recommended_config`) | sigma_pixel 0.2, sigma_perceptual 0.05, kappa 0 |" in table
    assert model_card.weights_text({"sigma_pixel": 0.05, "kappa": 0.25, "misfit_scale": 0.2}) == \
        "sigma_pixel 0.05, sigma_perceptual none, kappa 0.25, misfit scale 0.2"
    # the card renders from what main() gathers (the slow parts, Frechet distance and evaluation, faked here)
    quality = {"fd_generated_vs_test": 96.97, "fd_train_vs_test": 0.91, "fd_blurred_test_vs_test": 158.1,
               "fd_blurred2_test_vs_test": 647.3, "fd_pixel_gaussian_vs_test": 646.1, "num_images": 10000,
               "generated_class_fractions": {"Trouser": 0.5, "Bag": 0.5}}
    info = {"training": {"iterations": 19288, "images_seen": 1234432, "wall_seconds": 30120.0, "hardware": "a CPU"},
            "training_config": G.metadata["training_config"], "quality": quality, "classifier_accuracy": 0.93,
            **weights}
    card = model_card.card_text(info, "SR TABLE", "INPAINTING TABLE", "HELD-OUT TABLE")
    assert "**96.97**" in card and "19,288 iterations (1,234,432 images shown) in 502 minutes" in card
    assert "`brgm train-generator --out RUN --batch-size 4 --ema-kimg 500`" in card
    assert "HELD-OUT TABLE" in card and "Trouser 50.0% · Bag 50.0%" in card and table in card
    assert "Not measured for this file" in model_card.card_text(info, "", "")
    assert "None recorded" in card  # no interval factors yet
    assert "(`recommended_config`); `brgm`" in card  # chosen on the tuned settings: nothing more said
    common_on = {**info, "tuning": {**info["tuning"], "common_balance_on": ["mask 2", "mask 6"]}}
    assert ("(`recommended_config`, chosen on mask 2, mask 6: settings without weights of their own)"
            in model_card.card_text(common_on, "", ""))
    # interval factors fitted for the exported file go into its metadata and the card's JSON, nothing else changes
    (out / "fashion-mnist-32.json").write_text(json.dumps({"quality": quality}))
    factors = {"inpainting-mask0": {"0.5": 1.3, "0.9": 1.75}}
    model_card.store_interval_factors(out, factors)
    stored = load_generator(out / "fashion-mnist-32.pt")
    assert stored.metadata == {**G.metadata, "interval_factors": factors}
    assert torch.equal(stored.mapping(torch.ones(1, 8)), G.mapping(torch.ones(1, 8)))
    assert json.loads((out / "fashion-mnist-32.json").read_text()) == {"quality": quality, "interval_factors": factors}
    card = model_card.card_text({**info, "interval_factors": factors}, "", "")
    assert "| inpainting-mask0 | 1.3 | 1.75 |" in card and "None recorded" not in card
    assert model_card.weights_text({"sigma_pixel": 0.05, "kappa": 0.25, "layer_correlation": 0.6}) == \
        "sigma_pixel 0.05, sigma_perceptual none, kappa 0.25, layer correlation 0.6"
    # --render-only: the card written again from its JSON and tables, nothing measured, no checkpoint needed
    (out / "fashion-mnist-32.json").write_text(json.dumps({**info, "interval_factors": factors}))
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "evaluation-super-resolution.md").write_text("SR TABLE")
    (tables / "evaluation-inpainting.md").write_text("INPAINTING TABLE")
    (tmp_path / "held-out.md").write_text("HELD-OUT TABLE")
    model_card.main(["--out", str(out), "--render-only", "--tables", str(tables), "--held-out",
                     str(tmp_path / "held-out.md")])
    assert (out / "README.md").read_text() == model_card.card_text({**info, "interval_factors": factors},
                                                                  "SR TABLE", "INPAINTING TABLE", "HELD-OUT TABLE")
    with pytest.raises(SystemExit):
        model_card.main(["--out", str(out)])  # measuring needs --checkpoint and --weights

    # new weights for one task: the sample quality of the same network and the other task's table are reused
    evaluated = []

    class FakeTable:
        def __init__(self, task: str) -> None:
            self.task = task

    def fake_evaluate(G, images, task, build, *args, **kwargs):
        evaluated.append(task)
        return FakeTable(task)

    def fake_write(table, folder):
        path = Path(folder) / f"evaluation-{table.task}.md"
        path.write_text(f"NEW {table.task} TABLE")
        return path, None

    (out / "fashion-mnist-32.json").write_text(json.dumps({**info, "training": {**info["training"], "iterations": 1}}))
    previous = tmp_path / "previous.json"
    shutil.copy(out / "fashion-mnist-32.json", previous)
    (out / "fashion-mnist-classifier.json").write_text(json.dumps({"test_accuracy": 0.93}))  # beside the generator
    monkeypatch.setattr(model_card, "evaluate", fake_evaluate)
    monkeypatch.setattr(model_card, "write_tables", fake_write)
    monkeypatch.setattr(model_card, "load_domain_features", lambda: None)
    monkeypatch.setattr(model_card, "sample_quality", lambda G: pytest.fail("the sample quality was measured"))
    model_card.main(["--checkpoint", str(run / "checkpoint.pt"), "--out", str(out), "--weights",
                     str(tmp_path / "recommended.json"), "--quality-from", str(previous), "--evaluate",
                     "super-resolution", "--tables", str(tables), "--num-images", "2"])
    assert evaluated == ["super-resolution"]
    readme = (out / "README.md").read_text()
    assert "NEW super-resolution TABLE" in readme and "INPAINTING TABLE" in readme and "**96.97**" in readme
    with pytest.raises(SystemExit):  # a task left out needs its table, checked before anything is measured
        model_card.main(["--checkpoint", str(run / "checkpoint.pt"), "--out", str(out), "--weights",
                         str(tmp_path / "recommended.json"), "--evaluate", "inpainting", "--tables",
                         str(tmp_path / "no-tables")])
    assert "a task whose table is missing" in capsys.readouterr().err
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps({**info, "training": {**info["training"], "iterations": 5}}))
    with pytest.raises(SystemExit, match="is of iteration 5"):
        model_card.main(["--checkpoint", str(run / "checkpoint.pt"), "--out", str(out), "--weights",
                         str(tmp_path / "recommended.json"), "--quality-from", str(stale)])
    with pytest.raises(SystemExit, match="is not a benchmarks/real_images.py run"):
        model_card.fitted_interval_factors(tmp_path)  # recommended.json
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="holds no real-image run"):
        model_card.fitted_interval_factors(tmp_path / "empty")
    del weights["tuning"]
    (tmp_path / "bad.json").write_text(json.dumps(weights))
    with pytest.raises(SystemExit, match=r"lacks \['tuning'\]"):
        model_card.main(["--checkpoint", str(run / "checkpoint.pt"), "--out", str(out), "--weights",
                         str(tmp_path / "bad.json"), "--export-only"])
    shutil.rmtree(run)


def test_interval_scale_runs_on_another_generator_and_keeps_its_results_apart(tmp_path):
    from benchmarks import interval_scale
    from brgm_pyro.generators import save_generator
    from brgm_pyro.generators.stylegan2 import StyleGAN2Generator
    from .conftest import tiny_config

    torch.manual_seed(0)
    path = tmp_path / "tiny32.pt"
    save_generator(StyleGAN2Generator(tiny_config(32)).eval(), path)
    out = tmp_path / "scale"
    args = ["--smoke", "--tasks", "super-resolution", "--num-problems", "1", "--out", str(out)]
    assert interval_scale.main(args + ["--generator", str(path)]) == 0
    (record,) = interval_scale.load(out)
    assert record["generator"] == str(path)
    with pytest.raises(SystemExit, match="other settings"):  # the bundled generator's run is not mixed with it
        interval_scale.main(args)


def test_merge_logs_keeps_one_line_per_iteration_up_to_the_checkpoint(tmp_path):
    from benchmarks.resume_training import merge_logs

    committed, new = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    committed.write_text("".join(json.dumps({"iteration": i, "loss": 0}) + "\n" for i in (1, 50, 100)))
    new.write_text("".join(json.dumps({"iteration": i, "loss": 1}) + "\n" for i in (100, 150, 200)))
    assert merge_logs(committed, new, last_iteration=150) == 4
    rows = [json.loads(line) for line in committed.read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 50, 100, 150] and rows[2]["loss"] == 1  # the newer line wins


def test_resume_training_continues_a_committed_run_and_brings_it_back(tmp_path):
    from PIL import Image

    from benchmarks import resume_training
    from brgm_pyro.training.trainer import TrainingConfig, train_generator

    data = tmp_path / "data"
    data.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(8):
        Image.fromarray((torch.rand(16, 16, generator=g) * 255).byte().numpy()).save(data / f"{i}.png")
    run = tmp_path / "committed"
    config = TrainingConfig(data=str(data), out_dir=str(run), resolution=16, channels=1, z_dim=8, w_dim=8,
                            channel_base=64, channel_max=8, d_channel_base=64, d_channel_max=8, batch_size=4,
                            iterations=2, snapshot_every=1, r1_interval=2)
    train_generator(config, progress=False)
    saved = json.loads((run / "training_config.json").read_text())
    (run / "training_config.json").write_text(json.dumps({**saved, "iterations": 4}))  # a session field
    work, out = tmp_path / "work", tmp_path / "out"
    assert resume_training.main(["--run", str(run), "--work", str(work), "--minutes", "5", "--copy-to", str(out),
                                 "--no-progress"]) == 0
    assert resume_training.checkpoint_iteration(run / "checkpoint.pt") == 4
    logged = [json.loads(line)["iteration"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert logged == sorted(set(logged)) and logged[-1] <= 4
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "log.jsonl", "samples_000004.png"]
    # a defining option that differs from the checkpoint's is refused (check_resume_config)
    (run / "training_config.json").write_text(json.dumps({**saved, "iterations": 6, "lr": 0.01}))
    with pytest.raises(ValueError, match="lr"):
        resume_training.main(["--run", str(run), "--work", str(work), "--minutes", "5", "--no-progress"])
    # a new run: a folder with only its training_config.json starts from scratch, in an empty work folder
    new = tmp_path / "new"
    new.mkdir()
    (new / "training_config.json").write_text(json.dumps({**saved, "iterations": 2, "channel_max": 16}))
    with pytest.raises(SystemExit, match="holds no checkpoint yet"):
        resume_training.main(["--run", str(new), "--work", str(work), "--minutes", "5", "--no-progress"])
    assert resume_training.main(["--run", str(new), "--work", str(tmp_path / "new-work"), "--minutes", "5",
                                 "--no-progress"]) == 0
    state = torch.load(new / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["iteration"] == 2 and state["config"]["channel_max"] == 16
    with pytest.raises(SystemExit, match="training_config.json does not exist"):
        resume_training.main(["--run", str(tmp_path / "nothing"), "--minutes", "5"])


def test_generator_draws_are_the_generators_own_seeded_images():
    from benchmarks.generator_ceiling import generator_draws
    from brgm_pyro.generators import load_generator

    G = load_generator("fashion-mnist-32")
    x = generator_draws(G, 3, seed=5)
    z = torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = G.synthesis(G.mapping(z)).clamp(-1, 1)
    torch.testing.assert_close(x, expected)
    assert x.shape == (3, 1, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert not torch.equal(x, generator_draws(G, 3, seed=6))


def test_generator_ceiling_table_pairs_each_estimate_with_the_best_baseline():
    from benchmarks.generator_ceiling import table

    rng = np.random.default_rng(0)
    records = {}
    for i in range(5):
        tv, wav = 18 + rng.normal(), 17 + rng.normal()
        records[str(i)] = {"bicubic": tv - 1, "tv": tv, "wavelet": wav, "map": tv + rng.normal(),
                           "best_of_k": tv + 1 + rng.normal(), "fullrank": tv + 3 + rng.normal(),
                           "log_joint_gain": float(i % 2), "seconds_multistart": 2.0, "seconds_fullrank": 4.0}
    lines = "\n".join(table(records, {"tv": "lambda=0.002"}))
    keys = [str(i) for i in range(5)]
    for name, m in (("BRGM MAP (CLI defaults)", "map"), ("BRGM recommended posterior mean", "fullrank")):
        d = np.array([records[k][m] - records[k]["tv"] for k in keys])  # TV is the best baseline here
        row = next(line for line in lines.splitlines() if line.startswith(f"| {name} |"))
        assert f"({d.mean():+.2f} ± {d.std(ddof=1) / np.sqrt(5):.2f}; {(d > 0).sum()}/5)" in row
    assert "best baseline (TV, DeepInverse PGD)" in lines
    d = np.array([records[k]["best_of_k"] - records[k]["map"] for k in keys])
    assert f"{d.mean():+.2f} ± {d.std(ddof=1) / np.sqrt(5):.2f} dB (better on {(d > 0).sum()}/5; another mode " \
           "than w_avg's won on 2/5 images)" in lines


@pytest.mark.slow
@pytest.mark.skipif(not baselines_available(wavelets=True), reason="needs the [baselines] extra")
def test_generator_ceiling_shards_merge_and_resume(tmp_path, capsys):
    from benchmarks import generator_ceiling

    args = ["--out", str(tmp_path), "--num-images", "3", "--tune-images", "1", "--steps", "3", "--starts", "2"]
    assert generator_ceiling.main([*args, "--shard", "0/2"]) == 0
    first = json.loads((tmp_path / "records-0of2.json").read_text())["records"]
    assert sorted(first) == ["0", "2"]
    assert "Incomplete: 1 of 3 images not measured yet." in (tmp_path / "generator_ceiling.md").read_text()
    assert generator_ceiling.main([*args, "--shard", "1/2"]) == 0
    report = (tmp_path / "generator_ceiling.md").read_text()
    assert "on 3 images drawn from the generator" in report and "Incomplete" not in report
    capsys.readouterr()
    assert generator_ceiling.main([*args, "--shard", "0/2"]) == 0  # resumed: nothing left to run
    assert "image " not in capsys.readouterr().out
    assert json.loads((tmp_path / "records-0of2.json").read_text())["records"] == first
    with pytest.raises(SystemExit, match="other settings"):
        generator_ceiling.main([*args[:-2], "--starts", "3", "--shard", "0/2"])
    with pytest.raises(SystemExit):
        generator_ceiling.main([*args, "--shard", "2/2"])
