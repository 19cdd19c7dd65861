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
import math
import os
import platform
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

from calibration_variational import TASKS, corruption, parse_range  # noqa: E402


def mean_se(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else math.nan
    return mean, se


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="multistart-fullrank,vi-fullrank,vi-meanfield")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--problems", default="0-4")
    parser.add_argument("--problem-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from brgm_pyro.generators import load_generator
    from brgm_pyro.study import problem_model, resolve_methods, simulate_problem

    torch.set_num_threads(1)
    methods = resolve_methods(["map", *[m for m in args.methods.split(",") if m and m != "map"]])
    generator = load_generator("fashion-mnist-32", device="cpu")
    print(f"# method cost, one process, torch threads={torch.get_num_threads()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, torch {torch.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} cpus, problems {args.problems} (seed {args.problem_seed}), "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| task | method | problems | seconds per image | time / MAP's (paired) |")
    print("|---|---|---:|---:|---:|")
    for task in args.tasks.split(","):
        model = problem_model(generator, corruption(task), sigma_pixel=0.1, prior_std="per-dimension")
        seconds: dict[str, list[float]] = {name: [] for name in methods}
        for index in parse_range(args.problems):
            problem = simulate_problem(model, index, args.problem_seed)
            for name, method in methods.items():
                t0 = time.perf_counter()
                method(problem.model, args.seed)
                seconds[name].append(time.perf_counter() - t0)
        for name, values in seconds.items():
            s, s_se = mean_se(values)
            r, r_se = mean_se([v / m for v, m in zip(values, seconds["map"])])
            print(f"| {task} | {name} | {len(values)} | {s:.1f} ± {s_se:.1f} | {r:.2f} ± {r_se:.2f} |", flush=True)


if __name__ == "__main__":
    main()
