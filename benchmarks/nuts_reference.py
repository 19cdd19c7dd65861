"""The NUTS reference on the calibration problems: does it mix, is it calibrated, what does it cost?

Runs the calibration benchmark (``benchmarks/calibration.py``) with the methods "map" and "nuts"
(``brgm_pyro.study.methods.nuts_reference``: MAP + Gauss-Newton Laplace covariance as a dense,
fixed mass matrix, 4 chains started at draws of that Gaussian) into
``benchmarks/results/nuts_reference``, then prints one row per problem: max R-hat / min bulk and
tail ESS over the latents, 64 unknown-region pixels and the log-likelihood, divergences, step
size, tree depth, coverage of the 50% / 90% intervals of the unknown pixels, posterior-mean RMSE
(0-255) against MAP's, and wall time.

    python benchmarks/nuts_reference.py --num-problems 5 --jobs 2    # run, then print the table
    python benchmarks/nuts_reference.py --sampler nuts-fullrank --num-problems 5 --jobs 2
    python benchmarks/nuts_reference.py --table-only                  # print what is there

Other arguments are passed to ``benchmarks/calibration.py`` (e.g. ``--start``, ``--tasks``).

A second table compares the reference with the recommended posterior widened by its fitted
interval scale (``benchmarks/interval_scale.py``'s results for problem seed 0, the same problems
and method seed): per problem, each task's reference sampler (``REFERENCE``) that mixes against
``multistart-fullrank`` at scale 1 and at the fitted scale, then the means over those problems
with standard errors, and the paired differences.
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
SCALE_OUT = HERE / "results" / "interval_scale"
SAMPLERS = ("nuts", "nuts-fullrank", "nuts-fullrank-long", "nuts-fullrank-depth7", "nuts-fullrank-depth7-short",
            "nuts-fullrank-adapted")

# the reference sampler of each task, longest run first: a problem's reference is the first with a result
REFERENCE = {"super-resolution": ("nuts-fullrank-long",),
             "inpainting": ("nuts-fullrank-depth7", "nuts-fullrank-depth7-short")}
MIXES = {"max_rhat": 1.05, "min_ess_bulk": 100}  # the reference's mixing target (and no divergences)


def mixes(row: dict) -> bool:
    """R-hat < 1.05 over the chains, bulk ESS >= 100 and no divergences (all monitored quantities)."""
    return row["max_rhat"] < MIXES["max_rhat"] and row["min_ess_bulk"] >= MIXES["min_ess_bulk"] \
        and row["divergences"] == 0


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


def reference_vs_fullrank(table: list[dict], scale_out: Path = SCALE_OUT) -> tuple[list[dict], dict[str, float]]:
    """Pair each task's mixing reference run (``REFERENCE``) with ``interval_scale``'s run of the
    recommended posterior on the same problem (problem seed 0): pixel coverage at 50% / 90% and
    posterior-mean RMSE of NUTS, of the fit at scale 1 and at the task's fitted scale."""
    fitted = json.loads((scale_out / "interval_scale.json").read_text())["scales"]
    pairs = []
    for task, samplers in REFERENCE.items():
        chosen: dict[int, dict] = {}
        for r in table:
            if r["task"] == task and r["sampler"] in samplers and mixes(r):
                best = chosen.get(r["problem"])
                if best is None or samplers.index(r["sampler"]) < samplers.index(best["sampler"]):
                    chosen[r["problem"]] = r
        for problem, r in sorted(chosen.items()):
            path = scale_out / task / "seed_0" / f"problem_{problem:03d}.json"
            if not path.is_file():
                continue
            fit = json.loads(path.read_text())
            i50, i90 = _level(fit, 0.5), _level(fit, 0.9)
            pair = {"task": task, "problem": problem, "sampler": r["sampler"], "scale": fitted[task],
                    "nuts_cov50": r["cov50_pixels"], "nuts_cov90": r["cov90_pixels"], "nuts_rmse": r["rmse"],
                    "map_rmse": fit["map_rmse_unknown"]}
            for name, s in (("fit1", 1.0), ("fit", fitted[task])):
                j = fit["scales"].index(s)
                pair.update({f"{name}_cov50": fit["pixels"][j][i50], f"{name}_cov90": fit["pixels"][j][i90],
                             f"{name}_rmse": fit["rmse_unknown"][j]})
            pairs.append(pair)
    return pairs, fitted


def _mean_se(values: list[float], digits: int = 3) -> str:
    """Mean +- its standard error across problems."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return f"{mean:.{digits}f}"
    se = (sum((v - mean) ** 2 for v in values) / (n - 1) / n) ** 0.5
    return f"{mean:.{digits}f} +- {se:.{digits}f}"


def comparison_markdown(pairs: list[dict]) -> str:
    head = ("| task | problem | reference | scale s | 50% holds: NUTS / fit x1 / fit x s | 90% holds: NUTS / fit x1 "
            "/ fit x s | RMSE (0-255): NUTS / fit x s / MAP |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for p in pairs:
        lines.append(f"| {p['task']} | {p['problem']} | {p['sampler']} | {p['scale']:.2f} | {p['nuts_cov50']:.2f} / "
                     f"{p['fit1_cov50']:.2f} / {p['fit_cov50']:.2f} | {p['nuts_cov90']:.2f} / {p['fit1_cov90']:.2f} / "
                     f"{p['fit_cov90']:.2f} | {p['nuts_rmse']:.1f} / {p['fit_rmse']:.1f} / {p['map_rmse']:.1f} |")
    for task in sorted({p["task"] for p in pairs}):
        group = [p for p in pairs if p["task"] == task]
        means = lambda keys, digits=3: " / ".join(_mean_se([p[k] for p in group], digits) for k in keys)  # noqa: E731
        diff = lambda a, b, digits=3: _mean_se([p[a] - p[b] for p in group], digits)  # noqa: E731
        lines.append(f"| {task}, mean of {len(group)} | | | | {means(('nuts_cov50', 'fit1_cov50', 'fit_cov50'))} "
                     f"| {means(('nuts_cov90', 'fit1_cov90', 'fit_cov90'))} "
                     f"| {means(('nuts_rmse', 'fit_rmse', 'map_rmse'), 1)} |")
        lines.append(f"| {task}, NUTS - fit x s | | | | {diff('nuts_cov50', 'fit_cov50')} "
                     f"| {diff('nuts_cov90', 'fit_cov90')} | {diff('nuts_rmse', 'fit_rmse', 1)} |")
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
    if (SCALE_OUT / "interval_scale.json").is_file():
        pairs, _ = reference_vs_fullrank(table)
        compared = comparison_markdown(pairs)
        (OUT / "reference_vs_fullrank.json").write_text(json.dumps(pairs, indent=1))
        (OUT / "reference_vs_fullrank.md").write_text(compared + "\n")
        print("\nThe mixing reference against the recommended posterior (multistart-fullrank), same problems:")
        print(compared)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
