"""Where the files shipped in ``brgm_pyro/pretrained/`` are: their names and paths.

Standard library only, so every layer (the generator loader included) can look up a bundled
file without importing the loaders of ``brgm_pyro.bundled``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

GENERATOR_FILES = {"fashion-mnist-32": "fashion-mnist-32.pt"}
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` installs the IDX files (training data of the bundled generator)."""
CLASSIFIER_FILE = "fashion-mnist-classifier.pt"
TEST_IMAGES_FILE = "fashion-mnist-test-100.npz"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def pretrained_path(filename: str) -> Path:
    """Path of a bundled file; a clear error if the installation lacks it."""
    path = Path(str(resources.files("brgm_pyro") / "pretrained" / filename))
    if not path.is_file():
        raise FileNotFoundError(
            f"bundled file {filename} is missing from {path.parent}: the installation is incomplete. "
            "Reinstall brgm-pyro (pip install -e . from a full checkout) or pass an explicit path."
        )
    return path
