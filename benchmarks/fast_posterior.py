"""Cheaper settings of the recommended posterior, checked against the current method on the same problems.

For each (task, problem seed, problem) this re-runs ``benchmarks/interval_scale.py``'s job with
other settings of ``fit_multistart_fullrank`` (the fit inside
``brgm_pyro.inference.fit_recommended_posterior``, before its widening; its starts, MAP steps,
successive halving and VI steps are the settings compared here):
the same simulated problem, the same method and draw seeds, 256 draws, coverage on the same scale
grid.  It pairs every problem with the current method's stored record
(``benchmarks/results/interval_scale/TASK/seed_S/problem_XXX.json``: 8 starts x 500 MAP steps,
200 VI steps) and prints, per task and setting, the coverage of the unknown pixels at 90% / 50%
and the posterior-mean RMSE at scale 1 and at the task's shipped interval scale (the bundled
generator's metadata ``interval_scales``, ``shipped_scale``), with standard errors across
problems and the paired difference to the current method, and the fit's time over a 500-step
MAP run in the same process.

A configuration of ``benchmarks/harness.py``: one process and one thread per job, ``--jobs`` at
once, the environment stored in every file; one JSON per (setting, task, seed, problem) under
``--out``, so a run resumes where it stopped (a file made with other options stops the run).
``--smoke`` checks the script end to end in a minute or two: 2 starts x 5 MAP steps, 5 VI steps,
a 5-step MAP for the timing and 8 draws, in a temporary folder unless ``--out`` is given.

    nice -n 10 python benchmarks/fast_posterior.py --settings s250-v100 --tasks inpainting,super-resolution \\
        --seeds 0 --num-problems 12 --jobs 1
    python benchmarks/fast_posterior.py --table-only
    python benchmarks/fast_posterior.py --settings current --num-problems 1    # reproduces the stored record
    python benchmarks/fast_posterior.py --smoke --num-problems 1 --tasks inpainting
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: import from the repository root, not benchmarks/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import harness  # noqa: E402
from benchmarks.interval_scale import LEVELS, SCALES  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "fast_posterior"
STORED = HERE / "results" / "interval_scale"

SETTINGS = {
    # the method interval_scale.py ran (the recommended posterior's fit until session 11): 8 starts x 500 MAP
    # steps, 200 VI steps; the recommended posterior since session 11 is "k3-sc50-v100"
    "current": dict(num_starts=8, num_steps=500, vi_steps=200),
    "s300-v100": dict(num_starts=8, num_steps=300, vi_steps=100),
    "s250-v100": dict(num_starts=8, num_steps=250, vi_steps=100),
    "s200-v100": dict(num_starts=8, num_steps=200, vi_steps=100),
    "s250-v50": dict(num_starts=8, num_steps=250, vi_steps=50),
    "s250-v200": dict(num_starts=8, num_steps=250, vi_steps=200),
    "s500-v100": dict(num_starts=8, num_steps=500, vi_steps=100),
    "k2-s300-v100": dict(num_starts=8, num_steps=300, vi_steps=100, keep=2, screen_steps=100),
    "n4-s250-v100": dict(num_starts=4, num_steps=250, vi_steps=100),
    "n4-s500-v100": dict(num_starts=4, num_steps=500, vi_steps=100),
    "k4-sc50-v100": dict(num_starts=8, num_steps=500, vi_steps=100, keep=4, screen_steps=50),
    "k3-sc50-v100": dict(num_starts=8, num_steps=500, vi_steps=100, keep=3, screen_steps=50),
    "k3-sc50-v50": dict(num_starts=8, num_steps=500, vi_steps=50, keep=3, screen_steps=50),
}
SMOKE = dict(num_starts=2, num_steps=5, vi_steps=5)
"""``--smoke``: the options of every setting, replaced (the script end to end, nothing measured)."""
MAP_STEPS = 500
"""Steps of the MAP run the fit is timed against (interval_scale.py's MAP)."""


def posterior_job(params: dict) -> dict:
    """One problem with one setting: the fit, its time over MAP's, and its coverage on the scale grid."""
    import time

    from brgm_pyro.inference.map import map_estimate
    from brgm_pyro.inference.multistart import fit_multistart_fullrank
    from brgm_pyro.study import ScaleProblem, coverage_by_scale, derive_seed, simulate_problem

    model = harness.problem_model(params["task"])  # the calibration benchmark's model, built once per process
    problem = simulate_problem(model, params["index"], params["problem_seed"])
    seed, index = params["seed"], params["index"]
    method_seed, sample_seed = derive_seed(seed, index, 0), derive_seed(seed, index, 1)
    map_seconds = None
    if params["map_steps"]:
        t = time.perf_counter()
        map_estimate(problem.model, num_steps=params["map_steps"], seed=method_seed, progress=False)
        map_seconds = time.perf_counter() - t
    t = time.perf_counter()
    posterior = fit_multistart_fullrank(problem.model, seed=method_seed, **params["options"])
    fit_seconds = time.perf_counter() - t
    scale_problem = ScaleProblem.from_posterior(problem, posterior, params["num_draws"], seed=sample_seed)
    curves = coverage_by_scale(scale_problem, params["scales"], LEVELS)
    return {**{k: params[k] for k in ("setting", "task", "problem_seed", "index", "seed", "num_draws", "scales",
                                      "options", "map_steps")},
            "method_seed": method_seed, "sample_seed": sample_seed, "levels": list(LEVELS),
            "map_seconds": map_seconds, "fit_seconds": fit_seconds, **curves, "load_average": os.getloadavg()}


def shipped_scale(task: str) -> float:
    """The bundled generator's interval scale for ``task`` (its metadata ``interval_scales``, the
    setting named as ``brgm`` names it); 1 where it records none."""
    from brgm_pyro.app.settings import INTERVAL_SCALES_KEY
    from brgm_pyro.corruptions import setting_name

    model = harness.problem_model(task)
    name = setting_name(model.corruption)
    metadata = model.generator.metadata or {}
    return float((metadata.get(INTERVAL_SCALES_KEY) or {}).get(name, 1.0))


def _fmt(pair: tuple[float, float], digits: int = 3) -> str:
    return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"


def table(records: list[dict]) -> str:
    """Per task and setting: coverage / RMSE at scale 1 and the shipped scale, paired with the stored
    current-method record of the same problem (``STORED``), and the fit's time over MAP's."""
    lines = ["| task | setting | problems | scale | 90% holds | Δ90 vs current (paired) | 50% holds "
             "| Δ50 vs current (paired) | RMSE unknown (0-255) | ΔRMSE vs current | fit s / MAP s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    settings = list(SETTINGS) + sorted({r["setting"] for r in records} - set(SETTINGS))
    for task in sorted({r["task"] for r in records}):
        shipped = shipped_scale(task)
        for setting in [s for s in settings if any(r["setting"] == s and r["task"] == task for r in records)]:
            group = [r for r in records if r["task"] == task and r["setting"] == setting]
            pairs = []
            for r in group:
                ref = STORED / task / f"seed_{r['problem_seed']}" / f"problem_{r['index']:03d}.json"
                pairs.append(harness.load_results([ref])[0] if ref.is_file() else None)
            levels = group[0]["levels"]
            i90, i50 = levels.index(0.9), levels.index(0.5)
            timed = [r["fit_seconds"] / r["map_seconds"] for r in group if r["map_seconds"]]
            cost = harness.mean_se(timed) if timed else (math.nan, math.nan)
            for scale in sorted({1.0, shipped}):
                if scale not in group[0]["scales"]:
                    continue  # not on this run's grid
                j = group[0]["scales"].index(scale)
                c90 = harness.mean_se([r["pixels"][j][i90] for r in group])
                c50 = harness.mean_se([r["pixels"][j][i50] for r in group])
                rmse = harness.mean_se([r["rmse_unknown"][j] for r in group])
                paired = [(r, p) for r, p in zip(group, pairs) if p is not None and p["scales"] == r["scales"]]
                if paired:
                    jp = paired[0][1]["scales"].index(scale)
                    d90 = _fmt(harness.mean_se([r["pixels"][j][i90] - p["pixels"][jp][i90] for r, p in paired]))
                    d50 = _fmt(harness.mean_se([r["pixels"][j][i50] - p["pixels"][jp][i50] for r, p in paired]))
                    dr = _fmt(harness.mean_se([r["rmse_unknown"][j] - p["rmse_unknown"][jp] for r, p in paired]), 1)
                    d90, d50, dr = (f"{d} (n={len(paired)})" for d in (d90, d50, dr))
                else:
                    d90 = d50 = dr = "-"
                lines.append(f"| {task} | {setting} | {len(group)} | {scale:.2f} | {_fmt(c90)} | {d90} "
                             f"| {_fmt(c50)} | {d50} | {_fmt(rmse, 1)} | {dr} | {_fmt(cost, 2)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", default="s250-v100", help=f"comma-separated: {', '.join(SETTINGS)}")
    p.add_argument("--tasks", default="inpainting,super-resolution")
    p.add_argument("--seeds", default="0", help="problem seeds (the stored scale was fitted on seed 2: use others)")
    p.add_argument("--num-problems", type=int, default=12)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--seed", type=int, default=0, help="seed of the methods and their draws (as stored: 0)")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help=f"results folder (default {DEFAULT_OUT})")
    p.add_argument("--deadline", type=float, default=None, help="start no job after this many seconds")
    p.add_argument("--force", action="store_true", help="rerun jobs whose file exists")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--no-map", action="store_true", help=f"skip the {MAP_STEPS}-step MAP run that times the fit "
                                                          "against MAP")
    p.add_argument("--smoke", action="store_true", help=f"every setting's options replaced by {SMOKE}, a 5-step "
                                                        "MAP timing, 8 draws; a temporary --out by default")
    args = p.parse_args(argv)
    harness.limit_threads(1)
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        p.error(f"unknown setting(s) {unknown}; choose from {', '.join(SETTINGS)}")
    if args.num_problems < 1 or args.start < 0:
        p.error("--num-problems must be >= 1 and --start >= 0")
    try:
        tasks = harness.parse_tasks(args.tasks)
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError as error:
        p.error(str(error))
    out = args.out or (Path(tempfile.mkdtemp(prefix="fast-posterior-smoke-")) if args.smoke else DEFAULT_OUT)
    num_draws = 8 if args.smoke else 256
    map_steps = 0 if args.no_map else (5 if args.smoke else MAP_STEPS)
    failed = 0
    if not args.table_only:
        jobs = []
        for i in range(args.start, args.start + args.num_problems):  # index-major: with --deadline all get the same
            for seed in seeds:
                for task in tasks:
                    for s in settings:
                        options = dict(SMOKE) if args.smoke else SETTINGS[s]
                        expect = {"setting": s, "seed": args.seed, "num_draws": num_draws, "options": options,
                                  "scales": list(SCALES)}
                        params = {**expect, "task": task, "problem_seed": seed, "index": i, "map_steps": map_steps}
                        jobs.append(harness.Job(out / s / task / f"seed_{seed}" / f"problem_{i:03d}.json", params,
                                                expect=expect))
        failed = len(harness.run_jobs(posterior_job, jobs, workers=args.jobs, force=args.force,
                                      deadline=args.deadline).failed)
    records = harness.load_results(out.glob("*/*/seed_*/problem_*.json"))
    if not records:
        raise SystemExit(f"no results under {out}")
    text = (harness.header("cheaper settings of the recommended posterior, one thread per problem",
                           harness.environment(args.jobs)) + "\n"
            + f"# results: {harness.recorded_environments(records)}\n\n"
            + "Cheaper settings of the recommended posterior vs the current method (paired with its stored record "
            + f"under {STORED.relative_to(HERE.parent)}: same problems and seeds); shared machine: times are loaded"
            + (f"; SMOKE run (options {SMOKE}, 8 draws): nothing measured" if args.smoke else "") + "\n\n"
            + table(records))
    print(text)
    (out / "fast_posterior.md").write_text(text + "\n")
    if failed:
        print(f"{failed} job(s) failed (see above); their problems are missing from the table", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
