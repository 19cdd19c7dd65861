"""SVI vs MAP vs NUTS on the bundled model: one observation, three answers.

NUTS is the gold standard but needs many generator evaluations per draw, so this comparison
works in the W space (one 64-dimensional w shared by all layers, ``SharedLatentPrior``), where
NUTS is feasible on a CPU. We compare data fit, distance to the truth, posterior spread and
the PSIS k-hat of the variational fit, and plot the marginals of a few coordinates of w with
ArviZ: VI is expected to be narrower than NUTS (it minimises KL(q || p)).

    python examples/05_svi_map_nuts.py            # a few minutes on a CPU
    python examples/05_svi_map_nuts.py --smoke
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import arviz as az
import matplotlib

matplotlib.use("Agg")

from brgm_pyro.bundled import load_domain_features, load_test_images
from brgm_pyro.corruptions import SuperResolution
from brgm_pyro.generators import load_generator
from brgm_pyro.io import save_figure
from brgm_pyro.inference import compare, fit_vi, format_table, map_estimate, run_mcmc, to_inference_data
from brgm_pyro.models import SharedLatentPrior, brgm_model


def main(args: argparse.Namespace) -> None:
    G = load_generator("fashion-mnist-32", device="cpu")
    truth = load_test_images()[0][args.image : args.image + 1]
    f = SuperResolution(4, kernel="bicubic-antialias")  # low-pass, then subsample
    full = brgm_model(G, f, f(truth), features=load_domain_features())
    model = replace(full, prior=SharedLatentPrior.from_stats(G.latent_stats(), G.num_ws))  # W instead of W+

    results = {
        "MAP": map_estimate(model, num_steps=args.steps, progress=not args.smoke),
        "SVI (diagonal Gaussian)": fit_vi(model, guide="gaussian", num_steps=args.steps, progress=not args.smoke),
        "NUTS": run_mcmc(model, num_samples=args.nuts_samples, warmup_steps=args.nuts_samples,
                         max_tree_depth=args.tree_depth, progress=not args.smoke),
    }
    print(format_table(compare(results, model, truth, num_samples=args.samples, khat_particles=args.samples)))
    print(f"NUTS divergences: {int(results['NUTS'].divergences.sum())}")

    data = {name: to_inference_data(r, model, num_draws=args.samples)
            for name, r in results.items() if name != "MAP"}
    dims = {"w_dim": list(range(4))}
    axes = az.plot_forest(list(data.values()), model_names=list(data), var_names=["w"], coords=dims,
                          combined=True, hdi_prob=0.9, figsize=(7, 4))
    fig = axes.ravel()[0].figure
    fig.suptitle("90% intervals of w[0:4] (W space): SVI vs NUTS", fontsize=9)
    figure = save_figure(fig, Path(args.out) / "05_svi_map_nuts.png")
    print(f"figure: {figure}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--nuts-samples", type=int, default=200)
    parser.add_argument("--tree-depth", type=int, default=6)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--image", type=int, default=0)
    parser.add_argument("--out", default="example-outputs")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.nuts_samples, args.tree_depth, args.samples = 5, 4, 2, 10
    main(args)
