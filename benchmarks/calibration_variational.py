"""Calibration of the variational methods (and MAP) on the bundled generator, one thread.

The problems of issue 10: w ~ the bundled generator's Gaussian prior (per-dimension std, kappa 0),
x = G(w), y = f(x) + N(0, 0.1^2), pixel likelihood only (sigma_pixel 0.1); x4 super-resolution
(bicubic-antialias) and in-painting with standard mask 0 (right half hidden).  Each (task, method,
problem) is measured by ``brgm_pyro.study.calibrate`` and saved as its own JSON
(OUT/TASK/METHOD/problem_007.json, with the environment; ``benchmarks/harness.py``, one thread per
problem, ``--jobs`` at once), so runs resume and merge; ``--table`` merges them, prints the
calibration table per task and each method's wall time per problem relative to MAP's on the same
problems (paired ratios, mean +- se), and writes OUT/TASK.json.

    python benchmarks/calibration_variational.py --task inpainting --methods map,laplace \
        --problems 0-19
    python benchmarks/calibration_variational.py --table
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: import from the repository root, not benchmarks/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import harness  # noqa: E402
from benchmarks.calibration import calibrate_job  # noqa: E402

TASKS = ("super-resolution", "inpainting")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "calibration-variational"


def jobs(args: argparse.Namespace) -> list[harness.Job]:
    """One job per (problem, method): the methods' own default steps (no ``num_steps`` option)."""
    from brgm_pyro.study import resolve_methods

    settings = {"task": args.task, "problem_seed": args.problem_seed, "generator": harness.BUNDLED}
    return [harness.Job(args.out / args.task / name / f"problem_{index:03d}.json",
                        dict(task=args.task, method=name, index=index, steps=None, num_draws=args.draws,
                             seed=args.seed, problem_seed=args.problem_seed, sigma_pixel=None,
                             prior_std="per-dimension", generator=harness.BUNDLED, settings=settings),
                        expect={"settings": {"task": args.task, "problem_seed": args.problem_seed},
                                "num_draws": args.draws, "seed": args.seed})
            for index in harness.parse_range(args.problems) for name in resolve_methods(args.methods)]


def table(out: Path) -> str:
    from brgm_pyro.study import CalibrationReport

    lines = []
    for task in TASKS:
        folder = out / task
        if not folder.exists():
            continue
        reports = [CalibrationReport.from_json(p) for p in sorted(folder.glob("*/problem_*.json"))]
        if not reports:
            continue
        report = CalibrationReport.merge(reports)
        report.to_json(out / f"{task}.json")
        lines += [f"### {task}", "", report.table(), ""]
        map_seconds = {r["index"]: r["seconds"] for r in report.records.get("map", [])}
        rows = ["| method | problems | wall time / MAP's (paired, mean ± se) |", "|---|---:|---:|"]
        for method, recs in report.records.items():
            ratios = [r["seconds"] / map_seconds[r["index"]] for r in recs if r["index"] in map_seconds]
            if not ratios:
                continue
            mean, se = harness.mean_se(ratios)
            rows.append(f"| {method} | {len(ratios)} | {mean:.2f} ± {se:.2f} |")
        lines += rows + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=TASKS)
    parser.add_argument("--methods", default="map,laplace")
    parser.add_argument("--problems", default="0-19", help="problem indices, e.g. 0-19 or 0,3,5-7")
    parser.add_argument("--problem-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="the methods' and the draws' seed")
    parser.add_argument("--draws", type=int, default=256)
    parser.add_argument("--jobs", type=int, default=1, help="problems run at once, one process and thread each")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--table", action="store_true", help="merge the saved results and print the tables")
    args = parser.parse_args(argv)
    harness.limit_threads(1)
    if args.table:
        print(harness.header("variational calibration, one thread per problem", harness.environment(args.jobs)))
        print(f"# results: {harness.recorded_environments(harness.load_results(args.out.glob('*/*/problem_*.json')))}")
        print(table(args.out))
        return 0
    if args.task is None:
        parser.error("--task is required unless --table")
    return 1 if harness.run_jobs(calibrate_job, jobs(args), workers=args.jobs).failed else 0


if __name__ == "__main__":
    sys.exit(main())
