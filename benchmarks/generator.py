"""Synthesis forward+backward time per step and peak memory of the StyleGAN2 generator.

Random weights with real channel schedules (config-f: channel_base 32768, 512 max channels,
w_dim 512; ``--bundled`` adds the bundled 32x32 model's architecture).  Each configuration runs
in a fresh subprocess so that the peak resident memory (CPU) or peak allocated memory (CUDA)
belongs to it alone; every subprocess runs with the same thread count (``--threads``: ``harness.thread_env`` in its
environment, ``harness.limit_threads`` in it; the harness's header prints it).  Two
warm-up steps, then the median and minimum over ``--repeats`` timed steps; "x batch 1" is the
median step time over that of batch 1 with the same modulation (at most B: batching pays).

    python benchmarks/generator.py                 # CPU, resolutions 32 256 1024, batch 1 and 8
    python benchmarks/generator.py --threads 1 --resolutions 32 --batches 1 8 32 --bundled
    python benchmarks/generator.py --device cuda --compile --channels-last
    python benchmarks/generator.py --resolutions 32 256 --batches 1 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: import from the repository root, not benchmarks/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import harness  # noqa: E402


# glibc: serve every allocation from the heap and never give freed memory back to the kernel, so
# that a step's large tensors reuse pages instead of faulting fresh zeroed ones in every step.
KEEP_MEMORY = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "1000000000000"}


def run_one(resolution: int, batch: int, fused: bool, device: str, repeats: int, compile_: bool,
            channels_last: bool, threads: int, bundled: bool = False) -> dict:
    import statistics

    import torch

    from brgm_pyro.generators import StyleGAN2Config, StyleGAN2Generator

    harness.limit_threads(threads)
    torch.manual_seed(0)
    if bundled:
        from brgm_pyro.training.trainer import TrainingConfig

        config = TrainingConfig().generator_config()
    else:
        config = StyleGAN2Config(img_resolution=resolution, img_channels=3)
    G = StyleGAN2Generator(config).to(device).eval()
    G.requires_grad_(False)
    if channels_last:
        G = G.to(memory_format=torch.channels_last)
    synth = G.synthesis
    if compile_:
        synth = torch.compile(G.synthesis)
    ws = G.mapping(torch.randn(batch, G.z_dim, device=device)).detach().requires_grad_(True)

    def step() -> None:
        img = synth(ws, fused_modconv=fused)
        img.square().mean().backward()
        ws.grad = None

    step()  # warm-up (and compilation)
    step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"resolution": resolution, "batch": batch, "fused": fused, "median_s": statistics.median(times),
            "min_s": min(times), "peak_mb": peak_mb, "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 256, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads of every run (default: all cores, %(default)s)")
    parser.add_argument("--bundled", action="store_true", help="also time the bundled 32x32 model's architecture")
    parser.add_argument("--compile", action="store_true", help="wrap the synthesis network in torch.compile")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="glibc keeps freed memory in the process (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_): "
                             "no page faults for every large tensor of every step")
    parser.add_argument("--modulations", nargs="+", choices=("fused", "non-fused"), default=["fused", "non-fused"],
                        help="modulation paths to time (default: both; a CPU batch uses non-fused)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration
    args = parser.parse_args(argv)

    if args.one:
        res, batch, fused, bundled = json.loads(args.one)
        print(json.dumps(run_one(res, batch, fused, args.device, args.repeats, args.compile, args.channels_last,
                                 args.threads, bundled)))
        return

    setting = harness.environment()  # this process's; each configuration's subprocess runs with --threads:
    setting.update(torch_threads=args.threads, processes=1, **harness.thread_env(args.threads))
    title = (f"StyleGAN2 synthesis forward+backward, device={args.device}, {args.repeats} timed steps"
             f"{', torch.compile' if args.compile else ''}{', channels_last' if args.channels_last else ''}")
    if args.keep_freed_memory:
        title += ", " + " ".join(f"{k}={v}" for k, v in KEEP_MEMORY.items())
    print(harness.header(title, setting))
    print("| generator | batch | modulation | median s/step | min s/step | median s/image | x batch 1 "
          "| peak memory (MiB) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    env = {**os.environ, **harness.thread_env(args.threads)}
    if args.keep_freed_memory:
        env.update(KEEP_MEMORY)
    models = [(32, True)] if args.bundled else []
    models += [(res, False) for res in args.resolutions]
    for res, bundled in models:
        name = "bundled 32x32 (64 ch)" if bundled else f"config-f {res}x{res}"
        base: dict[bool, float] = {}
        for batch in args.batches:
            for fused in [m == "fused" for m in args.modulations]:
                cmd = [sys.executable, __file__, "--one", json.dumps([res, batch, fused, bundled]), "--device",
                       args.device, "--repeats", str(args.repeats), "--threads", str(args.threads)]
                cmd += ["--compile"] if args.compile else []
                cmd += ["--channels-last"] if args.channels_last else []
                out = subprocess.run(cmd, capture_output=True, text=True, env=env)
                mod = "fused" if fused else "non-fused"
                if out.returncode != 0:
                    print(f"| {name} | {batch} | {mod} | failed: {out.stderr.strip().splitlines()[-1]} | | | | |")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                if batch == 1:
                    base[fused] = r["median_s"]
                ratio = f"{r['median_s'] / base[fused]:.1f}" if fused in base else "–"
                print(f"| {name} | {batch} | {mod} | {r['median_s']:.4f} | {r['min_s']:.4f} | "
                      f"{r['median_s'] / batch:.4f} | {ratio} | {r['peak_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
