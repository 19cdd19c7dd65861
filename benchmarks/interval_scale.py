"""Fit the simulation-calibrated interval scale of the recommended posterior, and check it on
problems it was not fitted on (``brgm_pyro.study.interval_scale``).

For every (task, problem seed, problem) job (``benchmarks/harness.py``: one process and one thread
per job, ``--jobs`` at once, the environment stored in every file): simulate the
calibration problem (``benchmarks/calibration.py``'s model: bundled generator, w ~ its Gaussian
prior with per-dimension std, kappa 0, sigma_pixel 0.1), run MAP (500 steps from w_avg, the
calibration benchmark's "map") and the recommended posterior (``fit_multistart_fullrank``,
method seed as in the calibration benchmark), draw 256 latents, and record the coverage of the
unknown-region pixels and of the latents at every level for each scale of a grid
(``study.coverage_by_scale``, the same draws at every scale).  One JSON per problem
(OUT/TASK/seed_S/problem_007.json), so a run resumes where it stopped.

The table fits the scale on the ``--fit-seeds`` problems (``study.choose_scale``: the grid
scale whose pooled calibration curve of the pixels, levels 0.1 ... 0.9, is closest to the
diagonal) and reports, for every other seed, coverage at scale
1 and at the fitted scale with standard errors across problems, RMSE against MAP's, and time.

    python benchmarks/interval_scale.py --tasks inpainting --seeds 2 --num-problems 24 --jobs 2
    python benchmarks/interval_scale.py --table-only --fit-seeds 2
    python benchmarks/interval_scale.py --smoke --out /tmp/scale      # 2 problems, a short fit (CI)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: import from the repository root, not benchmarks/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import harness  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "interval_scale"
LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SCALES = tuple(round(0.8 + 0.05 * i, 2) for i in range(35))  # 0.80 ... 2.50


def scale_job(params: dict) -> dict:
    """One problem: MAP, the recommended posterior, and its coverage on the scale grid."""
    import time

    from brgm_pyro.functional import PIXEL_SCALE_255
    from brgm_pyro.inference.map import map_estimate
    from brgm_pyro.inference.multistart import fit_multistart_fullrank
    from brgm_pyro.study import ScaleProblem, coverage_by_scale, derive_seed, simulate_problem

    # the calibration benchmark's model, built once per process
    model = harness.problem_model(params["task"], generator=params.get("generator", harness.BUNDLED))
    problem = simulate_problem(model, params["index"], params["problem_seed"])
    seed, index = params["seed"], params["index"]
    method_seed, sample_seed = derive_seed(seed, index, 0), derive_seed(seed, index, 1)
    unknown = problem.unknown.cpu()
    truth = problem.image[0].cpu()

    t = time.perf_counter()
    mode = map_estimate(problem.model, num_steps=params["map_steps"], seed=method_seed, progress=False)
    map_seconds = time.perf_counter() - t
    map_rmse = float((mode.image.detach().reshape(truth.shape).cpu()[unknown] - truth[unknown]).double()
                     .mul(PIXEL_SCALE_255).square().mean().sqrt())

    t = time.perf_counter()
    posterior = fit_multistart_fullrank(problem.model, num_steps=params["map_steps"], vi_steps=params["vi_steps"],
                                        seed=method_seed)
    fit_seconds = time.perf_counter() - t
    scale_problem = ScaleProblem.from_posterior(problem, posterior, params["num_draws"], seed=sample_seed)
    curves = coverage_by_scale(scale_problem, params["scales"], LEVELS)
    return {"task": params["task"], "problem_seed": params["problem_seed"], "index": index, "seed": seed,
            "method_seed": method_seed, "sample_seed": sample_seed, "num_draws": params["num_draws"],
            "map_steps": params["map_steps"], "vi_steps": params["vi_steps"], "levels": list(LEVELS),
            "scales": list(params["scales"]), "map_seconds": map_seconds, "fit_seconds": fit_seconds,
            "map_rmse_unknown": map_rmse, **curves, "generator": recorded_generator(params.get("generator"))}


def recorded_generator(name: str | None) -> str | None:
    """The generator as results record it: None for the bundled one (its files predate the option)."""
    return None if name in (None, harness.BUNDLED) else name


def load(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*/seed_*/problem_*.json"))]


def _row(task: str, seed: str, role: str, group: list[dict], j: int, scale: float) -> str:
    levels = group[0]["levels"]
    i90, i50 = levels.index(0.9), levels.index(0.5)
    c90 = harness.mean_se([r["pixels"][j][i90] for r in group])
    c50 = harness.mean_se([r["pixels"][j][i50] for r in group])
    l90 = harness.mean_se([r["latents"][j][i90] for r in group])
    curve = [sum(r["pixels"][j][i] for r in group) / len(group) for i in range(len(levels))]
    error = sum(abs(c - a) for c, a in zip(curve, levels)) / len(levels)
    rmse = harness.mean_se([r["rmse_unknown"][j] for r in group])
    map_rmse = harness.mean_se([r["map_rmse_unknown"] for r in group])
    cost = harness.mean_se([r["fit_seconds"] / r["map_seconds"] for r in group])
    return (f"| {task} | {seed} | {role} | {len(group)} | {scale:.2f} | {c90[0]:.3f} +- {c90[1]:.3f} "
            f"| {c50[0]:.3f} +- {c50[1]:.3f} | {error:.3f} | {l90[0]:.3f} +- {l90[1]:.3f} "
            f"| {rmse[0]:.1f} +- {rmse[1]:.1f} / {map_rmse[0]:.1f} +- {map_rmse[1]:.1f} "
            f"| {cost[0]:.1f} +- {cost[1]:.1f} |")


def table(records: list[dict], fit_seeds: list[int]) -> tuple[str, dict[str, float]]:
    """Fit the scale per task on ``fit_seeds`` (``study.choose_scale``: the grid scale whose
    pooled pixel calibration curve is closest to the diagonal); rows per (task, seed) and for all
    held-out seeds pooled, at scale 1 and at the fitted scale."""
    import numpy as np

    from brgm_pyro.study import choose_scale

    lines = ["| task | problem seed | role | problems | scale | 90% holds (pixels) | 50% holds (pixels) "
             "| mean abs calibration error (pixels, levels 0.1-0.9) | 90% holds (latents) "
             "| RMSE posterior mean / MAP (0-255) | fit s / MAP s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    fitted: dict[str, float] = {}
    for task in sorted({r["task"] for r in records}):
        recs = [r for r in records if r["task"] == task]
        scales, levels = recs[0]["scales"], recs[0]["levels"]
        if any(r["scales"] != scales or r["levels"] != levels for r in recs):
            raise SystemExit(f"{task}: problems were run on different scale grids or levels")
        fit = [r for r in recs if r["problem_seed"] in fit_seeds]
        scale = None
        if fit:
            scale, _ = choose_scale(scales, np.array([r["pixels"] for r in fit]), levels)
            fitted[task] = scale
        shown = [1.0] + ([scale] if scale is not None and scale != 1.0 else [])
        held = [r for r in recs if r["problem_seed"] not in fit_seeds]
        seeds = sorted({r["problem_seed"] for r in recs})
        groups = [(str(seed), "fit" if seed in fit_seeds else "held out",
                   [r for r in recs if r["problem_seed"] == seed]) for seed in seeds]
        held_seeds = sorted({r["problem_seed"] for r in held})
        if len(held_seeds) > 1:
            groups.append((",".join(map(str, held_seeds)), "held out, pooled", held))
        for seed, role, group in groups:
            for s in shown:
                lines.append(_row(task, seed, role, group, scales.index(s), s))
    return "\n".join(lines), fitted


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="inpainting,super-resolution")
    p.add_argument("--seeds", default="2", help="problem seeds to run, comma-separated")
    p.add_argument("--num-problems", type=int, default=24)
    p.add_argument("--start", type=int, default=0, help="first problem index")
    p.add_argument("--fit-seeds", default="2", help="problem seeds the scale is fitted on (the others are held out)")
    p.add_argument("--seed", type=int, default=0, help="seed of the methods and their draws")
    p.add_argument("--num-draws", type=int, default=256)
    p.add_argument("--map-steps", type=int, default=500)
    p.add_argument("--vi-steps", type=int, default=200)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--generator", default=harness.BUNDLED, help="generator name or file (default: %(default)s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--deadline", type=float, default=None, help="start no job after this many seconds")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--smoke", action="store_true",
                   help="at most 2 problems per seed, 5 MAP / 5 VI steps, 8 draws, 3 scales")
    args = p.parse_args(argv)
    harness.limit_threads(1)
    scales = list(SCALES)
    if args.smoke:
        args.num_problems, args.map_steps, args.vi_steps, args.num_draws = min(args.num_problems, 2), 5, 5, 8
        scales = [0.9, 1.0, 1.5]
    fit_seeds = [int(s) for s in args.fit_seeds.split(",") if s]
    failed = 0
    if not args.table_only:
        jobs = [harness.Job(args.out / task / f"seed_{int(seed)}" / f"problem_{i:03d}.json",
                            {"task": task, "problem_seed": int(seed), "index": i, "seed": args.seed,
                             "num_draws": args.num_draws, "map_steps": args.map_steps, "vi_steps": args.vi_steps,
                             "scales": scales, "generator": args.generator},
                            expect={"seed": args.seed, "num_draws": args.num_draws, "map_steps": args.map_steps,
                                    "vi_steps": args.vi_steps, "scales": scales,
                                    "generator": recorded_generator(args.generator)})
                for i in range(args.start, args.start + args.num_problems) for seed in args.seeds.split(",")
                for task in harness.parse_tasks(args.tasks)]  # index-major: with --deadline every seed gets the same
        failed = len(harness.run_jobs(scale_job, jobs, workers=args.jobs, deadline=args.deadline).failed)
    records = load(args.out)
    if not records:
        raise SystemExit(f"no results under {args.out}")
    text, fitted = table(records, fit_seeds)
    header = (harness.header("interval scale, one thread per problem", harness.environment(args.jobs)) + "\n"
              + f"# results: {harness.recorded_environments(records)}\n\n"
              f"Interval scale of the recommended posterior (multistart-fullrank), fitted on problem seeds "
              f"{fit_seeds} (the grid scale whose pooled pixel calibration curve, levels 0.1-0.9, is closest to "
              f"the diagonal); {records[0]['num_draws']} draws; fitted: "
              + ", ".join(f"{k} {v:.2f}" for k, v in fitted.items()))
    print(header + "\n\n" + text)
    if not args.smoke:
        (args.out / "interval_scale.md").write_text(header + "\n\n" + text + "\n")
        (args.out / "interval_scale.json").write_text(json.dumps({"fit_seeds": fit_seeds, "scales": fitted}, indent=1))
    if failed:
        print(f"{failed} job(s) failed (see above); their problems are missing from the table", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
