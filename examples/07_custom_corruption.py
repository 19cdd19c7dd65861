"""A custom corruption in ten lines: diagonal motion blur followed by 2x down-sampling.

A forward operator is a ``Corruption`` (an ``nn.Module``) with ``forward(x)`` = f(x) on
(B, C, H, W) images in [-1, 1] and ``output_shape``; everything else (the Pyro model, MAP, VI)
works with it unchanged because f only needs to be differentiable.

    python examples/07_custom_corruption.py [--smoke]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from brgm_pyro.bundled import load_domain_features, load_test_images
from brgm_pyro.corruptions import Corruption
from brgm_pyro.generators import load_generator
from brgm_pyro.io import save_figure
from brgm_pyro.inference import map_estimate
from brgm_pyro.metrics import rmse
from brgm_pyro.models import brgm_model


class DiagonalBlurDown(Corruption):
    """f(x) = down_2(k * x), k a normalised 5x5 diagonal line (motion blur at 45 degrees)."""

    def __init__(self, length: int = 5) -> None:
        super().__init__()
        self.register_buffer("kernel", (torch.eye(length) / length)[None, None])

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = input_shape
        return (c, h // 2, w // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.kernel.shape[-1] // 2
        k = self.kernel.expand(x.shape[1], 1, -1, -1)
        blurred = F.conv2d(F.pad(x, [pad] * 4, mode="replicate"), k, groups=x.shape[1])
        return F.avg_pool2d(blurred, 2)


def main(args: argparse.Namespace) -> None:
    G = load_generator("fashion-mnist-32", device="cpu")
    truth = load_test_images()[0][args.images]
    f = DiagonalBlurDown()
    model = brgm_model(G, f, f(truth), features=load_domain_features())  # batched: one latent per image
    result = map_estimate(model, num_steps=args.steps, progress=not args.smoke)
    recon = result.image.reshape(truth.shape)
    upsampled = F.interpolate(f(truth), scale_factor=2)
    print(f"RMSE (0-255) of the reconstructions: {float(rmse(recon, truth).mean()):.1f}; "
          f"of the corrupted images up-sampled: {float(rmse(upsampled, truth).mean()):.1f}")

    rows = {"observed f(x)": F.interpolate(f(truth), scale_factor=2), "BRGM (MAP)": recon, "truth": truth}
    fig, axes = plt.subplots(len(rows), len(truth), figsize=(1.8 * len(truth), 1.9 * len(rows)), squeeze=False)
    for r, (name, imgs) in enumerate(rows.items()):
        for c in range(len(truth)):
            axes[r][c].imshow(imgs[c, 0].detach(), cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
            axes[r][c].set_xticks([])
            axes[r][c].set_yticks([])
        axes[r][0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    figure = save_figure(fig, Path(args.out) / "07_custom_corruption.png")
    print(f"figure: {figure}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--images", type=int, nargs="+", default=[1, 14, 33, 52, 71, 90])
    parser.add_argument("--out", default="example-outputs")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.images = 3, [0, 1]
    main(args)
