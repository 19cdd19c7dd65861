"""The NUTS reference on the calibration problems: does it mix, is it calibrated, what does it cost?

Runs the calibration benchmark (``benchmarks/calibration.py``) with the methods "map" and "nuts"
(``brgm_pyro.inference.neutra.nuts_reference``: MAP + Gauss-Newton Laplace covariance as a dense,
fixed mass matrix, 4 chains started at draws of that Gaussian) into
``benchmarks/results/nuts_reference``, then prints one row per problem: max R-hat / min bulk and
tail ESS over the latents, 64 unknown-region pixels and the log-likelihood, divergences, step
size, tree depth, coverage of the 50% / 90% intervals of the unknown pixels, posterior-mean RMSE
(0-255) against MAP's, and wall time.

    python benchmarks/nuts_reference.py --num-problems 5 --jobs 2    # run, then print the table
    python benchmarks/nuts_reference.py --sampler nuts-fullrank --num-problems 5 --jobs 2
    python benchmarks/nuts_reference.py --table-only                  # print what is there

Other arguments are passed to ``benchmarks/calibration.py`` (e.g. ``--start``, ``--tasks``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "nuts_reference"
SAMPLERS = ("nuts", "nuts-fullrank", "nuts-fullrank-long", "nuts-fullrank-depth7", "nuts-fullrank-depth7-short",
            "nuts-fullrank-adapted")


def _level(report: dict, level: float) -> int:
    return min(range(len(report["levels"])), key=lambda i: abs(report["levels"][i] - level))


def rows(out: Path = OUT) -> list[dict]:
    """One dict per (task, problem) with a "nuts" result (and the "map" RMSE when present)."""
    table = []
    for task_dir in sorted(p for p in out.iterdir() if p.is_dir()):
        for path in sorted(p for method_dir in SAMPLERS for p in (task_dir / method_dir).glob("problem_*.json")):
            report = json.loads(path.read_text())
            sampler = path.parent.name
            rec = report["records"][sampler][0]
            d = rec["diagnostics"]
            map_path = task_dir / "map" / path.name
            map_rmse = None
            if map_path.is_file():
                map_rmse = json.loads(map_path.read_text())["records"]["map"][0]["rmse_unknown"]
            i50, i90 = _level(report, 0.5), _level(report, 0.9)
            table.append({
                "task": task_dir.name, "sampler": sampler, "problem": rec["index"], "max_rhat": d["max_rhat"],
                "min_ess_bulk": d["min_ess_bulk"], "min_ess_tail": d["min_ess_tail"],
                "rhat_latents": d["groups"]["latents"]["max_rhat"], "rhat_pixels": d["groups"]["pixels"]["max_rhat"],
                "rhat_loglik": d["groups"]["log_likelihood"]["max_rhat"],
                "divergences": d["divergences"], "step_size": sum(d["step_sizes"]) / len(d["step_sizes"]),
                "mean_tree_depth": d["mean_tree_depth"], "cov50_pixels": rec["coverage_pixels"][i50],
                "cov90_pixels": rec["coverage_pixels"][i90], "cov90_latents": rec["coverage_latents"][i90],
                "rmse": rec["rmse_unknown"], "map_rmse": map_rmse, "seconds": rec["seconds"],
                "chains_x_draws": f"{d['num_chains']}x{d['num_draws']}",
            })
    return table


def markdown(table: list[dict]) -> str:
    head = ("| task | sampler | problem | chains x draws | max R-hat (latents / pixels / loglik) | min bulk ESS "
            "| min tail ESS | divergences | step size | mean tree depth | 50% / 90% coverage (pixels) "
            "| 90% coverage (latents) | RMSE NUTS / MAP (0-255) | wall s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    f = lambda v, p=3: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    for r in table:
        lines.append(
            f"| {r['task']} | {r['sampler']} | {r['problem']} | {r['chains_x_draws']} | {f(r['max_rhat'])} "
            f"({f(r['rhat_latents'])} / "
            f"{f(r['rhat_pixels'])} / {f(r['rhat_loglik'])}) | {f(r['min_ess_bulk'], 0)} | {f(r['min_ess_tail'], 0)} "
            f"| {r['divergences']} | {f(r['step_size'])} | {f(r['mean_tree_depth'], 2)} | {f(r['cov50_pixels'], 2)} / "
            f"{f(r['cov90_pixels'], 2)} | {f(r['cov90_latents'], 2)} | {f(r['rmse'], 1)} / {f(r['map_rmse'], 1)} "
            f"| {f(r['seconds'], 0)} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    sampler = "nuts"
    if "--sampler" in argv:  # "nuts" (Laplace metric) or "nuts-fullrank" (the recommended posterior's)
        i = argv.index("--sampler")
        sampler, argv = argv[i + 1], argv[:i] + argv[i + 2:]
        if sampler not in SAMPLERS:
            raise SystemExit(f"--sampler must be one of {SAMPLERS}")
    if "--table-only" not in argv:
        cmd = [sys.executable, str(HERE / "calibration.py"), "--methods", f"map,{sampler}", "--out", str(OUT), *argv]
        subprocess.run(cmd, check=True)
    table = rows()
    text = markdown(table)
    (OUT / "nuts_reference.json").write_text(json.dumps(table, indent=1))
    (OUT / "nuts_reference.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
