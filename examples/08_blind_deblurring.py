"""Blind deblurring: the blur width and the noise level are unknown and inferred with the image.

The paper assumes the corruption and the noise are known.  Here both are latent variables of the
Pyro model: ``Blur.gaussian(sigma=LatentParameter(prior))`` adds the site
"corruption.blur_sigma", ``PixelLikelihood("learn")`` the site "sigma_pixel".  On a synthetic
image from the bundled generator (so the truth is known) we compare
- MAP (``AutoDelta`` over every site),
- VI (the paper's Gaussian guide over w, plus a LogNormal factor per positive parameter),
  warm-started at the MAP,
- NUTS (samples every site),
print ``compare()``'s table with the parameters' posterior means and 90% intervals, and draw an
ArviZ pair plot of (blur sigma, noise sigma).  Blur and image sharpness trade off: a sharper
image behind a wider blur explains the data almost as well, which the posterior's spread (and,
for some images, a second mode; see docs/extended-model.md) shows.

    python examples/08_blind_deblurring.py [--smoke]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import arviz as az
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pyro.distributions as dist
import torch

from brgm_pyro.corruptions import Blur, LatentParameter
from brgm_pyro.generators import load_generator
from brgm_pyro.inference import (
    compare, fit_vi, format_table, gaussian_guide_at, map_estimate, run_mcmc, to_inference_data,
)
from brgm_pyro.io import save_figure
from brgm_pyro.models import BRGMConfig, PixelLikelihood, brgm_model

BLUR, NOISE = "corruption.blur_sigma", "sigma_pixel"


def main(args: argparse.Namespace) -> None:
    G = load_generator("fashion-mnist-32", device="cpu")
    g = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():                                       # a synthetic truth from the generator
        truth = G.synthesis(G.mapping(torch.randn(1, G.z_dim, generator=g)))
        observation = Blur.gaussian(args.blur, size=25)(truth) + args.noise * torch.randn(truth.shape, generator=g)

    blind_blur = Blur.gaussian(LatentParameter(dist.LogNormal(math.log(1.5), 0.4)), size=25)
    config = BRGMConfig(sigma_pixel=0.1, kappa=0.25, prior_std="per-dimension")
    model = brgm_model(G, blind_blur, observation[0], config=config, likelihoods=[PixelLikelihood("learn")])
    print("latent sites besides w:", {k: p.describe() for k, p in model.latent_parameters().items()})

    map_result = map_estimate(model, num_steps=args.steps, progress=not args.smoke)
    vi = fit_vi(model, guide=gaussian_guide_at(model, map_result, init_scale=0.005), num_steps=args.vi_steps,
                lr=0.02, num_particles=2, sigma_prior=None, progress=not args.smoke)
    nuts = run_mcmc(model, num_samples=args.nuts, warmup_steps=args.nuts, max_tree_depth=args.tree_depth,
                    init=map_result.latent, progress=not args.smoke)
    results = {"MAP": map_result, "VI": vi, "NUTS": nuts}
    rows = compare(results, model, truth=truth, num_samples=args.samples, khat_particles=args.samples)
    print(f"truth: blur sigma {args.blur}, noise sigma {args.noise}")
    print(format_table(rows))

    fig = plt.figure(figsize=(10, 5))
    grid = fig.add_gridspec(2, 4)
    images = [("truth", truth), ("observed", observation), ("MAP", map_result.image), ("VI mean", vi.mean_image())]
    for i, (name, img) in enumerate(images):
        ax = fig.add_subplot(grid[i // 2, i % 2])
        ax.imshow(img[0, 0].detach(), cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    axes = np.array([[fig.add_subplot(grid[r, 2 + c]) for c in range(2)] for r in range(2)])
    idata = to_inference_data(nuts)
    az.plot_pair(idata, var_names=[BLUR, NOISE], kind="scatter", marginals=True, ax=axes,
                 scatter_kwargs={"alpha": 0.5, "color": "C0"}, textsize=8)
    vi_draws = to_inference_data(vi, num_draws=args.samples).posterior
    joint = axes[1][0]
    joint.scatter(vi_draws[BLUR].values.ravel(), vi_draws[NOISE].values.ravel(), s=4, alpha=0.4, color="C1", label="VI")
    joint.scatter([float(map_result.parameters[BLUR])], [float(map_result.parameters[NOISE])], marker="x", s=60,
                  color="k", label="MAP")
    joint.axvline(args.blur, color="C3", lw=0.8)
    joint.axhline(args.noise, color="C3", lw=0.8, label="truth")
    joint.legend(fontsize=7, loc="best")
    fig.suptitle("blind deblurring: NUTS pair plot (blue), VI draws (orange), MAP (x), truth (red)", fontsize=10)
    fig.tight_layout()
    figure = save_figure(fig, Path(args.out) / "08_blind_deblurring.png")
    print(f"figure: {figure}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blur", type=float, default=1.75, help="true blur sigma (pixels)")
    parser.add_argument("--noise", type=float, default=0.1, help="true noise sigma ([-1, 1] images)")
    parser.add_argument("--seed", type=int, default=104)
    parser.add_argument("--steps", type=int, default=500, help="MAP steps")
    parser.add_argument("--vi-steps", type=int, default=200)
    parser.add_argument("--nuts", type=int, default=100, help="NUTS warm-up steps and draws")
    parser.add_argument("--tree-depth", type=int, default=5)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--out", default="example-outputs")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.vi_steps, args.nuts, args.tree_depth, args.samples = 5, 3, 4, 2, 8
    main(args)
