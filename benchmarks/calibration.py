"""Calibration benchmark: do the posterior methods' intervals hold the truth at their nominal rate?

Problems are drawn from the model itself on the bundled generator (w ~ its Gaussian prior with
per-dimension std, kappa 0; x = G(w); y = f(x) + N(0, sigma_pixel^2)), for x4 super-resolution
(bicubic-antialias) and in-painting with standard mask 0; every method in ``--methods`` (names
from ``brgm_pyro.study.METHODS``) is run on every problem, each problem in its
own job with one thread (``OMP_NUM_THREADS=1``; ``--jobs`` processes at once): a configuration
of ``benchmarks/harness.py``, which also records the environment in every result file.

Results are saved per task, method and problem (OUT/TASK/METHOD/problem_007.json), so a run is
resumable (finished problems are skipped) and methods run at different times are merged into
one table per task (OUT/TASK/calibration.json and .png, OUT/calibration.md).

    python benchmarks/calibration.py --methods map,vi-meanfield --num-problems 20 --steps 500 --jobs 2
    python benchmarks/calibration.py --methods mine --methods-from mymodule   # mymodule.METHODS = {"mine": fn}
    python benchmarks/calibration.py --table-only                   # merge what is there and print
    python benchmarks/calibration.py --smoke --out /tmp/cal         # 2 problems, 5 steps (CI)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: import from the repository root, not benchmarks/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import harness  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "calibration"


def calibrate_job(params: dict) -> dict:
    """Simulate problem ``params["index"]`` of a task, run one method on it: its calibration
    report (``brgm_pyro.study.calibrate``) as a dict.  ``steps`` None: the method's own defaults."""
    from brgm_pyro.study import calibrate, methods_from, simulate_problem

    model = harness.problem_model(params["task"], generator=params["generator"], sigma_pixel=params["sigma_pixel"],
                                  prior_std=params["prior_std"])
    problem = simulate_problem(model, params["index"], params["problem_seed"])
    method = methods_from(params.get("imports", []))[params["method"]]
    options = None if params.get("steps") is None else {"num_steps": params["steps"]}
    report = calibrate([problem], {params["method"]: method}, num_draws=params["num_draws"], seed=params["seed"],
                       options=options, settings=params["settings"])
    return report.to_dict()


def _settings(args: argparse.Namespace, task: str) -> dict:
    """What must agree between result files before they are merged into one table."""
    return {"task": task, "corruption": dict(harness.TASKS[task].corruption), "generator": args.generator,
            "sigma_pixel": args.sigma_pixel, "prior_std": args.prior_std, "kappa": 0.0,
            "problem_seed": args.problem_seed, "steps": args.steps}


def merge_task(task_dir: Path):
    """One CalibrationReport of every method's per-problem files in OUT/TASK (or None)."""
    from brgm_pyro.study import CalibrationReport

    files = sorted(task_dir.glob("*/problem_*.json"))
    if not files:
        return None
    reports = [CalibrationReport.from_json(f) for f in files]
    groups: dict[tuple, list] = {}
    for r in reports:
        key = (r.num_draws, r.seed, tuple(r.levels), r.sbc_draws)
        groups.setdefault(key, []).append(r)
    if len(groups) > 1:
        raise SystemExit(f"{task_dir} mixes runs with different num_draws / seed / levels: {sorted(groups)}")
    merged = CalibrationReport.merge(reports)
    order = ["map"] + sorted(m for m in merged.records if m != "map")
    merged.records = {m: merged.records[m] for m in order if m in merged.records}
    return merged


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", default="map,vi-meanfield", help="comma-separated names from METHODS")
    p.add_argument("--tasks", default="super-resolution,inpainting",
                   help=f"comma-separated: {', '.join(harness.TASKS)}")
    p.add_argument("--num-problems", type=int, default=20)
    p.add_argument("--start", type=int, default=0, help="index of the first problem (to add problems later)")
    p.add_argument("--steps", type=int, default=500, help="optimisation steps (num_steps of the methods)")
    p.add_argument("--num-draws", type=int, default=256)
    p.add_argument("--problem-seed", type=int, default=0, help="seed of the simulated problems")
    p.add_argument("--seed", type=int, default=0, help="seed of the methods and their draws")
    p.add_argument("--sigma-pixel", type=float, default=0.1)
    p.add_argument("--prior-std", default="per-dimension", choices=("per-dimension", "scalar"))
    p.add_argument("--generator", default=harness.BUNDLED)
    p.add_argument("--jobs", type=int, default=1, help="problems run at once, one process each")
    p.add_argument("--methods-from", dest="imports", action="append", default=[], metavar="MODULE",
                   help="module whose METHODS dict (name -> method) adds methods to the table (repeatable)")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--force", action="store_true", help="rerun problems that already have results")
    p.add_argument("--table-only", action="store_true", help="only merge the results in OUT and print the tables")
    p.add_argument("--smoke", action="store_true", help="2 problems, 5 steps, 16 draws (CI)")
    args = p.parse_args(argv)
    if args.smoke:
        args.num_problems, args.steps, args.num_draws = 2, 5, 16
    harness.limit_threads(1)
    from brgm_pyro.study import methods_from, resolve_methods

    methods = list(resolve_methods(args.methods, methods_from(args.imports)))
    try:
        tasks = harness.parse_tasks(args.tasks)
    except ValueError as error:
        p.error(str(error))
    out = Path(args.out)

    failed = 0
    if not args.table_only:
        jobs = []
        for index in range(args.start, args.start + args.num_problems):  # problem-major: partial runs stay balanced
            for task in tasks:
                settings = _settings(args, task)
                for method in methods:
                    params = dict(task=task, method=method, index=index, steps=args.steps, num_draws=args.num_draws,
                                  seed=args.seed, problem_seed=args.problem_seed, sigma_pixel=args.sigma_pixel,
                                  prior_std=args.prior_std, generator=args.generator, imports=args.imports,
                                  settings=settings)
                    jobs.append(harness.Job(out / task / method / f"problem_{index:03d}.json", params,
                                            expect={"settings": settings, "num_draws": args.num_draws,
                                                    "seed": args.seed}))
        failed = len(harness.run_jobs(calibrate_job, jobs, workers=args.jobs, force=args.force).failed)

    lines = [harness.header("calibration benchmark, one thread per problem", harness.environment(args.jobs)), ""]
    for task in tasks:
        report = merge_task(out / task)
        if report is None:
            continue
        report.settings = {k: v for k, v in report.settings.items() if k != "steps"}
        report.to_json(out / task / "calibration.json")
        report.figure(out / task / "calibration.png")
        steps = sorted({str(r["options"].get("num_steps")) for recs in report.records.values() for r in recs})
        st = report.settings
        made = harness.recorded_environments(harness.load_results((out / task).glob("*/problem_*.json")))
        lines += [f"## {task} ({harness.TASKS[task].describe()}): generator {st['generator']}, sigma_pixel "
                  f"{st['sigma_pixel']}, prior {st['prior_std']} std, kappa 0; problem seed {st['problem_seed']}, "
                  f"method seed {report.seed}; {report.num_draws} draws; steps {', '.join(steps)}",
                  "", f"Runs: {made}.", "", report.table(), ""]
    text = "\n".join(lines)
    (out / "calibration.md").parent.mkdir(parents=True, exist_ok=True)
    (out / "calibration.md").write_text(text)
    print(text)
    if failed:
        print(f"{failed} job(s) failed (see above); their problems are missing from the tables", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
