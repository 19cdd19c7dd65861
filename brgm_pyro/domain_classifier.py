"""The domain feature network: a small CNN classifier of 32x32 grayscale Fashion-MNIST images.

Trained on the training split only (``brgm_pyro.training.classifier``; the weights ship as
``pretrained/fashion-mnist-classifier.pt``, loaded by ``brgm_pyro.bundled.load_domain_classifier``).
It serves (a) as the perceptual feature map phi of the likelihood (Eq. 4) for the bundled
generator, through ``FeatureNetwork``, and (b) as the embedding of the Frechet distance that
measures the bundled generator's quality.
"""

from __future__ import annotations

import torch
from torch import nn


class FashionClassifier(nn.Module):
    """(B, 1, 32, 32) in [-1, 1] -> logits (B, 10).

    block1: 2 x conv3x3(32) + ReLU, 2x2 max-pool -> (B, 32, 16, 16)
    block2: 2 x conv3x3(64) + ReLU, 2x2 max-pool -> (B, 64, 8, 8)
    block3: conv3x3(128) + ReLU, 2x2 max-pool    -> (B, 128, 4, 4)
    embed:  linear(2048 -> 256) + ReLU            -> (B, 256)  (the Frechet-distance embedding)
    head:   linear(256 -> 10)
    """

    def __init__(self, img_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.block1 = nn.Sequential(
            nn.Conv2d(img_channels, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.block2 = nn.Sequential(
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.block3 = nn.Sequential(nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(128 * 4 * 4, 256), nn.ReLU())
        self.head = nn.Linear(256, num_classes)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 32, 32) -> (B, 256)."""
        return self.embed(self.block3(self.block2(self.block1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(x))
