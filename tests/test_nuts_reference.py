"""benchmarks/nuts_reference.py: which runs count as the reference, and their pairing with the
recommended posterior's interval-scale results (synthetic result files, values checked by hand)."""

from __future__ import annotations

import json
import statistics

from .inference_problems import load_benchmark

bench = load_benchmark("nuts_reference")
LEVELS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def _row(task, sampler, problem, rhat=1.01, ess=300.0, divergences=0, cov50=0.5, cov90=0.9, rmse=15.0):
    return {"task": task, "sampler": sampler, "problem": problem, "max_rhat": rhat, "min_ess_bulk": ess,
            "divergences": divergences, "cov50_pixels": cov50, "cov90_pixels": cov90, "rmse": rmse}


def _fit_result(path, problem, scales, shift):
    """An interval_scale record whose coverage at level l and scale s is l * s / 2 + shift."""
    pixels = [[round(level * s / 2 + shift, 6) for level in LEVELS] for s in scales]
    record = {"index": problem, "levels": LEVELS, "scales": scales, "pixels": pixels,
              "rmse_unknown": [20.0 + s + shift for s in scales], "map_rmse_unknown": 30.0 + shift}
    path.mkdir(parents=True, exist_ok=True)
    (path / f"problem_{problem:03d}.json").write_text(json.dumps(record))


def test_mixing_target():
    assert bench.mixes(_row("inpainting", "x", 0))
    assert not bench.mixes(_row("inpainting", "x", 0, rhat=1.05))
    assert not bench.mixes(_row("inpainting", "x", 0, ess=99.0))
    assert not bench.mixes(_row("inpainting", "x", 0, divergences=1))


def test_reference_is_paired_with_the_widened_fit_on_the_same_problem(tmp_path):
    scales = [1.0, 1.35, 2.0]
    (tmp_path / "interval_scale.json").write_text(json.dumps({"scales": {"inpainting": 1.35}}))
    for problem in range(4):
        _fit_result(tmp_path / "inpainting" / "seed_0", problem, scales, shift=0.01 * problem)
    table = [
        _row("inpainting", "nuts-fullrank-depth7-short", 0, cov90=0.70),
        _row("inpainting", "nuts-fullrank-depth7", 0, cov90=0.80),  # the longer run wins for problem 0
        _row("inpainting", "nuts-fullrank-depth7-short", 1, cov90=0.85, rmse=17.0),
        _row("inpainting", "nuts-fullrank-depth7-short", 2, rhat=1.2),  # does not mix: left out
        _row("inpainting", "nuts-fullrank", 3),  # not a reference sampler: left out
        _row("inpainting", "nuts-fullrank-depth7-short", 5),  # no fit result for problem 5: left out
    ]
    pairs, fitted = bench.reference_vs_fullrank(table, scale_out=tmp_path)
    assert fitted == {"inpainting": 1.35}
    assert [(p["problem"], p["sampler"]) for p in pairs] == [(0, "nuts-fullrank-depth7"),
                                                             (1, "nuts-fullrank-depth7-short")]
    p1 = pairs[1]
    assert p1["nuts_cov90"] == 0.85 and p1["nuts_rmse"] == 17.0 and p1["map_rmse"] == 30.01
    assert abs(p1["fit_cov90"] - (0.9 * 1.35 / 2 + 0.01)) < 1e-9  # level 0.9 at scale 1.35
    assert abs(p1["fit1_cov50"] - (0.5 * 1.0 / 2 + 0.01)) < 1e-9  # level 0.5 at scale 1
    assert abs(p1["fit_rmse"] - (21.35 + 0.01)) < 1e-9

    text = bench.comparison_markdown(pairs)
    differences = [0.80 - (0.9 * 1.35 / 2), 0.85 - (0.9 * 1.35 / 2 + 0.01)]
    mean, se = statistics.mean(differences), statistics.stdev(differences) / 2 ** 0.5
    summary = [line for line in text.splitlines() if "NUTS - fit x s" in line]
    assert len(summary) == 1 and f"| {mean:.3f} +- {se:.3f} |" in summary[0]
    assert "| inpainting, mean of 2 |" in text
