"""Training the domain feature network ``FashionClassifier`` (defined, for run time, in
``brgm_pyro.domain_classifier``)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..domain_classifier import FashionClassifier

__all__ = ["ClassifierReport", "train_classifier", "classifier_accuracy"]


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
