"""benchmarks/fast_posterior.py, a configuration of the harness: the smoke run end to end, its
pairing with the stored current-method records and the shipped scale it reads."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import fast_posterior, harness

STORED = Path(fast_posterior.__file__).parent / "results" / "interval_scale"


def test_shipped_scale_is_the_bundled_generators_recorded_scale(monkeypatch):
    """The bundled generator records no latent scale (its settings have real-image factors): 1 everywhere; a
    generator that records one gets it in its setting only (the first generator's, fitted by interval_scale.py)."""
    fitted = json.loads((STORED / "interval_scale.json").read_text())["scales"]
    for task in ("inpainting", "super-resolution", "inpainting-mask3"):
        assert fast_posterior.shipped_scale(task) == 1.0
    model = harness.problem_model("inpainting")
    recorded = {**model.generator.metadata, "interval_scales": {"inpainting-mask0": fitted["inpainting"]}}
    monkeypatch.setattr(model.generator, "metadata", recorded)
    monkeypatch.setattr(harness, "problem_model", lambda task: model)
    assert fast_posterior.shipped_scale("inpainting") == fitted["inpainting"] == 1.35


def test_smoke_run_writes_a_record_paired_with_the_stored_one(tmp_path):
    out = tmp_path / "fast"
    assert fast_posterior.main(["--smoke", "--tasks", "super-resolution", "--settings", "current",
                                "--num-problems", "1", "--out", str(out)]) == 0
    path = out / "current" / "super-resolution" / "seed_0" / "problem_000.json"
    record = json.loads(path.read_text())
    stored = json.loads((STORED / "super-resolution" / "seed_0" / "problem_000.json").read_text())
    # the same problem and seeds as the stored current-method record
    assert (record["method_seed"], record["sample_seed"]) == (stored["method_seed"], stored["sample_seed"])
    assert record["options"] == fast_posterior.SMOKE and record["num_draws"] == 8
    assert record["scales"] == stored["scales"] and len(record["pixels"]) == len(stored["scales"])
    assert record["environment"]["torch_threads"] == 1 and record["fit_seconds"] > 0
    text = (out / "fast_posterior.md").read_text()
    j, i90 = record["scales"].index(1.0), record["levels"].index(0.9)
    delta = record["pixels"][j][i90] - stored["pixels"][j][i90]
    row = next(line for line in text.splitlines() if line.startswith("| super-resolution | current | 1 | 1.00 |"))
    assert f"| {delta:.3f} ± nan (n=1) |" in row
    # the bundled generator records no latent scale, so scale 1 is the shipped one and the only row
    assert [line for line in text.splitlines() if line.startswith("| super-resolution | current | 1 |")] == [row]
