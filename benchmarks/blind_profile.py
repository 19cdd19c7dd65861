"""Is a wrong blur estimate an optimiser failure or an ambiguity of the model?  For the failing
problems of ``blind_recovery.py``: the MAP with the blur free against the MAP with the blur fixed
at its true value (log joint including the blur prior in both).  If the free MAP's log joint is
higher, the model prefers the wrong blur (a smoother/sharper image explains the data as well):
an identifiability limit; if lower, the free optimisation stopped in a worse local mode.

    python benchmarks/blind_profile.py      # one thread (harness.limit_threads)
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: import from the repository root, not benchmarks/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import pyro.distributions as dist  # noqa: E402
import torch  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks.blind_recovery import CONFIG, log_joint, synthetic_blur_problem  # noqa: E402
from brgm_pyro.corruptions import Blur  # noqa: E402
from brgm_pyro.generators import load_generator  # noqa: E402
from brgm_pyro.inference import map_estimate  # noqa: E402
from brgm_pyro.models import PixelLikelihood, brgm_model  # noqa: E402

BLUR_PRIOR = dist.LogNormal(math.log(1.5), 0.4)


def main() -> None:
    harness.limit_threads(1)
    G = load_generator("fashion-mnist-32", device="cpu")
    print(harness.header("blind deconvolution: free MAP against the MAP with the true blur"))
    print("| noise | blur | seed | free MAP blur | log p (free) | log p (blur fixed at truth) | verdict |")
    print("|---|---|---|---|---|---|---|")
    for noise, blur, seed in ((0.05, 2.5, 102), (0.1, 2.5, 105), (0.2, 1.0, 106)):
        model, truth, _ = synthetic_blur_problem(G, noise, blur, seed)
        free = map_estimate(model, num_steps=500, progress=False)
        lp_free = log_joint(model, {"w": free.latent, **free.parameters})
        fixed_model = brgm_model(G, Blur.gaussian(blur, size=25), model.observation, config=CONFIG,
                                 likelihoods=[PixelLikelihood("learn")])
        fixed = map_estimate(fixed_model, num_steps=500, progress=False)
        lp_fixed = (log_joint(fixed_model, {"w": fixed.latent, **fixed.parameters})
                    + float(BLUR_PRIOR.log_prob(torch.tensor(blur))))
        verdict = "model prefers the wrong blur" if lp_free > lp_fixed else "optimiser: worse local mode"
        print(f"| {noise} | {blur} | {seed} | {float(free.parameters['corruption.blur_sigma']):.3f} | {lp_free:.1f} | "
              f"{lp_fixed:.1f} | {verdict} |", flush=True)


if __name__ == "__main__":
    main()
