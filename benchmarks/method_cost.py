"""Wall time of each posterior method relative to MAP's, per image, on the calibration problems.

The calibration benchmarks record each fit's time too, but they run several processes side by
side; this script times the methods one after the other in one process with one thread, on a
quiet machine, which is what the "at most 10x MAP" budget of issue 10 is about.  For every problem
it runs MAP (500 Adam steps, the authors' settings) and each method with the same seed, and prints
per method the mean seconds and the paired ratio to MAP's time (mean ± standard error).

    python benchmarks/method_cost.py --methods multistart-fullrank,vi-fullrank,vi-meanfield --problems 0-4
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: import from the repository root, not benchmarks/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import harness  # noqa: E402

TASKS = ("super-resolution", "inpainting")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="multistart-fullrank,vi-fullrank,vi-meanfield")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--problems", default="0-4")
    parser.add_argument("--problem-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    harness.limit_threads(1)
    from brgm_pyro.study import resolve_methods, simulate_problem

    methods = resolve_methods(["map", *[m for m in args.methods.split(",") if m and m != "map"]])
    print(harness.header(f"method cost, one process, problems {args.problems} (seed {args.problem_seed})"))
    print("| task | method | problems | seconds per image | time / MAP's (paired) |")
    print("|---|---|---:|---:|---:|")
    for task in harness.parse_tasks(args.tasks):
        model = harness.problem_model(task)
        seconds: dict[str, list[float]] = {name: [] for name in methods}
        for index in harness.parse_range(args.problems):
            problem = simulate_problem(model, index, args.problem_seed)
            for name, method in methods.items():
                t0 = time.perf_counter()
                method(problem.model, args.seed)
                seconds[name].append(time.perf_counter() - t0)
        for name, values in seconds.items():
            s, s_se = harness.mean_se(values)
            r, r_se = harness.mean_se([v / m for v, m in zip(values, seconds["map"])])
            print(f"| {task} | {name} | {len(values)} | {s:.1f} ± {s_se:.1f} | {r:.2f} ± {r_se:.2f} |", flush=True)


if __name__ == "__main__":
    main()
