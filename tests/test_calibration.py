"""Simulation-based calibration: exact on the linear-Gaussian problem, and able to fail."""

from __future__ import annotations

import inspect
import json
import math
import sys
import types

import numpy as np
import pytest
import torch

from brgm_pyro.corruptions import Inpainting, SuperResolution
from brgm_pyro.inference import LatentDistribution, Posterior
from brgm_pyro.study import (
    METHODS, CalibrationReport, calibrate, chi_square_uniformity, joint_density_test, methods_from, rank_bins,
    resolve_methods, simulate_problems,
)

from .inference_problems import exact_linear_posterior as exact_method
from .inference_problems import half_mask, linear_generator, load_benchmark

NUM_PROBLEMS = 150


pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


@pytest.fixture(scope="module", params=["inpainting", "super-resolution"])
def linear_report(request) -> CalibrationReport:
    torch.set_num_threads(1)
    corruption = Inpainting(half_mask()) if request.param == "inpainting" else SuperResolution(2, kernel="box")
    problems = simulate_problems(linear_generator(), corruption, NUM_PROBLEMS, sigma_pixel=0.1, seed=3)
    return calibrate(problems, {"exact": exact_method(), "shrunk": exact_method(0.5)}, num_draws=200, seed=5)


def test_simulated_problems_come_from_the_model():
    G = linear_generator()
    problems = simulate_problems(G, Inpainting(half_mask()), 300, sigma_pixel=0.1, seed=0)
    p = problems[4]
    assert p.index == 4 and p.latent.shape == (2, 3) and p.image.shape == (1, 1, 4, 4)
    assert p.unknown.shape == (1, 4, 4) and p.unknown.dtype == torch.bool and int(p.unknown.sum()) == 8
    assert torch.allclose(p.image, G.synthesis(p.latent.unsqueeze(0)), atol=1e-6)
    assert p.model.observation.shape == (1, 4, 4) and torch.equal(p.model.observation, p.observation)
    assert torch.all(p.observation[~half_mask().bool()] == 0)  # hidden entries carry no noise
    # w ~ the model's prior and y - f(x) ~ N(0, 0.1^2) on the observed entries
    prior = p.model.prior
    z = torch.stack([(q.latent - prior.mean) / prior.std for q in problems]).reshape(-1)
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1) < 0.05
    noise = torch.stack([(q.observation - q.image[0])[half_mask().bool()] for q in problems]).reshape(-1)
    assert abs(float(noise.std()) - 0.1) < 0.005
    # problem i does not depend on how many are drawn
    again = simulate_problems(G, Inpainting(half_mask()), 2, sigma_pixel=0.1, seed=0, start=4)[0]
    assert torch.equal(again.latent, p.latent) and torch.equal(again.observation, p.observation)
    with pytest.raises(NotImplementedError, match="colinearity"):
        simulate_problems(G, Inpainting(half_mask()), 2, kappa=0.5)
    sr = simulate_problems(G, SuperResolution(2, kernel="box"), 1)[0]
    assert sr.observation.shape == (1, 2, 2) and bool(sr.unknown.all())


def test_exact_posterior_covers_at_the_nominal_rate(linear_report):
    for part in ("pixels", "latents"):
        for level in linear_report.levels:
            c = linear_report.coverage("exact", part, level)
            assert c["n"] == NUM_PROBLEMS and 0 < c["se"] < 0.05
            assert abs(c["mean"] - level) < 3 * c["se"], (part, level, c)
    s = linear_report.summary("exact")
    for part in ("pixels", "latents"):
        ratio = s[f"std_error_ratio_{part}"]
        assert abs(ratio["ratio"] - 1) < 3 * ratio["se"] + 0.02, ratio


def test_overconfident_posterior_fails(linear_report):
    for part in ("pixels", "latents"):
        for level in (0.5, 0.9):
            c = linear_report.coverage("shrunk", part, level)
            assert c["mean"] < level - 5 * c["se"], (part, level, c)  # std halved: 90% -> about 59%
    assert linear_report.coverage("shrunk", "pixels", 0.9)["mean"] < 0.7
    assert linear_report.summary("shrunk")["std_error_ratio_pixels"]["ratio"] < 0.6


def test_joint_hpd_coverage_is_nominal_for_the_exact_posterior_only(linear_report):
    exact, shrunk = linear_report.summary("exact"), linear_report.summary("shrunk")
    for entry in exact["joint_coverage_latents"]:
        assert entry["n"] == NUM_PROBLEMS and abs(entry["mean"] - entry["level"]) < 3 * entry["se"] + 0.01, entry
    assert abs(exact["joint_hpd_level_mean"]["mean"] - 0.5) < 3 * exact["joint_hpd_level_mean"]["se"]
    assert abs(exact["joint_density_z"]["mean"]) < 3 * exact["joint_density_z"]["se"]
    assert shrunk["joint_density_z"]["mean"] > 2  # (4 chi2_6 - 6) / sqrt(12): about 5
    # std halved in 6 dimensions: the truth's squared Mahalanobis distance is 4 chi2_6, inside the
    # 90% region (chi2_6 < 10.6) only when chi2_6 < 2.66, about 15% of the time
    at90 = min(shrunk["joint_coverage_latents"], key=lambda e: abs(e["level"] - 0.9))
    assert at90["mean"] < 0.3
    assert "joint 90% latents (median z)" in linear_report.table()
    assert abs(exact["joint_density_z_median"]) < 0.5 < shrunk["joint_density_z_median"]


def test_joint_density_test_of_a_gaussian_is_the_chi_square_law_of_the_truth():
    g = torch.Generator().manual_seed(0)
    d = 5
    tril = torch.tril(torch.randn(d, d, generator=g, dtype=torch.float64)) + 3 * torch.eye(d, dtype=torch.float64)
    mean = torch.randn(d, generator=g, dtype=torch.float64)
    q = LatentDistribution(torch.distributions.MultivariateNormal(mean, scale_tril=tril), torch.Size([d]), mean)
    posterior = Posterior(None, lambda n: q.sample(n), mean)
    posterior.q = q
    draws = q.distribution.sample((20000,))
    for radius in (1.0, 2.0, 3.0):
        truth = mean + tril @ (torch.ones(d, dtype=torch.float64) * radius / math.sqrt(d))  # Mahalanobis radius
        expected = float(torch.special.gammainc(torch.tensor(d / 2), torch.tensor(radius**2 / 2)))
        joint = joint_density_test(posterior, draws, truth)
        assert abs(joint["hpd_level"] - expected) < 0.015
        assert abs(joint["z"] - (radius**2 - d) / math.sqrt(2 * d)) < 0.05  # (m^2 - d) / sqrt(2 d)
    assert joint_density_test(Posterior(None, lambda n: draws[:n], mean), draws, mean) is None  # no density
    # all draws equal (a point mass): the level is defined, z is not
    same = mean.expand(10, d)
    point = joint_density_test(posterior, same, mean + 1)
    assert point["hpd_level"] == 1.0 and point["z"] is None


def test_sbc_ranks_uniform_only_for_the_exact_posterior(linear_report):
    exact, shrunk = linear_report.summary("exact")["sbc"], linear_report.summary("shrunk")["sbc"]
    assert set(exact) == {"latents", "pixels", "log_likelihood"}
    for group in exact:
        assert sum(exact[group]["histogram"]) == NUM_PROBLEMS * exact[group]["num_quantities"]
        assert exact[group]["p_value"] > 0.01, (group, exact[group])
    assert shrunk["latents"]["p_value"] < 1e-6 and shrunk["pixels"]["p_value"] < 1e-6
    # too-narrow draws put the truth outside them: the extreme bins fill up
    hist = np.asarray(shrunk["pixels"]["histogram"])
    assert hist[0] + hist[-1] > 3 * hist[len(hist) // 2 - 1: len(hist) // 2 + 1].sum() / 2


def test_chi_square_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    counts, probs = [12, 7, 9, 22], [0.25, 0.25, 0.2, 0.3]
    expected = np.asarray(probs) * sum(counts)
    assert chi_square_uniformity(counts, probs) == pytest.approx(stats.chisquare(counts, expected).pvalue, rel=1e-9)
    edges, p = rank_bins(num_problems=40, sbc_draws=99)
    assert len(p) == 8 and edges[0] == 0 and edges[-1] == 100 and p.sum() == pytest.approx(1)


def test_report_json_table_figure_and_merge(tmp_path):
    G = linear_generator()
    problems = simulate_problems(G, SuperResolution(2, kernel="box"), 4, sigma_pixel=0.1, seed=0)
    report = calibrate(problems, ["map", "vi-meanfield"], num_draws=16, seed=1, options={"num_steps": 20},
                       settings={"task": "sr-x2"})
    data = json.loads(report.to_json(tmp_path / "c.json").read_text())  # strict JSON (no NaN)
    assert set(data["summary"]) == {"map", "vi-meanfield"} and data["settings"]["task"] == "sr-x2"
    vi = data["summary"]["vi-meanfield"]
    assert [e["level"] for e in vi["coverage_pixels"]] == pytest.approx(list(np.arange(1, 10) / 10))
    assert vi["num_problems"] == 4 and vi["rmse_unknown_minus_map"]["n"] == 4
    assert data["records"]["vi-meanfield"][0]["options"] == {"num_steps": 20}
    assert data["summary"]["map"]["kind"] == "point" and "coverage_pixels" not in data["summary"]["map"]
    rec = data["records"]["vi-meanfield"][0]
    assert len(rec["coverage_latents"]) == 9 and set(rec["sbc_ranks"]) >= {"log_likelihood"}
    assert all(0 <= r <= report.sbc_draws for r in rec["sbc_ranks"].values())
    assert math.isclose(data["summary"]["map"]["rmse_image"]["mean"],
                        np.mean([r["rmse_image"] for r in data["records"]["map"]]))
    table = report.table()
    assert table.count("\n") == 3 and "| vi-meanfield | 4 |" in table
    assert (report.figure(tmp_path / "c.png")).stat().st_size > 1000
    # split by problems, then merged: the same summaries
    halves = [calibrate(problems[:2], ["map"], num_draws=16, seed=1, options={"num_steps": 20}),
              calibrate(problems[2:], ["map"], num_draws=16, seed=1, options={"num_steps": 20})]
    merged = CalibrationReport.merge([CalibrationReport.from_json(halves[0].to_json(tmp_path / "h.json")), halves[1]])
    assert merged.summary("map")["rmse_image"]["mean"] == pytest.approx(data["summary"]["map"]["rmse_image"]["mean"])
    with pytest.raises(ValueError, match="more than one report"):
        CalibrationReport.merge([halves[0], halves[0]])
    with pytest.raises(ValueError, match="unknown method"):
        calibrate(problems, ["no-such-method"])
    assert {"map", "vi-meanfield"} <= set(METHODS)


def test_the_method_table_names_every_configuration_once(monkeypatch):
    # the one table: every study configuration, each a method(model, seed, ...) of its own
    assert len(METHODS) == 24 and len(set(map(id, METHODS.values()))) == 24
    for name, method in METHODS.items():
        params = list(inspect.signature(method).parameters)
        assert params[:2] == ["model", "seed"], name
    assert {"map", "vi-meanfield", "recommended", "multistart-fullrank", "nuts-fullrank-depth7-short",
            "neutra"} <= set(METHODS)
    # methods of one's own come from a module's METHODS dict, added to a copy of the table
    mine = types.ModuleType("my_methods")
    mine.METHODS = {"mine": lambda model, seed: None}
    monkeypatch.setitem(sys.modules, "my_methods", mine)
    table = methods_from(["my_methods"])
    assert set(table) == set(METHODS) | {"mine"} and "mine" not in METHODS
    assert list(resolve_methods("map, mine", table)) == ["map", "mine"]
    with pytest.raises(ValueError, match="unknown method"):
        resolve_methods("mine")
    monkeypatch.setitem(sys.modules, "no_table", types.ModuleType("no_table"))
    with pytest.raises(ValueError, match="no METHODS dict"):
        methods_from(["no_table"])


def test_calibrate_cli_on_the_bundled_generator(tmp_path, capsys):
    from brgm_pyro.app.cli import main

    out = tmp_path / "cal"
    assert main(["calibrate", "--task", "inpainting", "--mask-id", "0", "--methods", "map,vi-meanfield",
                 "--num-problems", "2", "--num-draws", "8", "--steps", "3", "--seed", "1", "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| vi-meanfield | 2 |" in printed and "| map | 2 |" in printed
    data = json.loads((out / "calibration.json").read_text())
    assert data["settings"]["task"] == "inpainting" and data["settings"]["problem_seed"] == 1
    assert data["records"]["vi-meanfield"][0]["options"] == {"num_steps": 3}
    assert len(data["summary"]["vi-meanfield"]["coverage_pixels"]) == 9
    assert (out / "calibration.png").stat().st_size > 1000
    assert main(["calibrate", "--task", "inpainting", "--methods", "nope", "--out", str(out)]) == 2
    assert "unknown method" in capsys.readouterr().err


def test_benchmark_smoke_resumes_and_merges(tmp_path):
    """benchmarks/calibration.py --smoke (what CI runs): per-problem files, skipped when present, merged tables."""
    bench = load_benchmark("calibration")
    out = tmp_path / "bench"
    assert bench.main(["--smoke", "--tasks", "inpainting", "--methods", "map", "--out", str(out)]) == 0
    first = (out / "inpainting" / "map" / "problem_001.json").stat().st_mtime_ns
    assert bench.main(["--smoke", "--tasks", "inpainting", "--methods", "map,vi-meanfield", "--out", str(out)]) == 0
    assert (out / "inpainting" / "map" / "problem_001.json").stat().st_mtime_ns == first  # not rerun
    merged = CalibrationReport.from_json(out / "inpainting" / "calibration.json")
    assert merged.methods == ["map", "vi-meanfield"] and len(merged.records["vi-meanfield"]) == 2
    table = (out / "calibration.md").read_text()
    assert "OMP_NUM_THREADS=1" in table and "problem seed 0" in table and "| vi-meanfield | 2 |" in table
    with pytest.raises(SystemExit, match="other settings"):
        bench.main(["--smoke", "--tasks", "inpainting", "--methods", "map", "--sigma-pixel", "0.2", "--out", str(out)])


class _FakeMCMC:
    """An MCMC-shaped result: draws (chains, draws, *site) of a given posterior, plus a diagnostics dict."""

    def __init__(self, model, sampler, chains: int, draws: int, offset: float = 0.0):
        torch.manual_seed(0)
        flat = sampler(chains * draws)
        self.latents = flat.reshape(chains, draws, *flat.shape[1:]).clone()
        self.latents += offset * torch.arange(chains).reshape(chains, *[1] * (self.latents.ndim - 1))
        self.divergences = torch.zeros(chains, draws, dtype=torch.bool)
        self.divergences[0, :3] = offset > 0
        pool = self.latents.reshape(-1, *flat.shape[1:])
        self.posterior = Posterior(model, lambda n: pool[torch.randint(0, pool.shape[0], (n,))])
        self.diagnostics = {"k_hat": 0.25 + offset, "note": "fake"}


def test_mcmc_diagnostics_and_method_diagnostics_are_recorded():
    import arviz as az

    problems = simulate_problems(linear_generator(), Inpainting(half_mask()), 3, sigma_pixel=0.1, seed=2)
    exact = exact_method()

    def mixed(model, seed):
        return _FakeMCMC(model, exact(model, seed).sample_latents, chains=4, draws=150)

    def stuck(model, seed):  # chains far apart: R-hat >> 1
        return _FakeMCMC(model, exact(model, seed).sample_latents, chains=4, draws=150, offset=1.0)

    report = calibrate(problems, {"mixed": mixed, "stuck": stuck}, num_draws=64, seed=0)
    good, bad = report.summary("mixed")["mcmc"], report.summary("stuck")["mcmc"]
    assert good["problems"] == 3 and good["problems_mixed"] == 3 and good["divergences"] == 0
    assert good["rhat_max"] < 1.05 and good["ess_bulk_min"] > 200 and good["ess_tail_min"] > 100
    assert bad["problems_mixed"] == 0 and bad["rhat_max"] > 1.5 and bad["divergences"] == 9
    record = report.records["stuck"][0]
    fake = stuck(problems[0].model, 0)
    ary = fake.latents.reshape(4, 150, -1).double().numpy()
    assert record["mcmc"]["rhat_max"] == pytest.approx(float(np.max(az.rhat(az.convert_to_dataset(ary))["x"].values)))
    assert record["diagnostics"] == {"k_hat": 1.25, "note": "fake"}
    assert report.summary("stuck")["diagnostics"]["k_hat"]["max"] == pytest.approx(1.25)
    # the rank statistics use L draws thinned evenly over the chains
    assert all(0 <= r <= report.sbc_draws for r in record["sbc_ranks"].values())


def test_an_import_of_a_missing_module_is_one_clear_line(tmp_path, capsys):
    from brgm_pyro.app.cli import main
    from brgm_pyro.study import methods_from

    with pytest.raises(ValueError, match="no module named 'no_such_module_xyz'"):
        methods_from(["no_such_module_xyz"])
    code = main(["calibrate", "--task", "inpainting", "--import", "no_such_module_xyz", "--num-problems", "1",
                 "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no module named 'no_such_module_xyz'" in err[0]
