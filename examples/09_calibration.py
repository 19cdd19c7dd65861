"""Do the error bars hold?  Simulation-based calibration, and the interval scale that fixes them.

Draw in-painting problems from the model itself (w ~ its prior, x = G(w), y = f(x) + N(0, 0.1^2)),
so that the truth of every hidden pixel is known; fit a posterior to each; count how often its
central intervals hold the truth.  A calibrated posterior's 90% intervals hold 90% of the time.

1. Fit the interval scale s of the recommended posterior on one set of simulated problems
   (``fit_method_interval_scale``: the s whose calibration curve is closest to the diagonal).
2. On other problems, compare the paper's mean-field VI, the recommended full-rank posterior, and
   the same widened to N(mu, s^2 Sigma) (``widened``): coverage at 10% ... 90%, with the figure.

    python examples/09_calibration.py [--smoke]      (full: about 15 minutes on one CPU thread)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from brgm_pyro.corruptions import make_corruption
from brgm_pyro.generators import load_generator
from brgm_pyro.inference import RECOMMENDED_VI_STEPS, fit_recommended_posterior, fit_vi
from brgm_pyro.study import calibrate, fit_method_interval_scale, simulate_problems, widened


def main(args: argparse.Namespace) -> None:
    G = load_generator("fashion-mnist-32", device="cpu")
    f = make_corruption("inpainting", 32, mask_id=0)   # the right half is hidden

    def recommended(model, seed: int):
        """Multi-start MAP, Laplace at the best mode, full-rank Gaussian VI, unwidened (interval scale 1)."""
        return fit_recommended_posterior(model, seed=seed, map_steps=args.steps, vi_steps=args.vi_steps)

    def paper(model, seed: int):
        """The paper's mean-field Gaussian guide with the inverse-gamma prior on sigma_v."""
        return fit_vi(model, num_steps=args.steps, seed=seed, progress=not args.smoke)

    fit_problems = simulate_problems(G, f, args.problems, sigma_pixel=0.1, seed=2)
    fit = fit_method_interval_scale(fit_problems, recommended, num_draws=args.draws)
    print(f"interval scale fitted on {fit.num_problems} problems (seed 2): {fit.scale:g} "
          f"(mean |coverage - level| {fit.calibration_error[fit.scales.index(fit.scale)]:.3f}, "
          f"{fit.calibration_error[fit.scales.index(1.0)]:.3f} at scale 1)")

    test_problems = simulate_problems(G, f, args.problems, sigma_pixel=0.1, seed=1)   # never seen by the fit
    methods = {"paper (mean-field VI)": paper, "full-rank": recommended,
               f"full-rank x{fit.scale:g}": widened(recommended, fit.scale)}
    report = calibrate(test_problems, methods, num_draws=args.draws, seed=0, progress=not args.smoke)
    print(report.table())
    figure = report.figure(Path(args.out) / "09_calibration.png")
    print(f"figure: {figure}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=8, help="problems to fit the scale on, and to test on")
    parser.add_argument("--steps", type=int, default=500, help="MAP / VI steps")
    parser.add_argument("--vi-steps", type=int, default=RECOMMENDED_VI_STEPS,
                        help="full-rank VI steps after the Laplace start")
    parser.add_argument("--draws", type=int, default=256, help="posterior draws per problem")
    parser.add_argument("--out", default="example-outputs")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.problems, args.steps, args.vi_steps, args.draws = 2, 5, 5, 16
    main(args)
