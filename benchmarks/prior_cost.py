"""What a generator costs as a prior: MAP step time and NUTS cost, generators side by side in one process.

    OMP_NUM_THREADS=1 python benchmarks/prior_cost.py --generator fashion-mnist-32 \\
        --generator runs/fashion-mnist-32-v2/checkpoint.pt --out benchmarks/results/prior_cost.md

Issue #26 asks for the MAP step and the NUTS cost of a new bundled prior "before / after".  Both
depend on the network (its FLOPs) and, for NUTS, on the posterior's geometry the weights make (a
sharper posterior needs smaller steps and deeper trees).  Per generator and task (x4 SR with
bicubic-antialias; in-painting with standard mask 0), on the bundled test images ``--images``,
the command line's default model (the generator's recommended weights and feature network) with
noise sigma 0.1 on the observation:

* MAP step: milliseconds per Adam step of ``map_estimate`` on one image (5 warm-up steps not timed);
* NUTS: one chain of ``--warmup`` + ``--draws`` transitions from w_avg (``run_mcmc``, its defaults:
  diagonal mass matrix adapted in warm-up, target acceptance 0.8, tree depth <= 8); wall seconds,
  seconds per transition (warm-up included), gradient evaluations (leapfrog steps) per draw of
  the sampling phase and the adapted step size.

A training checkpoint (``checkpoint.pt``) is measured through its EMA generator, with the bundled
generator's recommended weights and feature network (``harness.load_prior``).  The generators take
turns image by image, so a change of machine load hits both alike; still, run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: import from the repository root, not benchmarks/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import harness  # noqa: E402

TASKS = ("super-resolution", "inpainting")
NOISE = 0.1


def problem_model(G, task: str, image_index: int, seed: int = 0):
    """The command line's default model of a bundled test image, noise sigma ``NOISE``."""
    import torch

    from brgm_pyro.app.features import build_features
    from brgm_pyro.bundled import load_test_images
    from brgm_pyro.corruptions import make_corruption
    from brgm_pyro.models.brgm import brgm_model

    op = make_corruption(task, G.img_resolution, **({"kernel": "bicubic-antialias"} if task == "super-resolution"
                                                     else {"mask_id": 0}))
    truth = load_test_images()[0][image_index:image_index + 1]
    clean = op(truth)
    g = torch.Generator().manual_seed(seed + image_index)
    obs = clean + NOISE * torch.randn(clean.shape, generator=g)
    mask = op.observation_mask(tuple(truth.shape[1:]))
    if mask is not None:
        obs = obs * mask
    return brgm_model(G, op, obs, features=build_features("auto", G, "cpu"))


def map_step_ms(model, steps: int) -> float:
    from brgm_pyro.inference import map_estimate

    map_estimate(model, num_steps=5, lr=0.1, progress=False)
    t0 = time.perf_counter()
    map_estimate(model, num_steps=steps, lr=0.1, progress=False)
    return 1000 * (time.perf_counter() - t0) / steps


def nuts_cost(model, warmup: int, draws: int, seed: int) -> dict[str, float]:
    from brgm_pyro.inference import run_mcmc

    result = run_mcmc(model, num_samples=draws, warmup_steps=warmup, seed=seed, progress=False)
    grads = result.num_steps.double()  # (chains, draws) leapfrog steps of the sampling phase
    return {"seconds": result.wall_seconds, "grads_per_draw": float(grads.mean()),
            "step_size": float(result.step_sizes[0]), "divergences": int(result.divergences.sum())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", action="append", required=True,
                    help="a generator name or file, or a training checkpoint; repeat to compare")
    ap.add_argument("--images", type=int, nargs="+", default=[0, 1], help="bundled test images")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    ap.add_argument("--map-steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--draws", type=int, default=50)
    ap.add_argument("--no-nuts", action="store_true", help="MAP step times only")
    ap.add_argument("--out", type=Path, default=None, help="also write the table here (markdown)")
    args = ap.parse_args(argv)
    if args.draws < 4:
        ap.error("--draws must be >= 4 (Pyro's split R-hat of a chain needs 4 draws)")
    title = (f"benchmarks/prior_cost.py, tasks {', '.join(args.tasks)}, bundled test images "
             f"{', '.join(map(str, args.images))}, noise sigma {NOISE}; NUTS: 1 chain x "
             f"({args.warmup} warm-up + {args.draws}) transitions from w_avg")
    lines = [harness.header(title), "",
             "| generator | task | MAP step (ms) | NUTS wall s | s per transition | gradient evaluations per draw | "
             "step size | divergences |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    generators = {name: harness.load_prior(name) for name in args.generator}
    for task in args.tasks:
        found: dict[str, list[dict[str, float]]] = {name: [] for name in generators}
        for i in args.images:
            for name, G in generators.items():  # taking turns: load changes hit every generator alike
                model = problem_model(G, task, i)
                row = {"map_ms": map_step_ms(model, args.map_steps)}
                if not args.no_nuts:
                    row.update(nuts_cost(model, args.warmup, args.draws, seed=i))
                found[name].append(row)
        for name, rows in found.items():
            def mean(key: str) -> float:
                return statistics.fmean(r[key] for r in rows)

            if args.no_nuts:
                nuts = "| - | - | - | - | - |"
            else:
                per_transition = mean("seconds") / (args.warmup + args.draws)
                nuts = (f"| {mean('seconds'):.0f} | {per_transition:.2f} | {mean('grads_per_draw'):.1f} | "
                        f"{mean('step_size'):.3f} | {sum(int(r['divergences']) for r in rows)} |")
            line = f"| {name} | {task} | {mean('map_ms'):.1f} " + nuts
            lines.append(line)
            print(line, flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
