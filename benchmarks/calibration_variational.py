"""Calibration of the variational methods (and MAP) on the bundled generator, one thread.

The problems of issue 10: w ~ the bundled generator's Gaussian prior (per-dimension std, kappa 0),
x = G(w), y = f(x) + N(0, 0.1^2), pixel likelihood only (sigma_pixel 0.1); x4 super-resolution
(bicubic-antialias) and in-painting with standard mask 0 (right half hidden).  Each (task, method,
problem) is measured by ``brgm_pyro.study.calibrate`` and saved as its own JSON
(OUT/TASK/METHOD/problem_007.json), so runs resume and merge; ``--table`` merges them, prints the
calibration table per task and each method's wall time per problem relative to MAP's on the same
problems (paired ratios, mean +- se), and writes OUT/TASK.json.

    OMP_NUM_THREADS=1 python benchmarks/calibration_variational.py --task inpainting --methods map,laplace \
        --problems 0-19
    python benchmarks/calibration_variational.py --table
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

TASKS = ("super-resolution", "inpainting")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "calibration-variational"


def corruption(task: str):
    from brgm_pyro.corruptions import Inpainting, SuperResolution, standard_mask

    if task == "super-resolution":
        return SuperResolution(4, kernel="bicubic-antialias")
    return Inpainting(standard_mask(0, 32))


def parse_range(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def run(args: argparse.Namespace) -> None:
    from brgm_pyro.generators import load_generator
    from brgm_pyro.study import calibrate, problem_model, resolve_methods, simulate_problem

    torch.set_num_threads(1)
    methods = resolve_methods(args.methods)
    generator = load_generator("fashion-mnist-32", device="cpu")
    model = problem_model(generator, corruption(args.task), sigma_pixel=0.1, prior_std="per-dimension")
    settings = {"task": args.task, "problem_seed": args.problem_seed, "threads": torch.get_num_threads(),
                "torch": torch.__version__, "machine": platform.machine(), "generator": "fashion-mnist-32"}
    for index in parse_range(args.problems):
        problem = simulate_problem(model, index, args.problem_seed)
        for name in methods:
            path = args.out / args.task / name / f"problem_{index:03d}.json"
            if path.exists():
                continue
            t0 = time.perf_counter()
            report = calibrate([problem], {name: methods[name]}, num_draws=args.draws, seed=args.seed,
                               settings=settings)
            path.parent.mkdir(parents=True, exist_ok=True)
            report.to_json(path)
            print(f"{args.task} problem {index} {name}: {time.perf_counter() - t0:.1f} s", flush=True)


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
            mean = sum(ratios) / len(ratios)
            n = len(ratios)
            se = (sum((x - mean) ** 2 for x in ratios) / (n - 1) / n) ** 0.5 if n > 1 else math.nan
            rows.append(f"| {method} | {len(ratios)} | {mean:.2f} ± {se:.2f} |")
        lines += rows + [""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=TASKS)
    parser.add_argument("--methods", default="map,laplace")
    parser.add_argument("--problems", default="0-19", help="problem indices, e.g. 0-19 or 0,3,5-7")
    parser.add_argument("--problem-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="the methods' and the draws' seed")
    parser.add_argument("--draws", type=int, default=256)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--table", action="store_true", help="merge the saved results and print the tables")
    args = parser.parse_args()
    if args.table:
        print(f"# threads={os.environ.get('OMP_NUM_THREADS')}, torch {torch.__version__}, {platform.machine()}")
        print(table(args.out))
        return
    if args.task is None:
        parser.error("--task is required unless --table")
    run(args)


if __name__ == "__main__":
    main()
