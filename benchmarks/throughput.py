"""Data-set throughput: images per minute of ``brgm reconstruct`` on the bundled test images, for
MAP and for the recommended posterior method, ``fullrank`` (8-start MAP, the Laplace approximation
at the best mode, then full-rank VI, fitted to ``calibrated_model``), optionally the paper's
mean-field VI (``vi``), all batched (``--batch-size``), in one process with all threads vs N
processes under ``torchrun`` with cores / N threads each.

Each row is one fresh command; the time is the reconstruction loop's wall time from
``summary.json`` (the slowest rank; start-up, generator loading and the prior's statistics
excluded), and the whole command's wall time is shown next to it.

    python benchmarks/throughput.py                          # MAP and fullrank, 16 images, 100 steps
    python benchmarks/throughput.py --images 32 --steps 500 --methods map
    python benchmarks/throughput.py --device cuda --processes 1   # a GPU: one process per GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: import from the repository root, not benchmarks/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import harness  # noqa: E402

KEEP_MEMORY = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "1000000000000"}  # see generator.py


def run_config(method: str, processes: int, threads: int, args: argparse.Namespace, out: Path) -> dict:
    env = {**os.environ, **harness.thread_env(threads)}
    if args.keep_freed_memory:
        env.update(KEEP_MEMORY)
    env.pop("WORLD_SIZE", None)
    cli = ["reconstruct", "--bundled-test-images", "--num-images", str(args.images), "--task", args.task,
           "--method", method, "--steps", str(args.steps), "--samples", str(args.samples),
           "--batch-size", str(args.batch_size), "--threads", str(threads), "--no-progress", "--out", str(out)]
    if args.task == "inpainting":
        cli += ["--mask-id", "3"]
    if args.device:
        cli += ["--device", args.device]
    if processes == 1:
        cmd = [sys.executable, "-m", "brgm_pyro", *cli]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "brgm_pyro", *cli]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    total = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    run = json.loads((out / "summary.json").read_text())["run"]
    return {"loop_s": run["wall_seconds"], "per_min": run["images_per_minute"], "total_s": total,
            "threads": run["threads_per_process"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16, help="bundled test images per run (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=100,
                        help="MAP / VI steps per image (fullrank: the steps of each of its 8 MAP starts, its VI "
                        "has 200; default %(default)s)")
    parser.add_argument("--samples", type=int, default=16, help="posterior samples per image (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per batch (default: %(default)s)")
    parser.add_argument("--task", default="super-resolution", choices=("super-resolution", "inpainting"))
    parser.add_argument("--methods", nargs="+", default=["map", "fullrank"], choices=("map", "fullrank", "vi"))
    parser.add_argument("--processes", type=int, nargs="+", default=None,
                        help="process counts to compare (default: 1 and the number of cores)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of the single process (default: all cores); N processes get cores / N each")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the CLI's default)")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="glibc keeps freed memory in the process (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_)")
    args = parser.parse_args(argv)

    cores = os.cpu_count() or 1
    counts = args.processes or sorted({1, max(2, cores) if cores > 1 else 2})
    single_threads = args.threads or cores
    print(f"# data-set throughput, brgm reconstruct on {args.images} bundled test images, {args.task}, "
          f"{args.steps} steps, batch {args.batch_size}, {args.samples} posterior samples; "
          f"{platform.processor() or platform.machine()}, {cores} cores, device={args.device or 'default'}; "
          f"threads: 1 process x {single_threads}, N processes x max(1, {cores} // N) "
          "(OMP_NUM_THREADS and --threads set per run)"
          f"{'; ' + ' '.join(f'{k}={v}' for k, v in KEEP_MEMORY.items()) if args.keep_freed_memory else ''}")
    print("| method | processes x threads | images / minute | loop s | command s (with start-up) |")
    print("|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            for n in counts:
                threads = single_threads if n == 1 else max(1, cores // n)
                out = Path(tmp) / f"{method}-{n}"
                r = run_config(method, n, threads, args, out)
                label = f"{n} x {'/'.join(str(t) for t in sorted(set(r['threads'])))}"
                print(f"| {method.upper()} | {label} | {r['per_min']:.1f} | {r['loop_s']:.1f} | {r['total_s']:.1f} |",
                      flush=True)


if __name__ == "__main__":
    main()
