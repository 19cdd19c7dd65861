"""Recovery of an unknown noise level and blur width on synthetic data from the bundled generator.

For each (noise sigma, blur sigma, seed): x = G(w) with w = mapping(z), z ~ N(0, I) seeded;
I = GaussianBlur(x) + noise.  Model: the bundled prior (per-dimension std, kappa 0.25), pixel
likelihood with sigma_pixel ~ HalfNormal(0.5), blur sigma ~ LogNormal(log 1.5, 0.4).
MAP (500 Adam steps, lr 0.1), then VI warm-started at the MAP (``gaussian_guide_at``, initial
scale 0.005, 200 steps, lr 0.02, 2 particles, no sigma_v penalty) for a 90% interval.
"dlogp" is log p(w, theta, I) at the MAP minus at the truth (w = mapping(z), true blur and noise):
positive means the model prefers the wrong answer (not identifiable from this image), negative
that the optimiser stopped in a worse local mode.  Prints a Markdown table.

``--others``: one problem each for the other blind parameters (x4 super-resolution with an
unknown Gaussian kernel width, a sub-pixel shift under a known blur 1.0, gain and offset under a
known blur 1.0), noise 0.1 learned too.

    python benchmarks/blind_recovery.py [--quick | --others]    # one thread (harness.limit_threads)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: import from the repository root, not benchmarks/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import torch  # noqa: E402

from benchmarks import harness  # noqa: E402
from brgm_pyro.corruptions import Blur, LatentParameter  # noqa: E402
from brgm_pyro.generators import load_generator  # noqa: E402
from brgm_pyro.inference import fit_vi, gaussian_guide_at, map_estimate, parameter_summary  # noqa: E402
from brgm_pyro.models import BRGMConfig, PixelLikelihood, brgm_model  # noqa: E402

CONFIG = BRGMConfig(sigma_pixel=0.1, kappa=0.25, prior_std="per-dimension")


def synthetic_blur_problem(G, noise: float, blur: float, seed: int, blur_prior=None):
    """The model of one synthetic observation with unknown blur and noise, and the clean image."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = G.mapping(torch.randn(1, G.z_dim, generator=g))
        x = G.synthesis(w)
        y = Blur.gaussian(blur, size=25)(x) + noise * torch.randn(x.shape, generator=g)
    prior = dist.LogNormal(math.log(1.5), 0.4) if blur_prior is None else blur_prior
    op = Blur.gaussian(LatentParameter(prior), size=25)
    model = brgm_model(G, op, y[0], config=CONFIG, likelihoods=[PixelLikelihood("learn")])
    return model, {"w": w[0], "corruption.blur_sigma": torch.tensor(blur), "sigma_pixel": torch.tensor(noise)}, x


def log_joint(model, values: dict) -> float:
    with torch.no_grad():
        return float(pyro.poutine.trace(pyro.condition(model.model, data=values)).get_trace().log_prob_sum())


def recover(model, map_steps: int = 500, vi_steps: int = 200, seed: int = 0):
    r = map_estimate(model, num_steps=map_steps, seed=seed, progress=False)
    q = gaussian_guide_at(model, r, init_scale=0.005)
    v = fit_vi(model, guide=q, num_steps=vi_steps, lr=0.02, num_particles=2, sigma_prior=None, seed=seed,
               progress=False)
    return r, v


def other_parameters(G) -> None:
    """Recovery of the SR kernel width, a shift, and gain / offset (one seeded problem each)."""
    from brgm_pyro.corruptions import Compose, Intensity, Shift, SuperResolution

    lp = LatentParameter
    problems = [
        ("SR x4 kernel sigma", SuperResolution(4, "gaussian", 2.0),
         SuperResolution(4, "gaussian", lp(dist.LogNormal(math.log(2.0), 0.4))), {"corruption.sr_kernel_sigma": 2.0}),
        ("shift (blur 1.0 known)", Compose(Shift(0.6, -0.4), Blur.gaussian(1.0, size=7)),
         Compose(Shift(lp(dist.Normal(0.0, 1.0)), lp(dist.Normal(0.0, 1.0))), Blur.gaussian(1.0, size=7)),
         {"corruption.shift_x": 0.6, "corruption.shift_y": -0.4}),
        ("gain/offset (blur 1.0 known)", Compose(Intensity(1.2, 0.1), Blur.gaussian(1.0, size=7)),
         Compose(Intensity(lp(dist.LogNormal(0.0, 0.2)), lp(dist.Normal(0.0, 0.2))), Blur.gaussian(1.0, size=7)),
         {"corruption.gain": 1.2, "corruption.offset": 0.1}),
    ]
    print("| problem | seed | site | truth | MAP | VI mean [90%] |")
    print("|---|---|---|---|---|---|")
    for i, (name, true_op, model_op, truth) in enumerate(problems):
        seed = 200 + i
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            x = G.synthesis(G.mapping(torch.randn(1, G.z_dim, generator=g)))
            clean = true_op(x)
            y = clean + 0.1 * torch.randn(clean.shape, generator=g)
        model = brgm_model(G, model_op, y[0], config=CONFIG, likelihoods=[PixelLikelihood("learn")])
        r, v = recover(model)
        s = parameter_summary(v)
        for site, true in {**truth, "sigma_pixel": 0.1}.items():
            e = s[site]
            mark = "" if e["lower"] <= true <= e["upper"] else " (misses)"
            print(f"| {name} | {seed} | {site} | {true} | {float(r.parameters[site]):.3f} | "
                  f"{e['mean']:.3f} [{e['lower']:.3f}, {e['upper']:.3f}]{mark} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two problems only")
    parser.add_argument("--others", action="store_true", help="SR kernel width, shift, gain / offset")
    args = parser.parse_args()
    harness.limit_threads(1)
    print(harness.header("blind deconvolution recovery" + (", other parameters" if args.others else "")))
    G = load_generator("fashion-mnist-32", device="cpu")
    if args.others:
        other_parameters(G)
        return
    grid = [(n, b) for n in (0.05, 0.1, 0.2) for b in (1.0, 1.75, 2.5)] + [(0.2, 3.5)]
    if args.quick:
        grid = [(0.1, 1.75), (0.2, 3.5)]
    print("| noise | blur | seed | MAP sigma | VI sigma [90%] | MAP blur | VI blur [90%] | dlogp | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, (noise, blur) in enumerate(grid):
        seed = 100 + i
        model, truth, _ = synthetic_blur_problem(G, noise, blur, seed)
        t0 = time.perf_counter()
        r, v = recover(model)
        s = parameter_summary(v)
        cells = []
        for site, true in (("sigma_pixel", noise), ("corruption.blur_sigma", blur)):
            e = s[site]
            mark = "" if e["lower"] <= true <= e["upper"] else " (misses)"
            cells += [f"{float(r.parameters[site]):.3f} ({100 * (float(r.parameters[site]) / true - 1):+.0f}%)",
                      f"{e['mean']:.3f} [{e['lower']:.3f}, {e['upper']:.3f}]{mark}"]
        at_map = {"w": r.latent, **r.parameters}
        dlogp = log_joint(model, at_map) - log_joint(model, truth)
        print(f"| {noise} | {blur} | {seed} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} | {dlogp:+.1f} | "
              f"{time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
