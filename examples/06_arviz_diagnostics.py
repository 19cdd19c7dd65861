"""ArviZ diagnostics of a variational fit.

After ``fit_vi`` on an in-painting problem we
- turn the fit into an ``arviz.InferenceData`` (posterior draws of w with named dims, generated
  images as posterior predictive, the observation, the true image, the ELBO trace per step),
- check the optimisation converged (the ELBO trace and each model term),
- summarise the marginals of a few latent coordinates (``az.summary``, ``az.plot_posterior``),
- ask how good q is as an approximation: the PSIS k-hat (< 0.7 usable, > 0.7 q misses mass),
- and how honest its uncertainty is: the coverage of 90% per-pixel credible intervals.

    python examples/06_arviz_diagnostics.py [--smoke]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import arviz as az
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from brgm_pyro.bundled import load_domain_features, load_test_images
from brgm_pyro.corruptions import Inpainting, standard_mask
from brgm_pyro.generators import load_generator
from brgm_pyro.io import save_figure
from brgm_pyro.inference import credible_interval_coverage, fit_vi, psis_khat, to_inference_data
from brgm_pyro.models import brgm_model


def main(args: argparse.Namespace) -> None:
    G = load_generator("fashion-mnist-32", device="cpu")
    truth = load_test_images()[0][args.image : args.image + 1]
    f = Inpainting(standard_mask(6, 32))                      # bottom half hidden
    model = brgm_model(G, f, f(truth), features=load_domain_features())
    posterior = fit_vi(model, num_steps=args.steps, progress=not args.smoke)

    idata = to_inference_data(posterior, model, num_draws=args.samples, truth=truth)
    print(idata)
    coords = {"layer": [0], "w_dim": [0, 1, 2]}
    print(az.summary(idata, var_names=["w"], coords=coords, kind="stats"))
    khat = psis_khat(posterior, num_particles=args.samples)
    coverage = credible_interval_coverage(posterior, truth, level=0.9, num_samples=args.samples)
    print(f"PSIS k-hat: {khat:.2f}   90% interval coverage of the true pixels: {coverage.fraction:.1%}")

    fig = plt.figure(figsize=(11, 5))
    ax = fig.add_subplot(2, 3, 1)
    opt = idata.optimization
    ax.plot(opt["loss"].values, label="-ELBO + sigma_v penalty")
    ax.set_yscale("symlog")
    ax.set_title("optimisation", fontsize=9)
    ax.legend(fontsize=7)
    ax = fig.add_subplot(2, 3, 2)
    for name in opt.data_vars:
        if name.startswith("term_") and name != "term_sigma_v_prior":
            ax.plot(opt[name].values, label=name[5:])
    ax.set_yscale("symlog")
    ax.legend(fontsize=6)
    ax.set_title("model terms per step", fontsize=9)
    ax = fig.add_subplot(2, 3, 3)
    ax.imshow(coverage.inside[0].float(), cmap="RdYlGn", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(f"truth inside 90% interval ({coverage.fraction:.0%})", fontsize=9)
    ax.axis("off")
    post_axes = [fig.add_subplot(2, 3, 4 + i) for i in range(3)]
    az.plot_posterior(idata, var_names=["w"], coords={"layer": [0], "w_dim": [0, 1, 2]}, ax=post_axes,
                      hdi_prob=0.9, textsize=7)
    fig.suptitle(f"VI diagnostics (k-hat {khat:.2f})", fontsize=10)
    fig.tight_layout()
    figure = save_figure(fig, Path(args.out) / "06_arviz_diagnostics.png")
    if args.netcdf:
        idata.to_netcdf(str(Path(args.out) / "06_vi.nc"))
    print(f"figure: {figure}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--image", type=int, default=8)
    parser.add_argument("--netcdf", action="store_true", help="also save the InferenceData as NetCDF")
    parser.add_argument("--out", default="example-outputs")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.samples = 5, 20
    main(args)
