"""Time per MAP step and per VI step (1 and 6 particles): Pyro runners vs a hand-written torch loop.

Both sides optimise the same objective -- Gaussian prior on W+, colinearity term, pixel and
perceptual likelihoods (the authors' balance) -- with Adam, on one super-resolution observation.
The hand-written loop computes the negative log joint (MAP) or the reparameterised ELBO of the
diagonal Gaussian guide (VI) directly in torch, so the difference is Pyro's overhead.

Generators: the bundled-size StyleGAN2 (32x32, 64 channels) with the domain features, and random
config-f StyleGAN2s at 256 and 1024 with LPIPS-VGG features (random backbone: same cost).

Runs with ``--threads`` torch threads (default: all cores; ``harness.limit_threads``, printed in
the harness's environment header); two warm-up steps before the timed ones. The Pyro VI rows time
``fit_vi`` itself (its steps, timed by its callback: the paper's guide, the sigma_v penalty,
per-image noise). "Pyro x 1 particle" in the last column: the cost of 6 vectorised particles
over one; after the table, the line "VI, 6 particles vs 1 particle at 32x32" states it against
the goal (at most 4x).

    python benchmarks/inference.py                       # CPU, all sizes (slow at 1024)
    python benchmarks/inference.py --threads 1 --sizes 32 --steps 20
    python benchmarks/inference.py --sizes 32 256 --steps 5
    python benchmarks/inference.py --device cuda
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: import from the repository root, not benchmarks/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks import harness  # noqa: E402


def build(size: int, device: str):
    from brgm_pyro.corruptions import SuperResolution
    from brgm_pyro.generators import StyleGAN2Config, StyleGAN2Generator
    from brgm_pyro.models import brgm_model

    torch.manual_seed(0)
    if size == 32:
        from brgm_pyro.bundled import load_domain_features
        from brgm_pyro.training.trainer import TrainingConfig

        G = StyleGAN2Generator(TrainingConfig().generator_config())
        features = load_domain_features(device)
    else:
        from brgm_pyro.perceptual import LPIPSFeatures

        G = StyleGAN2Generator(StyleGAN2Config(img_resolution=size, img_channels=3))
        features = LPIPSFeatures("vgg", resize=256, pretrained=False).to(device)
    G = G.to(device).eval().requires_grad_(False)
    op = SuperResolution(4 if size == 32 else 8).to(device)
    truth = G.synthesis(G.mapping(torch.randn(1, G.z_dim, device=device))).detach()
    model = brgm_model(G, op, op(truth), features=features, num_stats_samples=2000)
    return model


def neg_log_joint(model, ws: torch.Tensor) -> torch.Tensor:
    """-log p(w, I) up to a constant, written without Pyro: ws (P, L, D) -> (P,)."""
    from brgm_pyro.models import PerceptualLikelihood, PixelLikelihood, corrupt, generate

    prior = model.prior
    out = ((ws - prior.mean) / prior.std).square().sum(dim=(-1, -2)) / 2
    if model.colinearity is not None:
        out = out - model.colinearity.log_factor(ws)
    fitted = corrupt(model.corruption, generate(model.generator, ws))
    for lik in model.likelihoods:
        if isinstance(lik, PixelLikelihood):
            out = out + (fitted - model.observation).square().sum(dim=(-1, -2, -3)) / (2 * lik.sigma**2)
        elif isinstance(lik, PerceptualLikelihood):
            feats = lik.features(fitted.reshape(-1, *fitted.shape[-3:]))
            out = out + (feats - lik.target(model.observation)).square().sum(-1) / (2 * lik.sigma**2)
    return out


def time_steps(step, steps: int, device: str) -> float:
    step()  # warm-up
    step()
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def torch_map_step(model):
    w = model.prior.init_loc().clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=0.1)

    def step():
        loss = neg_log_joint(model, w[None]).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def torch_vi_step(model, particles: int):
    loc = model.prior.init_loc().clone().requires_grad_(True)
    rho = torch.full_like(loc, math.log(math.expm1(0.05))).requires_grad_(True)
    opt = torch.optim.Adam([loc, rho], lr=0.1)

    def step():
        scale = F.softplus(rho)
        w = loc + scale * torch.randn(particles, *loc.shape, device=loc.device)
        entropy = scale.log().sum()
        loss = neg_log_joint(model, w).mean() - entropy
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def pyro_map_step(model):
    """One step of the MAP runner's SVI (``AutoDelta`` under ``Trace_ELBO``)."""
    import pyro
    from pyro.infer import SVI, Trace_ELBO
    from pyro.infer.autoguide import AutoDelta
    from pyro.infer.autoguide.initialization import init_to_value

    pyro.clear_param_store()
    guide = AutoDelta(model.model, init_loc_fn=init_to_value(values={"w": model.prior.init_loc()}))
    svi = SVI(model.model, guide, pyro.optim.Adam({"lr": 0.1}), loss=Trace_ELBO())
    return lambda: svi.step()


def fit_vi_step_seconds(model, particles: int, steps: int, device: str) -> float:
    """Mean seconds per step of ``fit_vi`` (the library's VI runner), after two warm-up steps,
    timed between its per-step callbacks."""
    from brgm_pyro.inference import fit_vi

    stamps: list[float] = []

    def callback(i: int, loss: float, terms: dict) -> None:
        if device == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    fit_vi(model, num_steps=steps + 2, num_particles=particles, init_scale=0.05, progress=False, callback=callback)
    return (stamps[-1] - stamps[1]) / steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 256, 1024])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads (default: all cores, %(default)s)")
    args = parser.parse_args(argv)
    harness.limit_threads(args.threads)
    print(harness.header(f"MAP / VI step time, device={args.device}"))
    print("| generator | step | hand-written torch s | Pyro s | Pyro overhead | Pyro x 1 particle |")
    print("|---|---|---:|---:|---:|---:|")
    ratios: dict[int, float] = {}
    for size in args.sizes:
        model = build(size, args.device)
        steps = args.steps if size < 1024 else max(2, args.steps // 4)
        cases = [("MAP", torch_map_step(model), lambda: time_steps(pyro_map_step(model), steps, args.device))]
        for p in (1, 6):
            cases.append((f"VI, {p} particle{'s' if p > 1 else ''}", torch_vi_step(model, p),
                          lambda p=p: fit_vi_step_seconds(model, p, steps, args.device)))
        times = {}
        for name, hand, pyro_seconds in cases:
            t_hand = time_steps(hand, steps, args.device)
            times[name] = t_pyro = pyro_seconds()
            one = times.get("VI, 1 particle")
            ratio = f"{t_pyro / one:.1f}" if name.startswith("VI") and one else "–"
            print(f"| {size}x{size} | {name} | {t_hand:.4f} | {t_pyro:.4f} | {100 * (t_pyro / t_hand - 1):+.1f}% | "
                  f"{ratio} |", flush=True)
        ratios[size] = times["VI, 6 particles"] / times["VI, 1 particle"]
    for size, ratio in ratios.items():
        verdict = "meets" if ratio <= 4 else "misses"
        print(f"\nVI, 6 particles vs 1 particle at {size}x{size}: {ratio:.2f}x ({verdict} the goal of at most 4x)")


if __name__ == "__main__":
    main()
