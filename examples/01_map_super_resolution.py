"""MAP super-resolution, step by step: the model, the guide and the optimisation loop.

We corrupt a bundled Fashion-MNIST test image (32x32 -> 8x8, bicubic), write the BRGM model
from its parts, and find w* = argmax p(w | I) with an AutoDelta guide under SVI -- the loop
that ``brgm_pyro.inference.map_estimate`` runs for you.

    python examples/01_map_super_resolution.py            # ~20 s on a laptop CPU
    python examples/01_map_super_resolution.py --smoke    # a few steps, for CI
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoDelta
from pyro.infer.autoguide.initialization import init_to_value

from brgm_pyro.baselines import bicubic_upsample
from brgm_pyro.bundled import load_domain_features, load_test_images
from brgm_pyro.corruptions import SuperResolution
from brgm_pyro.generators import load_generator
from brgm_pyro.io import save_figure
from brgm_pyro.metrics import rmse
from brgm_pyro.models import (
    BRGMModel, ColinearityPrior, GaussianLatentPrior, PerceptualLikelihood, PixelLikelihood, default_config,
)


def main(args: argparse.Namespace) -> None:
    pyro.set_rng_seed(args.seed)
    G = load_generator("fashion-mnist-32", device="cpu")       # 32x32 grayscale StyleGAN2, W+ is 8 x 64
    truth = load_test_images()[0][args.image : args.image + 1]  # (1, 1, 32, 32) in [-1, 1]
    # the known corruption: antialiased bicubic down-sampling
    f = SuperResolution(4, kernel="bicubic-antialias")
    observation = f(truth)                                      # (1, 1, 8, 8)

    # 1. The prior (Eq. 2): w_i ~ N(mu, sigma^2) on every layer, mu / sigma from 10,000 mapping samples ...
    prior = GaussianLatentPrior.from_stats(G.latent_stats(10_000), G.num_ws)
    # ... and the von Mises colinearity term on the angles between layers.
    # 2. The likelihood (Eq. 4): Gaussian on pixels of f(G(w)) and on the domain features phi.
    phi = load_domain_features()
    config = default_config(G, f, phi)  # sigma_pixel, sigma_perceptual, kappa: the model card's tuned balance
    # (the card's x4 SR weights have no perceptual term; their misfit term, models.misfit, is left out here:
    # this script builds the paper's model)
    likelihoods = [PixelLikelihood(config.sigma_pixel)]
    if config.sigma_perceptual is not None:
        likelihoods.append(PerceptualLikelihood(phi, config.sigma_perceptual))
    model = BRGMModel(G, f, observation, prior, ColinearityPrior(config.kappa), likelihoods)

    # 3. The guide: a point mass at w, started at w_avg on every layer (the authors' initialisation).
    guide = AutoDelta(model.model, init_loc_fn=init_to_value(values={"w": prior.init_loc()}))

    # 4. The loop: the ELBO of a delta guide is the negative log joint, so SVI does MAP.
    G.requires_grad_(False)                                     # only w is optimised
    pyro.clear_param_store()
    svi = SVI(model.model, guide, pyro.optim.Adam({"lr": 0.1}), Trace_ELBO())
    losses = []
    for step in range(args.steps):
        losses.append(svi.step())
        if not args.smoke and (step % 100 == 0 or step == args.steps - 1):
            print(f"step {step + 1}/{args.steps}: -log p(w, I) {losses[-1]:.1f}", flush=True)

    w_star = guide.median()["w"]                                # (num_ws, w_dim)
    with torch.no_grad():
        recon = G.synthesis(w_star[None])
    bicubic = bicubic_upsample(observation, 4)
    print(f"-log p(w, I): {losses[0]:.1f} -> {losses[-1]:.1f} after {args.steps} steps")
    print(f"RMSE (0-255): BRGM {float(rmse(recon, truth)):.1f}, bicubic {float(rmse(bicubic, truth)):.1f}")

    fig, axes = plt.subplots(1, 5, figsize=(11, 2.6))
    for ax, img, title in zip(axes[:4], [observation, bicubic, recon, truth],
                              ["input 8x8", "bicubic", "BRGM MAP", "truth"]):
        ax.imshow(img[0, 0], cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    axes[4].plot(losses)
    axes[4].set_yscale("symlog")
    axes[4].set_title("loss (-log joint)")
    fig.tight_layout()
    figure = save_figure(fig, Path(args.out) / "01_map_super_resolution.png")
    print(f"figure: {figure}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--image", type=int, default=0, help="bundled test image 0..99")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="example-outputs")
    parser.add_argument("--smoke", action="store_true", help="a few steps only (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.steps = 5
    main(args)
