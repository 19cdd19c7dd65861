"""Variational in-painting: many reconstructions from q(w), their mean and the uncertainty map.

The right half of a bundled test image is hidden. ``fit_vi`` fits the paper's Gaussian guide
q(w) = N(mu_v, softplus(rho_v)^2) (Eqs. 7-8, with the inverse-gamma prior on sigma_v), then we
draw 500 reconstructions G(w), w ~ q, and look at their per-pixel mean and standard deviation:
the posterior should be unsure where nothing was observed.

    python examples/02_vi_inpainting.py [--smoke]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from brgm_pyro.bundled import load_domain_features, load_test_images
from brgm_pyro.corruptions import Inpainting, standard_mask
from brgm_pyro.generators import load_generator
from brgm_pyro.io import save_figure
from brgm_pyro.inference import fit_vi
from brgm_pyro.models import brgm_model


def main(args: argparse.Namespace) -> None:
    G = load_generator("fashion-mnist-32", device="cpu")
    truth = load_test_images()[0][args.image : args.image + 1]
    mask = standard_mask(0, 32)                        # (1, 32, 32): 1 = observed, right half hidden
    f = Inpainting(mask)
    model = brgm_model(G, f, f(truth), features=load_domain_features())

    posterior = fit_vi(model, num_steps=args.steps, num_particles=6, progress=not args.smoke)
    draws = posterior.sample(args.samples, seed=0)     # latents, ws and images, drawn in chunks
    stats = posterior.pixel_statistics(args.samples, seed=0)
    hidden, seen = stats.std[mask == 0].mean(), stats.std[mask == 1].mean()
    print(f"mean posterior std: {float(hidden):.3f} in the hidden half, {float(seen):.3f} where observed")

    panels = [(f(truth)[0, 0], "input", "gray"), (posterior.mean_image()[0, 0], "G(mu_v)", "gray"),
              (stats.mean[0], f"mean of {args.samples}", "gray")]
    panels += [(draws.images[i, 0], f"sample {i + 1}", "gray") for i in range(3)]
    panels += [(stats.std[0], "per-pixel std", "magma"), (truth[0, 0], "truth", "gray")]
    fig, axes = plt.subplots(1, len(panels), figsize=(2 * len(panels), 2.4))
    for ax, (img, title, cmap) in zip(axes, panels):
        kw = dict(vmin=-1, vmax=1) if cmap == "gray" else {}
        ax.imshow(img.detach(), cmap=cmap, interpolation="nearest", **kw)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    figure = save_figure(fig, Path(args.out) / "02_vi_inpainting.png")
    print(f"figure: {figure}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--image", type=int, default=3)
    parser.add_argument("--out", default="example-outputs")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.samples = 5, 8
    main(args)
