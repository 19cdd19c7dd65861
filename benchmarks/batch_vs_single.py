"""Batched against separate MAP runs: how far a batch of B images drifts from B one-image runs.

A batched run optimises B independent latents on one batched model (a plate over the images):
each image's loss term and gradient are mathematically those of its own run.  In float32 the
batched generator's convolutions sum in another order, so G(w) differs from the one-image run by
float rounding (a few 1e-6 on [-1, 1]); Adam's normalised steps (m / sqrt(v)) do not damp such
differences, and over the optimisation they grow.  This script measures how large they get:
for each number of steps, the largest per-pixel difference of the MAP images (on [-1, 1]) and of
their RMSE against the truth (0-255 scale), batch of B vs B separate runs.

    python benchmarks/batch_vs_single.py                    # 8 bundled test images, x4 SR, 50 and 500 steps
    python benchmarks/batch_vs_single.py --images 4 --steps 50
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: import from the repository root, not benchmarks/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import harness  # noqa: E402

harness.limit_threads(1)

import torch  # noqa: E402

from brgm_pyro import generators  # noqa: E402
from brgm_pyro.app.features import build_features  # noqa: E402
from brgm_pyro.bundled import load_test_images  # noqa: E402
from brgm_pyro.corruptions import make_corruption  # noqa: E402
from brgm_pyro.inference import map_estimate  # noqa: E402
from brgm_pyro.metrics import compute_metrics  # noqa: E402
from brgm_pyro.models import brgm_model, default_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--steps", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--features", default="auto")
    args = parser.parse_args()
    generator = generators.load_generator("fashion-mnist-32", device="cpu")
    features = build_features(args.features, generator)
    truth = load_test_images()[0][:args.images]
    op = make_corruption("super-resolution", 32, factor=4, kernel="bicubic-antialias")
    y = op(truth)
    config = default_config(generator, op, features)
    print(harness.header(f"batch of {args.images} bundled test images vs {args.images} one-image runs; x4 SR "
                         f"bicubic-antialias, MAP lr 0.1, features {args.features}"))
    print("| steps | max abs pixel diff ([-1, 1]) | median over images | max abs RMSE diff (0-255) "
          "| mean RMSE single |")
    print("|---:|---:|---:|---:|---:|")
    for steps in args.steps:
        model = brgm_model(generator, op, y, config=config, features=features)
        batched = map_estimate(model, num_steps=steps, progress=False).image.reshape(truth.shape)
        single = torch.cat([map_estimate(brgm_model(generator, op, y[i:i + 1], config=config, features=features),
                                         num_steps=steps, progress=False).image.reshape(1, *truth.shape[1:])
                            for i in range(len(truth))])
        diff = (batched - single).abs().flatten(1).amax(1)
        rmse_b = compute_metrics(batched, truth)["rmse"]
        rmse_s = compute_metrics(single, truth)["rmse"]
        print(f"| {steps} | {float(diff.max()):.4f} | {float(diff.median()):.4f} | "
              f"{float((torch.as_tensor(rmse_b) - torch.as_tensor(rmse_s)).abs().max()):.3f} | "
              f"{float(torch.as_tensor(rmse_s).mean()):.2f} |", flush=True)


if __name__ == "__main__":
    main()
