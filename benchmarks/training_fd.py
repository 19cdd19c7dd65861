"""Frechet distance of a generator, by the model card's protocol: 10,000 generated images (seed 0)
against the first 10,000 Fashion-MNIST test images, in the 256-d embedding of the bundled domain
classifier (``brgm_pyro.training.model_card.sample_quality``'s first number), the improved precision and
recall in the same embedding (``brgm_pyro.precision_recall``, k = 3: are the samples realistic, and does the
generator make every kind of real image?), and its MAP step time.

    OMP_NUM_THREADS=1 python benchmarks/training_fd.py --checkpoint RUN/checkpoint.pt [--checkpoint ...] [--bundled]

``--checkpoint``: a training checkpoint (its EMA generator); ``--bundled``: also the bundled
fashion-mnist-32 generator, for comparison on the same machine; ``--references``: real image sets scored the
same way (training images: where a perfect generator would be; blurred test images). Prints a table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from brgm_pyro.bundled import load_domain_classifier, load_domain_features, load_test_images
from brgm_pyro.corruptions import Blur, SuperResolution
from brgm_pyro.frechet import frechet_distance
from brgm_pyro.generators import load_generator
from brgm_pyro.inference import map_estimate
from brgm_pyro.models import BRGMConfig, brgm_model
from brgm_pyro.precision_recall import precision_recall
from brgm_pyro.training.data import FASHION_MNIST_DIR, load_fashion_mnist
from brgm_pyro.training.model_card import embed, generate, training_subset
from brgm_pyro.training.trainer import export_generator


def map_step_seconds(G, steps: int = 30) -> float:
    """Seconds per MAP (Adam) step of x4 SR of one bundled test image, recommended config, phi = the
    domain classifier's features, the model card's recommended config (5 warm-up steps not timed)."""
    features = load_domain_features()
    truth = load_test_images()[0][:1]
    op = SuperResolution(4, kernel="bicubic-antialias")
    config = BRGMConfig(sigma_pixel=0.1, sigma_perceptual=0.0167, kappa=0.25, prior_std="per-dimension")
    model = brgm_model(G, op, op(truth), config=config, features=features)
    map_estimate(model, num_steps=5, lr=0.1, progress=False)
    t0 = time.perf_counter()
    map_estimate(model, num_steps=steps, lr=0.1, progress=False)
    return (time.perf_counter() - t0) / steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, action="append", default=[],
                    help="training checkpoint (checkpoint.pt); repeat for several")
    ap.add_argument("--bundled", action="store_true", help="also measure the bundled generator")
    ap.add_argument("--num-images", type=int, default=10_000)
    ap.add_argument("--references", action="store_true",
                    help="also score real image sets the same way: training images (the model card's random "
                         "subset) and the test images blurred by 1 pixel")
    ap.add_argument("--data", default=str(FASHION_MNIST_DIR))
    args = ap.parse_args(argv)
    generators = {}
    for checkpoint in args.checkpoint:
        with tempfile.TemporaryDirectory() as tmp:
            export_generator(checkpoint, Path(tmp) / "g.pt")
            generators[str(checkpoint)] = load_generator(Path(tmp) / "g.pt", device="cpu")
    if args.bundled:
        generators["bundled fashion-mnist-32"] = load_generator("fashion-mnist-32", device="cpu")
    if not generators and not args.references:
        ap.error("give --checkpoint, --bundled and/or --references")
    classifier = load_domain_classifier()
    test, _ = load_fashion_mnist("test", args.data)
    f_test, _ = embed(classifier, test[:args.num_images])
    print(f"# benchmarks/training_fd.py: {torch.get_num_threads()} thread(s), {args.num_images} images, "
          "domain-classifier embedding vs the first test images (model card protocol)")
    print("| generator | Frechet distance | precision | recall | MAP step (ms, x4 SR, 1 image) |\n"
          "|---|---:|---:|---:|---:|")

    def row(name: str, images: torch.Tensor, map_step: str) -> None:
        features, _ = embed(classifier, images)
        precision, recall = precision_recall(features, f_test)
        print(f"| {name} | {frechet_distance(features, f_test):.2f} | {precision:.3f} | {recall:.3f} | {map_step} |",
              flush=True)

    if args.references:
        train, _ = load_fashion_mnist("train", args.data)
        row("training images (reference)", training_subset(train, args.num_images), "-")
        row("test images blurred by 1 pixel (reference)", Blur.gaussian(sigma=1.0)(test[:args.num_images]), "-")
    for name, G in generators.items():
        row(name, generate(G, args.num_images), f"{1000 * map_step_seconds(G):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
