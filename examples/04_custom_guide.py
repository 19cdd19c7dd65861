"""Writing your own guide: a low-rank-plus-diagonal Gaussian over W+, plugged into ``fit_vi``.

    q(w) = N(mu, U U^T + diag(sigma^2)),   U: (L*D, rank)

couples the latent dimensions (the paper's guide is fully factorised). A guide is any callable
that samples the model's latent site "w" from ``pyro.param``-eters; giving it a ``median()``
lets ``posterior.mean_image()`` work. We compare its fit with the paper's diagonal guide.

    python examples/04_custom_guide.py [--smoke]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F

from brgm_pyro.bundled import load_domain_features, load_test_images
from brgm_pyro.corruptions import SuperResolution
from brgm_pyro.generators import load_generator
from brgm_pyro.io import save_figure
from brgm_pyro.inference import fit_vi
from brgm_pyro.models import brgm_model


class LowRankGuide:
    """q(w) = LowRankMultivariateNormal(mu, U, sigma^2) over the flattened (L, D) latent."""

    def __init__(self, init_loc: torch.Tensor, rank: int = 4, init_scale: float = 0.05) -> None:
        self.shape, self.rank = init_loc.shape, rank
        self.init_loc, self.init_scale = init_loc.flatten(), init_scale

    def _params(self):
        n = self.init_loc.numel()
        mu = pyro.param("lowrank_mu", self.init_loc.clone())
        U = pyro.param("lowrank_U", lambda: 0.01 * torch.randn(n, self.rank))
        rho = pyro.param("lowrank_rho", torch.full((n,), self.init_scale).expm1().log())  # softplus^-1
        return mu, U, F.softplus(rho)

    def __call__(self):
        mu, U, sigma = self._params()
        flat = pyro.sample("w_flat", dist.LowRankMultivariateNormal(mu, U, sigma.square()),
                           infer={"is_auxiliary": True})
        # the model's site "w" is the reshaped draw (a Delta keeps the log-density of the draw)
        return pyro.sample("w", dist.Delta(flat.reshape(*flat.shape[:-1], *self.shape), event_dim=2))

    def median(self):
        mu, _, _ = self._params()
        return {"w": mu.reshape(self.shape).detach()}


def main(args: argparse.Namespace) -> None:
    G = load_generator("fashion-mnist-32", device="cpu")
    truth = load_test_images()[0][args.image : args.image + 1]
    f = SuperResolution(4, kernel="bicubic-antialias")  # low-pass, then subsample
    model = brgm_model(G, f, f(truth), features=load_domain_features())

    fits = {"paper's diagonal guide": fit_vi(model, num_steps=args.steps, progress=not args.smoke),
            f"low-rank guide (rank {args.rank})": fit_vi(model, guide=LowRankGuide(model.prior.init_loc(), args.rank),
                                                         num_steps=args.steps, progress=not args.smoke)}
    fig, axes = plt.subplots(len(fits), 5, figsize=(10, 2.2 * len(fits)), squeeze=False)
    for r, (name, posterior) in enumerate(fits.items()):
        elbo = -sum(posterior.history.loss[-20:]) / len(posterior.history.loss[-20:])
        stats = posterior.pixel_statistics(args.samples, seed=0)
        print(f"{name:<26} final ELBO (mean of last 20 steps) {elbo:10.1f}, "
              f"mean pixel std {float(stats.std.mean()):.3f}")
        draws = posterior.sample(3, seed=1).images
        panels = [(posterior.mean_image()[0, 0], "mean latent", "gray")]
        panels += [(draws[i, 0], f"sample {i + 1}", "gray") for i in range(3)] + [(stats.std[0], "std", "magma")]
        for c, (img, title, cmap) in enumerate(panels):
            kw = dict(vmin=-1, vmax=1) if cmap == "gray" else {}
            axes[r][c].imshow(img.detach(), cmap=cmap, interpolation="nearest", **kw)
            axes[r][c].set_title(title, fontsize=8)
            axes[r][c].axis("off")
        axes[r][0].text(-4, 16, name, rotation=90, va="center", ha="right", fontsize=7)
    fig.tight_layout()
    figure = save_figure(fig, Path(args.out) / "04_custom_guide.png")
    print(f"figure: {figure}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--image", type=int, default=5)
    parser.add_argument("--out", default="example-outputs")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.samples = 4, 8
    main(args)
