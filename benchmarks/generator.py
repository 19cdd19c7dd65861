"""Synthesis forward+backward time per step and peak memory of the StyleGAN2 generator.

Random weights with real channel schedules (config-f: channel_base 32768, 512 max channels,
w_dim 512).  Each configuration runs in a fresh subprocess so that the peak resident memory
(CPU) or peak allocated memory (CUDA) belongs to it alone.

    python benchmarks/generator.py                 # CPU, resolutions 32 256 1024, batch 1 and 8
    python benchmarks/generator.py --device cuda --compile --channels-last
    python benchmarks/generator.py --resolutions 32 256 --batches 1 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time


def run_one(resolution: int, batch: int, fused: bool, device: str, repeats: int, compile_: bool,
            channels_last: bool) -> dict:
    import torch

    from brgm_pyro.generators import StyleGAN2Config, StyleGAN2Generator

    torch.manual_seed(0)
    G = StyleGAN2Generator(StyleGAN2Config(img_resolution=resolution, img_channels=3)).to(device).eval()
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
    times.sort()
    return {"resolution": resolution, "batch": batch, "fused": fused, "median_s": times[len(times) // 2],
            "min_s": times[0], "peak_mb": peak_mb}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 256, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="wrap the synthesis network in torch.compile")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration
    args = parser.parse_args(argv)

    if args.one:
        res, batch, fused = json.loads(args.one)
        print(json.dumps(run_one(res, batch, fused, args.device, args.repeats, args.compile, args.channels_last)))
        return

    import torch

    print(f"# StyleGAN2 synthesis forward+backward, device={args.device}, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
          f"{', torch.compile' if args.compile else ''}{', channels_last' if args.channels_last else ''}")
    print("| resolution | batch | modulation | median s/step | min s/step | peak memory (MiB) |")
    print("|---:|---:|---|---:|---:|---:|")
    for res in args.resolutions:
        for batch in args.batches:
            for fused in (True, False):
                cmd = [sys.executable, __file__, "--one", json.dumps([res, batch, fused]), "--device", args.device,
                       "--repeats", str(args.repeats)]
                cmd += ["--compile"] if args.compile else []
                cmd += ["--channels-last"] if args.channels_last else []
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    print(f"| {res} | {batch} | {'fused' if fused else 'non-fused'} | failed: {out.stderr.strip().splitlines()[-1]} | | |")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"| {res} | {batch} | {'fused' if fused else 'non-fused'} | {r['median_s']:.4f} | "
                      f"{r['min_s']:.4f} | {r['peak_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
