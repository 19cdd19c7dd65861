"""Swapping the prior: the same x4 super-resolution with four priors on w.

1. the paper's: Gaussian on W+ plus the colinearity (von Mises) term,
2. without the colinearity term,
3. W instead of W+: one w shared by all layers (``SharedLatentPrior``),
4. a heavy-tailed Student-t on W+ (``StudentTLatentPrior``).

Every part of ``BRGMModel`` is an object you can replace; MAP runs unchanged.

    python examples/03_swap_the_prior.py [--smoke]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from brgm_pyro.bundled import load_domain_features, load_test_images
from brgm_pyro.corruptions import SuperResolution
from brgm_pyro.generators import load_generator
from brgm_pyro.io import save_figure
from brgm_pyro.inference import map_estimate
from brgm_pyro.metrics import rmse
from brgm_pyro.models import SharedLatentPrior, StudentTLatentPrior, brgm_model


def main(args: argparse.Namespace) -> None:
    G = load_generator("fashion-mnist-32", device="cpu")
    truth = load_test_images()[0][args.images]                 # a few test images at once
    f = SuperResolution(4, kernel="bicubic-antialias")  # low-pass, then subsample
    paper = brgm_model(G, f, f(truth), features=load_domain_features())   # batched: one latent per image
    stats = G.latent_stats()

    variants = {  # BRGMModel is a dataclass: replace() swaps one part and keeps the others
        "W+ & colinearity (paper)": paper,
        "W+, no colinearity": replace(paper, colinearity=None),
        "W (shared w)": replace(paper, prior=SharedLatentPrior.from_stats(stats, G.num_ws)),
        "Student-t (df 3) on W+": replace(paper, prior=StudentTLatentPrior(stats.mean, stats.std_scalar, G.num_ws,
                                                                            df=3.0)),
    }
    images = {}
    for name, model in variants.items():
        result = map_estimate(model, num_steps=args.steps, progress=not args.smoke)
        images[name] = result.image.reshape(truth.shape)
        layer_cos = torch.nn.functional.cosine_similarity(result.ws[..., :1, :], result.ws, dim=-1).mean()
        print(f"{name:<28} RMSE {float(rmse(images[name], truth).mean()):6.2f}  "
              f"(mean cos between layers {float(layer_cos):.2f})")

    columns = {"input": torch.nn.functional.interpolate(f(truth), scale_factor=4), **images, "truth": truth}
    fig, axes = plt.subplots(len(truth), len(columns), figsize=(1.9 * len(columns), 2 * len(truth)), squeeze=False)
    for c, (name, imgs) in enumerate(columns.items()):
        for r in range(len(truth)):
            axes[r][c].imshow(imgs[r, 0].detach(), cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
            axes[r][c].axis("off")
        axes[0][c].set_title(name, fontsize=7)
    fig.tight_layout()
    figure = save_figure(fig, Path(args.out) / "03_swap_the_prior.png")
    print(f"figure: {figure}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--images", type=int, nargs="+", default=[0, 12, 25, 47])
    parser.add_argument("--out", default="example-outputs")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.images = 3, [0, 1]
    main(args)
