"""What a MAP / VI step costs above its floor: the generator and feature network forward + backward.

On the demo's first problem (x4 super-resolution of bundled test image 0, the ``brgm`` defaults:
domain features, the bundled generator's recommended weights), one thread by default:

- ``limit``: w -> G(w) -> f -> pixel and feature residuals -> backward, in plain torch (the
  same tensors and modules as the model, no Pyro, no optimiser): what any MAP step must do;
- ``MAP step``: ``map_estimate``'s step (Pyro trace of model and AutoDelta guide, Trace_ELBO,
  per-term recording, Adam), timed per step inside one run;
- ``VI step``: ``fit_vi``'s step (the paper's mean-field guide, its default particles);
- ``limit, N latents at once``: the floor of a VI step (N = ``fit_vi``'s particles).

Runs are interleaved (``--repeats`` rounds of limit, MAP, VI); each run's mean time per step, median over rounds.
``--compile`` adds rows with ``torch.compile`` of the synthesis network; ``--channels-last``
with the generator and feature network in channels-last memory format.

    python benchmarks/step_overhead.py                          # one thread, wall clock
    python benchmarks/step_overhead.py --clock cpu              # on a shared machine
    python benchmarks/step_overhead.py --compile --channels-last
    python benchmarks/step_overhead.py --device cuda --threads 1
"""

from __future__ import annotations

import argparse
import os
import tempfile
import platform
import statistics
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter


def build(device: str, threads: int):
    import brgm_pyro.app  # noqa: F401
    from brgm_pyro.app.cli_args import load_generator_and_features, model_from_settings
    from brgm_pyro.app.parser import build_parser
    from brgm_pyro.app.settings import resolve_settings
    from brgm_pyro.bundled import load_test_images
    from brgm_pyro.corruptions import make_corruption

    argv = ["demo", "--device", device, "--threads", str(threads), "--out", tempfile.mkdtemp(prefix="step-overhead-")]
    settings = resolve_settings(build_parser().parse_args(argv), argv)
    generator, features = load_generator_and_features(settings)
    truth = load_test_images()[0][:1]
    op = make_corruption("super-resolution", generator.img_resolution, factor=4, kernel="bicubic-antialias")
    return model_from_settings(settings, generator, op, op(truth).to(generator.device), features)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def limit_times(model, steps: int, particles: int, device: str) -> list[float]:
    """Mean time per step of the floor over ``steps`` steps (one clock reading at each end: a CPU-clock
    reading costs about a millisecond on some virtual machines): forward through G, f and phi,
    the likelihoods' residuals, backward."""
    from brgm_pyro.models.brgm import corrupt, generate
    from brgm_pyro.models.likelihoods import PerceptualLikelihood

    w = model.prior.init_loc().expand(particles, *model.prior.init_loc().shape).clone().requires_grad_(True)
    pixel = model.likelihoods[0]
    perceptual = [lik for lik in model.likelihoods if isinstance(lik, PerceptualLikelihood)]
    targets = [lik.target(model.observation) for lik in perceptual]
    t = clock()
    for _ in range(steps):
        out = corrupt(model.corruption, generate(model.generator, model.prior.ws_from_latent(w)))
        loss = (out - model.observation).square().sum() / (2 * pixel.sigma ** 2)
        for lik, target in zip(perceptual, targets):
            loss = loss + (lik.features(out) - target).square().sum() / (2 * lik.sigma ** 2)
        loss.backward()
        w.grad = None
        float(loss.detach())  # as every MAP step reads its loss
    _sync(device)
    return [(clock() - t) / steps]


def run_times(fn, steps: int) -> list[float]:
    """Mean time per step of a run of ``steps`` + 1 steps, from the end of its first step to its end."""
    stamps: dict[int, float] = {}

    def stamp(i: int, loss: float, terms: dict) -> None:
        if i in (0, steps):
            stamps[i] = clock()

    fn(steps + 1, stamp)
    return [(stamps[steps] - stamps[0]) / steps]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=100, help="steps per run")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    p.add_argument("--clock", choices=tuple(CLOCK), default="wall",
                   help="wall time, or this process's CPU time (one thread on a shared machine: less disturbed by "
                        "other processes than wall time)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the synthesis network")
    p.add_argument("--channels-last", action="store_true", help="also time channels-last generator and features")
    args = p.parse_args(argv)
    global clock
    clock = CLOCK[args.clock]
    import torch

    from brgm_pyro.inference import fit_vi, map_estimate

    model = build(args.device, args.threads)
    variants = {"eager": model}
    if args.channels_last:
        import copy

        cl = copy.copy(model)
        cl.generator = copy.deepcopy(model.generator).to(memory_format=torch.channels_last)
        variants["channels-last"] = cl
    if args.compile:
        import copy

        compiled = copy.copy(model)
        compiled.generator = copy.deepcopy(model.generator)
        compiled.generator.synthesis = torch.compile(compiled.generator.synthesis, dynamic=False)
        variants["compiled synthesis"] = compiled

    import inspect

    particles = inspect.signature(fit_vi).parameters["num_particles"].default
    rows: dict[tuple[str, str], list[float]] = {}
    compile_seconds = None
    for name, m in variants.items():  # warm up (and compile) every variant before timing
        t = time.perf_counter()
        limit_times(m, 3, 1, args.device)
        map_estimate(m, num_steps=3, progress=False)
        fit_vi(m, num_steps=3, progress=False)
        if name == "compiled synthesis":
            compile_seconds = time.perf_counter() - t
    for _ in range(args.repeats):
        for name, m in variants.items():
            rows.setdefault((name, "limit (G + f + phi forward + backward)"), []).extend(
                limit_times(m, args.steps, 1, args.device))
            rows.setdefault((name, "MAP step"), []).extend(run_times(
                lambda n, cb: map_estimate(m, num_steps=n, progress=False, callback=cb), args.steps))
            rows.setdefault((name, f"VI step (mean-field, {particles} particles)"), []).extend(run_times(
                lambda n, cb: fit_vi(m, num_steps=n, progress=False, callback=cb), args.steps))
            rows.setdefault((name, f"limit, {particles} latents at once (VI's floor)"), []).extend(
                limit_times(m, max(10, args.steps // 4), particles, args.device))
    load = os.getloadavg()
    print(f"# step overhead on the bundled model (x4 SR, demo defaults); device {args.device}; "
          f"torch.set_num_threads({torch.get_num_threads()}), OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; "
          f"{args.repeats} interleaved rounds of {args.steps} steps, {args.clock} ms per step (median over "
          f"rounds of each run's mean); torch {torch.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} cpus; load average {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}"
          + (f"; compile time {compile_seconds:.0f} s" if compile_seconds is not None else ""))
    print()
    print("| variant | what | ms/step | / eager limit |")
    print("|---|---|---:|---:|")
    limit_name = "limit (G + f + phi forward + backward)"
    base = statistics.median(rows[("eager", limit_name)])
    for (name, what), times in rows.items():
        med = 1000 * statistics.median(times)
        print(f"| {name} | {what} | {med:.2f} | {med / (1000 * base):.2f} |")
    print()
    for name in variants:
        ratio = statistics.median(rows[(name, "MAP step")]) / statistics.median(rows[(name, limit_name)])
        vi = (statistics.median(rows[(name, f"VI step (mean-field, {particles} particles)")])
              / statistics.median(rows[(name, f"limit, {particles} latents at once (VI's floor)")]))
        print(f"{name}: MAP step / limit = {ratio:.2f}; VI step / its floor = {vi:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
