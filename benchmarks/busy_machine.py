"""MAP on the bundled model, quiet and next to one busy process: does a competing job cost only its share?

Each row runs MAP (x4 super-resolution of bundled test image 0, the demo's first problem, the
``brgm`` defaults: domain features, the generator's recommended weights) in a fresh process, so
that the OpenMP wait policy is read as the ``brgm`` command reads it, once quiet and once while
one CPU-bound process (a Python loop started here, bounded in time, killed at the end) runs
beside it.  It prints the median time per step (after ``--warmup`` steps) and the ratio.

Rows: ``default`` (what ``brgm`` does now: ``brgm_pyro.threads``, no thread flags or variables);
``old-default`` (torch imported before the application, torch's own thread count, OpenMP's own active wait: the
behaviour before the thread policy); ``all-cores-passive`` (``--threads`` = the cores, with the
passive wait the application sets); ``one-thread``.

    OMP_NUM_THREADS= python benchmarks/busy_machine.py                 # all rows, 100 steps each
    python benchmarks/busy_machine.py --rows default,old-default --steps 200
    python benchmarks/busy_machine.py --device cuda

OMP_NUM_THREADS / MKL_NUM_THREADS / OMP_WAIT_POLICY of the calling shell are removed for the
children (``harness.env_without_thread_settings``; each row sets its own through the CLI's
``--threads`` or, for ``old-default``, ``harness.apply_torch_default_threads``); the header prints
the rows' settings and the machine's load average before the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: import from the repository root, not benchmarks/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import harness  # noqa: E402 - imports no torch: the rows decide when torch is loaded

ROWS = ("default", "old-default", "all-cores-passive", "one-thread")


def child(row: str, device: str, steps: int, warmup: int) -> dict:
    """One MAP run in this (fresh) process, configured as ``row``; per-step wall times."""
    cores = os.cpu_count() or 1
    if row == "old-default":
        import torch  # noqa: F401 - before the application: libgomp keeps its default (active) wait policy
    import brgm_pyro.app  # noqa: F401 - sets OMP_WAIT_POLICY=PASSIVE when torch is not loaded yet
    import torch

    from brgm_pyro.app.cli_args import load_generator_and_features, model_from_settings
    from brgm_pyro.app.parser import build_parser
    from brgm_pyro.app.settings import resolve_settings
    from brgm_pyro.bundled import load_test_images
    from brgm_pyro.corruptions import make_corruption
    from brgm_pyro.inference import map_estimate
    from brgm_pyro.threads import apply_thread_policy, passive_wait_in_effect

    argv = ["demo", "--device", device]
    if row == "all-cores-passive":
        argv += ["--threads", str(cores)]
    elif row == "one-thread":
        argv += ["--threads", "1"]
    argv += ["--out", tempfile.mkdtemp(prefix="busy-machine-")]
    settings = resolve_settings(build_parser().parse_args(argv), argv)
    generator, features = load_generator_and_features(settings)
    if row == "old-default":  # the old default: torch's own thread count, undoing the policy applied above
        reason = f"torch default ({harness.apply_torch_default_threads()} threads), active wait"
    else:
        reason = apply_thread_policy(generator, settings.threads).reason
    truth = load_test_images()[0][:1]
    op = make_corruption("super-resolution", generator.img_resolution, factor=4, kernel="bicubic-antialias")
    model = model_from_settings(settings, generator, op, op(truth).to(generator.device), features)
    stamps: list[float] = []
    map_estimate(model, num_steps=steps + warmup, progress=False,
                 callback=lambda i, loss, terms: stamps.append(time.perf_counter()))
    times = [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1:])]
    return {"row": row, "threads": torch.get_num_threads(), "reason": reason,
            "wait_policy": os.environ.get("OMP_WAIT_POLICY", "(libgomp default)"),
            "passive": passive_wait_in_effect() and row != "old-default",
            "median_ms": 1000 * statistics.median(times), "mean_ms": 1000 * statistics.fmean(times),
            "device": str(generator.device)}


def run_row(row: str, device: str, steps: int, warmup: int, busy: bool) -> dict:
    env = harness.env_without_thread_settings()
    hog = None
    if busy:  # one CPU-bound process, bounded in time in case this script dies
        hog = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time() + 900\nx = 0\n"
                                "while time.time() < t:\n    x += 1\n"], env=env)
        time.sleep(0.5)
    try:
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", row, "--device", device,
                              "--steps", str(steps), "--warmup", str(warmup)],
                             env=env, capture_output=True, text=True, check=True).stdout
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated: {', '.join(ROWS)}")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=100, help="timed MAP steps per run")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.device, args.steps, args.warmup)))
        return 0
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        p.error(f"unknown row(s) {unknown}; choose from {', '.join(ROWS)}")
    import torch

    load = os.getloadavg()
    results = [(run_row(r, args.device, args.steps, args.warmup, False),
                run_row(r, args.device, args.steps, args.warmup, True)) for r in rows]
    lines = [f"# MAP on the bundled model (x4 SR, demo defaults), quiet vs next to one busy process; {args.steps} "
             f"steps after {args.warmup} warm-up, median per step; device {args.device}; torch {torch.__version__}, "
             f"{platform.machine()}, {os.cpu_count()} cpus; load average before the run "
             f"{load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}; {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC",
             "# rows' thread settings: OMP_NUM_THREADS / MKL_NUM_THREADS / OMP_WAIT_POLICY removed for each run; "
             "threads and wait policy as listed", "",
             "| row | threads | OMP wait | why | quiet ms/step | busy ms/step | busy / quiet |",
             "|---|---:|---|---|---:|---:|---:|"]
    for quiet, busy in results:
        wait = "passive" if quiet["passive"] else "active"
        lines.append(f"| {quiet['row']} | {quiet['threads']} | {wait} | {quiet['reason']} | {quiet['median_ms']:.1f} "
                     f"| {busy['median_ms']:.1f} | {busy['median_ms'] / quiet['median_ms']:.2f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
