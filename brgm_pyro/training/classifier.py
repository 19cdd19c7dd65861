"""The domain feature network: a small CNN classifier of 32x32 grayscale Fashion-MNIST images.

Trained on the training split only.  It serves (a) as the perceptual feature map phi of the
likelihood (Eq. 4) for the bundled generator, through ``FeatureNetwork``, and (b) as the
embedding of the Frechet distance that measures the bundled generator's quality.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm


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


@dataclass
class ClassifierReport:
    test_accuracy: float
    epochs: int
    wall_seconds: float


def train_classifier(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
    epochs: int = 4, batch_size: int = 128, lr: float = 1e-3, seed: int = 0, progress: bool = True,
) -> tuple[FashionClassifier, ClassifierReport]:
    """Train ``FashionClassifier`` with Adam and random horizontal flips; report test accuracy."""
    torch.manual_seed(seed)
    model = FashionClassifier(train_x.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr * 3, total_steps=epochs * (len(train_x) // batch_size))
    start = time.time()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(train_x))
        bar = tqdm(range(len(train_x) // batch_size), disable=not progress, desc=f"classifier epoch {epoch + 1}")
        for i in bar:
            idx = perm[i * batch_size:(i + 1) * batch_size]
            x, y = train_x[idx], train_y[idx]
            flip = torch.rand(len(x), 1, 1, 1) < 0.5
            x = torch.where(flip, x.flip(-1), x)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if i % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
    accuracy = classifier_accuracy(model, test_x, test_y)
    return model.eval(), ClassifierReport(accuracy, epochs, time.time() - start)


@torch.no_grad()
def classifier_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i:i + batch_size]).argmax(dim=1) == y[i:i + batch_size]).sum().item()
    return correct / len(x)
