"""Calibration benchmark: do the posterior methods' intervals hold the truth at their nominal rate?

Problems are drawn from the model itself on the bundled generator (w ~ its Gaussian prior with
per-dimension std, kappa 0; x = G(w); y = f(x) + N(0, sigma_pixel^2)), for x4 super-resolution
(bicubic-antialias) and in-painting with standard mask 0; every method in ``--methods`` (names
from ``brgm_pyro.study.METHODS``) is run on every problem, each problem in its
own job with one thread (``OMP_NUM_THREADS=1``; ``--jobs`` processes at once).

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
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported, here and in the workers
os.environ.setdefault("MKL_NUM_THREADS", "1")

TASKS = {
    "super-resolution": dict(task="super-resolution", factor=4, kernel="bicubic-antialias"),
    "inpainting": dict(task="inpainting", mask_id=0),
    # the other standard masks (not in the default --tasks): does a fitted interval scale transfer?
    **{f"inpainting-mask{i}": dict(task="inpainting", mask_id=i) for i in range(1, 7)},
}
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "calibration"

_CACHE: dict = {}


def _setup() -> None:
    import torch

    torch.set_num_threads(1)


def _problem_model(generator_name: str, task: str, sigma_pixel: float, prior_std: str):
    """The bundled generator and the task's model, built once per process."""
    key = (generator_name, task, sigma_pixel, prior_std)
    if key not in _CACHE:
        from brgm_pyro.generators import load_generator
        from brgm_pyro.study import problem_model
        from brgm_pyro.corruptions import make_corruption

        if generator_name not in _CACHE:
            _CACHE[generator_name] = load_generator(generator_name, device="cpu")
        generator = _CACHE[generator_name]
        corruption = make_corruption(resolution=generator.img_resolution, **TASKS[task])
        _CACHE[key] = problem_model(generator, corruption, sigma_pixel=sigma_pixel, prior_std=prior_std)
    return _CACHE[key]


def run_job(job: dict) -> tuple[str, float]:
    """Simulate problem ``job["index"]`` of a task, run one method on it, save its report."""
    _setup()
    from brgm_pyro.study import calibrate, simulate_problem

    t0 = time.perf_counter()
    if not job["force"] and Path(job["path"]).is_file():  # finished meanwhile by another run
        return job["path"], 0.0
    model = _problem_model(job["generator"], job["task"], job["sigma_pixel"], job["prior_std"])
    problem = simulate_problem(model, job["index"], job["problem_seed"])
    from brgm_pyro.study import methods_from

    method = methods_from(job["imports"])[job["method"]]
    report = calibrate([problem], {job["method"]: method}, num_draws=job["num_draws"], seed=job["seed"],
                       options={"num_steps": job["steps"]}, settings=job["settings"])
    report.to_json(job["path"])
    return job["path"], time.perf_counter() - t0


def _settings(args: argparse.Namespace, task: str) -> dict:
    """What must agree between result files before they are merged into one table."""
    return {"task": task, "corruption": TASKS[task], "generator": args.generator, "sigma_pixel": args.sigma_pixel,
            "prior_std": args.prior_std, "kappa": 0.0, "problem_seed": args.problem_seed, "steps": args.steps}


def _check_existing(path: Path, settings: dict, num_draws: int, seed: int) -> bool:
    """True if ``path`` holds a finished result of the same settings; raise if it holds another's."""
    if not path.is_file():
        return False
    data = json.loads(path.read_text())
    theirs = {k: data["settings"].get(k) for k in settings}
    if theirs != json.loads(json.dumps(settings)) or data["num_draws"] != num_draws or data["seed"] != seed:
        raise SystemExit(f"{path} was made with other settings ({theirs}, num_draws {data['num_draws']}, seed "
                         f"{data['seed']}); use another --out, the same settings, or --force")
    return True


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


def header(args: argparse.Namespace) -> str:
    import torch

    return (f"# calibration benchmark: one thread per problem (OMP_NUM_THREADS=1, "
            f"torch.set_num_threads(1)){'' if args.table_only else f', {args.jobs} process(es) at once'}; "
            f"torch {torch.__version__}, "
            f"{platform.machine()}, {os.cpu_count()} cpus; {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", default="map,vi-meanfield", help="comma-separated names from METHODS")
    p.add_argument("--tasks", default="super-resolution,inpainting", help=f"comma-separated: {', '.join(TASKS)}")
    p.add_argument("--num-problems", type=int, default=20)
    p.add_argument("--start", type=int, default=0, help="index of the first problem (to add problems later)")
    p.add_argument("--steps", type=int, default=500, help="optimisation steps (num_steps of the methods)")
    p.add_argument("--num-draws", type=int, default=256)
    p.add_argument("--problem-seed", type=int, default=0, help="seed of the simulated problems")
    p.add_argument("--seed", type=int, default=0, help="seed of the methods and their draws")
    p.add_argument("--sigma-pixel", type=float, default=0.1)
    p.add_argument("--prior-std", default="per-dimension", choices=("per-dimension", "scalar"))
    p.add_argument("--generator", default="fashion-mnist-32")
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
    _setup()
    from brgm_pyro.study import methods_from, resolve_methods

    methods = list(resolve_methods(args.methods, methods_from(args.imports)))
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        p.error(f"unknown task(s) {unknown}; choose from {', '.join(TASKS)}")
    out = Path(args.out)

    jobs = []
    if not args.table_only:
        for index in range(args.start, args.start + args.num_problems):  # problem-major: partial runs stay balanced
            for task in tasks:
                settings = _settings(args, task)
                for method in methods:
                    path = out / task / method / f"problem_{index:03d}.json"
                    if not args.force and _check_existing(path, settings, args.num_draws, args.seed):
                        continue
                    jobs.append(dict(task=task, method=method, index=index, path=str(path), steps=args.steps,
                                     num_draws=args.num_draws, seed=args.seed, problem_seed=args.problem_seed,
                                     sigma_pixel=args.sigma_pixel, prior_std=args.prior_std,
                                     generator=args.generator, imports=args.imports, settings=settings,
                                     force=args.force))
        print(f"{len(jobs)} problem runs to do ({args.jobs} at once)", file=sys.stderr)
        t0 = time.perf_counter()
        if args.jobs <= 1:
            for i, job in enumerate(jobs):
                path, seconds = run_job(job)
                print(f"[{i + 1}/{len(jobs)}] {path} ({seconds:.1f} s)", file=sys.stderr)
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
                futures = [pool.submit(run_job, job) for job in jobs]
                for i, future in enumerate(as_completed(futures)):
                    path, seconds = future.result()
                    print(f"[{i + 1}/{len(jobs)}] {path} ({seconds:.1f} s)", file=sys.stderr)
        print(f"done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    lines = [header(args), ""]
    for task in tasks:
        report = merge_task(out / task)
        if report is None:
            continue
        report.settings = {k: v for k, v in report.settings.items() if k != "steps"}
        report.to_json(out / task / "calibration.json")
        report.figure(out / task / "calibration.png")
        steps = sorted({str(r["options"].get("num_steps")) for recs in report.records.values() for r in recs})
        described = ", ".join(f"{k} {v}" for k, v in TASKS[task].items() if k != "task")
        st = report.settings
        lines += [f"## {task} ({described}): generator {st['generator']}, sigma_pixel {st['sigma_pixel']}, "
                  f"prior {st['prior_std']} std, kappa 0; problem seed {st['problem_seed']}, method seed "
                  f"{report.seed}; {report.num_draws} draws; steps {', '.join(steps)}", "", report.table(), ""]
    text = "\n".join(lines)
    (out / "calibration.md").parent.mkdir(parents=True, exist_ok=True)
    (out / "calibration.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
