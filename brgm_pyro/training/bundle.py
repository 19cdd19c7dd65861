"""Build the bundled assets that are not generator weights: ``python -m brgm_pyro.training.bundle OUT_DIR``.

Writes ``fashion-mnist-test-100.npz`` (10 test images per class) and trains and writes the
domain classifier ``fashion-mnist-classifier.pt`` (+ its report as JSON).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ..functional import PIXEL_SCALE_255
from .classifier import train_classifier
from .data import FASHION_MNIST_DIR, load_fashion_mnist, select_test_images


def write_test_images(out_dir: Path, root: Path = FASHION_MNIST_DIR) -> Path:
    images, labels, indices = select_test_images(10, root)
    path = out_dir / "fashion-mnist-test-100.npz"
    pixels = ((images[:, 0] + 1) * PIXEL_SCALE_255).round().clamp(0, 255).to(torch.uint8).numpy()
    np.savez_compressed(path, images=pixels, labels=labels.numpy().astype(np.uint8), indices=indices.numpy())
    return path


def write_classifier(out_dir: Path, root: Path = FASHION_MNIST_DIR, epochs: int = 4, seed: int = 0) -> dict:
    tx, ty = load_fashion_mnist("train", root)
    vx, vy = load_fashion_mnist("test", root)
    model, report = train_classifier(tx, ty, vx, vy, epochs=epochs, seed=seed)
    torch.save(model.state_dict(), out_dir / "fashion-mnist-classifier.pt")
    info = {"test_accuracy": report.test_accuracy, "epochs": epochs, "seed": seed, "wall_seconds": report.wall_seconds}
    (out_dir / "fashion-mnist-classifier.json").write_text(json.dumps(info, indent=2))
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--data", type=Path, default=FASHION_MNIST_DIR)
    parser.add_argument("--skip-classifier", action="store_true")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    print("test images:", write_test_images(args.out_dir, args.data))
    if not args.skip_classifier:
        print("classifier:", write_classifier(args.out_dir, args.data))


if __name__ == "__main__":
    main()
