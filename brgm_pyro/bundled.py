"""The assets shipped inside the package (no downloads needed).

- ``fashion-mnist-32.pt``: a 32x32 grayscale StyleGAN2 trained by the project on the
  Fashion-MNIST training split (model card: ``brgm_pyro/pretrained/README.md``).
- ``fashion-mnist-classifier.pt``: the domain CNN (state dict), used as the perceptual
  feature network of that generator and for its Frechet distance.
- ``fashion-mnist-test-100.npz``: 100 test-split images (10 per class), never seen in training.

File names and paths live in ``brgm_pyro.assets``; this module loads them.
"""

from __future__ import annotations

import numpy as np
import torch

from .assets import CLASSIFIER_FILE, TEST_IMAGES_FILE, pretrained_path
from .domain_classifier import FashionClassifier
from .functional import PIXEL_SCALE_255
from .perceptual import FeatureNetwork

__all__ = [
    "DOMAIN_FEATURE_LAYERS", "load_test_images", "load_domain_classifier", "load_domain_features",
]


def load_test_images() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 100 bundled Fashion-MNIST test images (100, 1, 32, 32) in [-1, 1], labels and test-split indices."""
    with np.load(pretrained_path(TEST_IMAGES_FILE)) as data:
        images = torch.from_numpy(data["images"].astype(np.float32) / PIXEL_SCALE_255 - 1.0).unsqueeze(1)
        labels = torch.from_numpy(data["labels"].astype(np.int64))
        return images, labels, torch.from_numpy(data["indices"].astype(np.int64))


def load_domain_classifier(device: str | torch.device = "cpu") -> FashionClassifier:
    """The bundled Fashion-MNIST classifier, in eval mode with frozen weights."""
    model = FashionClassifier()
    state = torch.load(pretrained_path(CLASSIFIER_FILE), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval().requires_grad_(False).to(device)


DOMAIN_FEATURE_LAYERS = ("block1", "block2", "block3")


def load_domain_features(device: str | torch.device = "cpu",
                         layers: tuple[str, ...] = DOMAIN_FEATURE_LAYERS) -> FeatureNetwork:
    """phi for the bundled generator: the domain classifier's convolutional features.

    ``FeatureNetwork(classifier, layers)`` with every input first resized to the classifier's
    32x32 (bilinear; an 8x8 super-resolution observation is up-sampled, as the authors resize to
    256 before LPIPS). ``||phi(x) - phi(y)||^2`` is the sum over layers of the mean squared
    difference of the activations.
    """

    def to_classifier_size(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] == (32, 32):
            return x
        return torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)

    return FeatureNetwork(load_domain_classifier(device), list(layers), input_transform=to_classifier_size).to(device)
